package sim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Token lifetimes. The standard's real values were not verified (SPEC §7.1);
// these are the illustrative ones of its example.
const (
	accessTokenTTL  = 90 * 24 * time.Hour  // expires_in 7776000
	refreshTokenTTL = 365 * 24 * time.Hour // refresh_token_expires_in 31536000
	authCodeTTL     = 10 * time.Minute
)

// Memory bounds: past them the oldest entries are forgotten (a forgotten
// token answers 40101), so a long benchmark cannot grow the store forever.
const (
	maxTokens  = 1 << 17
	maxCodes   = 1 << 14
	maxCertTxs = 1 << 14
	maxIssued  = 1 << 18
)

const (
	scopeCA     = "ca"
	scopeManage = "manage"
)

// industryScopes are the user scopes each sector's APIs need (SPEC §2.4).
var industryScopes = map[string][]string{
	"bank":    {"bank.list", "bank.deposit", "bank.loan"},
	"card":    {"card.list", "card.card", "card.bill"},
	"invest":  {"invest.list", "invest.account"},
	"insu":    {"insu.list", "insu.insurance"},
	"efin":    {"efin.list", "efin.paid"},
	"telecom": {"telecom.list"},
}

var industryOrder = []string{"bank", "card", "invest", "insu", "efin", "telecom"}

// allUserScopes is what a token gets when nothing narrows it.
func allUserScopes() string {
	var all []string
	for _, ind := range industryOrder {
		all = append(all, industryScopes[ind]...)
	}
	return strings.Join(all, " ")
}

// grant is one authorisation: the tokens it produced share its customer,
// scope and revocation.
type grant struct {
	customer int // -1 for client_credentials (CA, portal) tokens
	scopes   []string
	revoked  bool
}

func (g *grant) hasScope(want string) bool {
	for _, sc := range g.scopes {
		// S5 spells the telecom scopes "telecoms.*"; accept both.
		if sc == want || strings.Replace(sc, "telecoms.", "telecom.", 1) == want {
			return true
		}
	}
	return false
}

type tokenKind int

const (
	kindAccess tokenKind = iota
	kindRefresh
)

type token struct {
	kind    tokenKind
	g       *grant
	expires time.Time
}

type authCode struct {
	customer    int
	orgCode     string
	redirectURI string
	expires     time.Time
}

// certTx is a pending integrated-auth signature (IA102 → IA103).
type certTx struct {
	signTxID string
	customer int
	txIDs    []string
	signed   []string // filled by the first sign_result
}

// authStore holds everything issued. One mutex: contention is irrelevant
// at simulator rates and it keeps revocation atomic.
type authStore struct {
	mu         sync.Mutex
	tokens     map[string]*token
	tokenOrder []string
	codes      map[string]*authCode
	codeOrder  []string
	certs      map[string]*certTx
	certOrder  []string
	signed     map[string]int // signed_consent → customer, for the password grant
	signOrder  []string
	// issued lists every secret sent on the wire, including used codes and
	// rotated refresh tokens that the maps above have dropped.
	issued []string
}

// record notes a secret that went on the wire; a.mu must be held.
func (a *authStore) record(secret string) {
	a.issued = append(a.issued, secret)
	if len(a.issued) > maxIssued {
		a.issued = a.issued[len(a.issued)-maxIssued:]
	}
}

func newAuthStore() *authStore {
	return &authStore{
		tokens: map[string]*token{},
		codes:  map[string]*authCode{},
		certs:  map[string]*certTx{},
		signed: map[string]int{},
	}
}

// bounded appends key to order and evicts the oldest keys from m past max.
func bounded[V any](m map[string]V, order *[]string, key string, limit int) {
	*order = append(*order, key)
	for len(*order) > limit {
		delete(m, (*order)[0])
		*order = (*order)[1:]
	}
}

// newSecret returns 32 random bytes, base64url: unguessable like a real
// token, and free of characters that need escaping in a URL or form.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// issue creates an access token (and a refresh token when withRefresh) for g.
func (a *authStore) issue(g *grant, now time.Time, withRefresh bool) (access, refresh string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	access = newSecret()
	a.tokens[access] = &token{kind: kindAccess, g: g, expires: now.Add(accessTokenTTL)}
	bounded(a.tokens, &a.tokenOrder, access, maxTokens)
	a.record(access)
	if withRefresh {
		refresh = newSecret()
		a.tokens[refresh] = &token{kind: kindRefresh, g: g, expires: now.Add(refreshTokenTTL)}
		bounded(a.tokens, &a.tokenOrder, refresh, maxTokens)
		a.record(refresh)
	}
	return access, refresh
}

// lookupAccess validates a bearer token: 40103 when revoked, 40101 when
// unknown, expired or not an access token.
func (a *authStore) lookupAccess(v string, now time.Time) (*token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tokens[v]
	switch {
	case !ok || t.kind != kindAccess:
		return nil, errf(codeBadToken, "unknown token")
	case t.g.revoked:
		return nil, errf(codeRevokedToken, "")
	case !now.Before(t.expires):
		return nil, errf(codeBadToken, "expired token")
	}
	return t, nil
}

// IssueToken returns a fresh access token, as if issued by the token
// endpoint. scope "ca" or "manage" gives a client-credentials token for the
// CA or portal APIs (customer is ignored); an empty scope gives a customer
// token valid for every sector API; otherwise scope is the space-separated
// user scope list (e.g. "bank.list bank.deposit"). It panics when a user
// token is asked for a customer out of range: that is a bug in the caller.
func (s *Simulator) IssueToken(customer int, scope string) string {
	g := &grant{customer: -1, scopes: []string{scope}}
	if scope != scopeCA && scope != scopeManage {
		if customer < 0 || customer >= s.nCust {
			panic(fmt.Sprintf("sim: IssueToken: customer %d out of range [0,%d)", customer, s.nCust))
		}
		g.customer = customer
		g.scopes = strings.Fields(scope)
		if scope == "" {
			g.scopes = strings.Fields(allUserScopes())
		}
	}
	access, _ := s.auth.issue(g, s.now(), false)
	return access
}

// oauthErr is an OAuth error response (RFC 6749 §5.2), which the token and
// authorize endpoints answer instead of rsp_code (SPEC §1.4).
type oauthErr struct {
	status int
	code   string
	desc   string
}

func (e *oauthErr) Error() string { return e.code + ": " + e.desc }

func badRequest(code, desc string) *oauthErr {
	return &oauthErr{status: http.StatusBadRequest, code: code, desc: desc}
}

func (s *Simulator) writeOAuthError(w http.ResponseWriter, r *http.Request, e *oauthErr) {
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, e.status, e.code, map[string]string{"error": e.code, "error_description": e.desc})
}

// headerCustomer reads the customer a request names: the simulator-only
// x-sim-customer index, or the v2 mock's x-user-ci header (SPEC §1.3).
func (s *Simulator) headerCustomer(r *http.Request) (int, bool, *oauthErr) {
	if v := r.Header.Get("x-sim-customer"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= s.nCust {
			return 0, false, badRequest("invalid_request", "x-sim-customer out of range")
		}
		return n, true, nil
	}
	if ci := r.Header.Get("x-user-ci"); ci != "" {
		if n, ok := s.customerByCI(ci); ok {
			return n, true, nil
		}
	}
	return 0, false, nil
}

// authorize is 개별인증-001: it authenticates nobody and redirects at once
// with a code bound to the chosen customer.
func (s *Simulator) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if q.Get("redirect_uri") == "" || err != nil || !redirect.IsAbs() {
		// Without a usable redirect_uri the error cannot be redirected.
		s.writeOAuthError(w, r, badRequest("invalid_request", "redirect_uri missing or not absolute"))
		return
	}
	if q.Get("client_id") == "" {
		s.writeOAuthError(w, r, badRequest("invalid_request", "client_id required"))
		return
	}
	state := q.Get("state")
	back := func(params url.Values) {
		u := *redirect
		v := u.Query()
		for k, vals := range params {
			v[k] = vals
		}
		if state != "" {
			v.Set("state", state)
		}
		if id := r.Header.Get("x-api-tran-id"); id != "" {
			v.Set("api_tran_id", id) // as the v2 mock does
		}
		u.RawQuery = v.Encode()
		w.Header().Set("Location", u.String())
		w.Header().Set("Cache-Control", "no-store")
		stateOf(r).status = http.StatusFound
		w.WriteHeader(http.StatusFound)
	}
	fail := func(code, desc string) {
		stateOf(r).rspCode = code
		back(url.Values{"error": {code}, "error_description": {desc}})
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if len(state) > 40 {
		fail("invalid_request", "state longer than 40")
		return
	}
	orgCode := q.Get("org_code")
	if orgCode == "" {
		fail("invalid_request", "org_code required")
		return
	}
	if _, o := s.org(orgCode); o == nil {
		fail("invalid_request", "unknown org_code")
		return
	}
	cust, ok, oe := s.headerCustomer(r)
	if oe != nil {
		fail(oe.code, oe.desc)
		return
	}
	if !ok {
		cust = s.customerFromKey(q.Get("client_id"), orgCode)
	}
	code := newSecret()
	s.auth.mu.Lock()
	s.auth.codes[code] = &authCode{customer: cust, orgCode: orgCode, redirectURI: q.Get("redirect_uri"), expires: s.now().Add(authCodeTTL)}
	bounded(s.auth.codes, &s.auth.codeOrder, code, maxCodes)
	s.auth.record(code)
	s.auth.mu.Unlock()
	stateOf(r).rspCode = codeOK
	back(url.Values{"code": {code}})
}

// tokenResponse is the token set of 개별인증-002 (SPEC §2.1).
type tokenResponse struct {
	TokenType             string `json:"token_type"`
	AccessToken           string `json:"access_token"`
	ExpiresIn             int64  `json:"expires_in"`
	RefreshToken          string `json:"refresh_token,omitempty"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in,omitempty"`
	Scope                 string `json:"scope"`
}

// token serves /oauth/2.0/token for every grant. It reads r.Form, so the
// query string counts too: the GET refresh variant of the 2021 drafts
// carries refresh_token and client_secret there.
func (s *Simulator) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.writeOAuthError(w, r, badRequest("invalid_request", "malformed form body"))
		return
	}
	f := r.Form
	gt := f.Get("grant_type")
	if r.Method == http.MethodGet && gt != "refresh_token" {
		s.writeOAuthError(w, r, badRequest("invalid_request", "GET is accepted only for grant_type=refresh_token"))
		return
	}
	var (
		g           *grant
		withRefresh = true
		oe          *oauthErr
	)
	switch gt {
	case "authorization_code":
		g, oe = s.grantFromCode(f)
	case "refresh_token":
		g, oe = s.grantFromRefresh(f)
	case "password":
		g, oe = s.grantFromPassword(r, f)
	case "client_credentials":
		withRefresh = false
		switch sc := f.Get("scope"); sc {
		case scopeCA, scopeManage:
			g = &grant{customer: -1, scopes: []string{sc}}
		default:
			oe = badRequest("invalid_scope", "scope must be ca or manage")
		}
	case "":
		oe = badRequest("invalid_request", "grant_type required")
	default:
		oe = badRequest("unsupported_grant_type", "grant_type not supported")
	}
	if oe != nil {
		s.writeOAuthError(w, r, oe)
		return
	}
	access, refresh := s.auth.issue(g, s.now(), withRefresh)
	resp := tokenResponse{TokenType: "Bearer", AccessToken: access, ExpiresIn: int64(accessTokenTTL / time.Second), Scope: strings.Join(g.scopes, " ")}
	if withRefresh {
		resp.RefreshToken, resp.RefreshTokenExpiresIn = refresh, int64(refreshTokenTTL/time.Second)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	s.writeJSON(w, r, http.StatusOK, codeOK, resp)
}

// orgScopes is the scope of a token issued for orgCode: that sector's
// scopes, only its *.list one for a list-only request (request_type 0).
func (s *Simulator) orgScopes(orgCode string, listOnly bool) ([]string, *oauthErr) {
	if orgCode == "" {
		return strings.Fields(allUserScopes()), nil
	}
	_, o := s.org(orgCode)
	if o == nil {
		return nil, badRequest("invalid_request", "unknown org_code")
	}
	if listOnly {
		return []string{o.Industry + ".list"}, nil
	}
	return slices.Clone(industryScopes[o.Industry]), nil
}

func (s *Simulator) grantFromCode(f url.Values) (*grant, *oauthErr) {
	code := f.Get("code")
	if code == "" {
		return nil, badRequest("invalid_request", "code required")
	}
	s.auth.mu.Lock()
	ac, ok := s.auth.codes[code]
	delete(s.auth.codes, code) // single use, whatever happens next
	s.auth.mu.Unlock()
	switch {
	case !ok:
		return nil, badRequest("invalid_grant", "unknown or used code")
	case !s.now().Before(ac.expires):
		return nil, badRequest("invalid_grant", "code expired")
	case f.Get("redirect_uri") != "" && f.Get("redirect_uri") != ac.redirectURI:
		return nil, badRequest("invalid_grant", "redirect_uri does not match the authorization request")
	case f.Get("org_code") != "" && f.Get("org_code") != ac.orgCode:
		return nil, badRequest("invalid_grant", "org_code does not match the authorization request")
	}
	scopes, oe := s.orgScopes(ac.orgCode, false)
	if oe != nil {
		return nil, oe
	}
	return &grant{customer: ac.customer, scopes: scopes}, nil
}

// grantFromRefresh rotates: the old refresh token dies, the grant's other
// access tokens live on until they expire.
func (s *Simulator) grantFromRefresh(f url.Values) (*grant, *oauthErr) {
	v := f.Get("refresh_token")
	if v == "" {
		return nil, badRequest("invalid_request", "refresh_token required")
	}
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	t, ok := s.auth.tokens[v]
	switch {
	case !ok || t.kind != kindRefresh:
		return nil, badRequest("invalid_grant", "unknown refresh_token")
	case t.g.revoked:
		return nil, badRequest("invalid_grant", "refresh_token revoked")
	case !s.now().Before(t.expires):
		return nil, badRequest("invalid_grant", "refresh_token expired")
	}
	delete(s.auth.tokens, v)
	return t.g, nil
}

// grantFromPassword is 통합인증-002 (SPEC §2.2): the signed consent travels
// in password. Signatures are not verified; lengths must agree when given.
func (s *Simulator) grantFromPassword(r *http.Request, f url.Values) (*grant, *oauthErr) {
	for _, k := range []string{"tx_id", "org_code", "username", "password"} {
		if f.Get(k) == "" {
			return nil, badRequest("invalid_request", k+" required")
		}
	}
	for _, pair := range [][2]string{{"password_len", "password"}, {"consent_len", "consent"}, {"signed_person_info_req_len", "signed_person_info_req"}} {
		lv := f.Get(pair[0])
		if lv == "" {
			continue
		}
		if n, err := strconv.Atoi(lv); err != nil || n != len(f.Get(pair[1])) {
			return nil, badRequest("invalid_request", pair[0]+" does not match "+pair[1])
		}
	}
	for _, k := range []string{"request_type", "auth_type", "consent_type"} {
		if v := f.Get(k); v != "" && v != "0" && v != "1" {
			return nil, badRequest("invalid_request", k+" must be 0 or 1")
		}
	}
	scopes, oe := s.orgScopes(f.Get("org_code"), f.Get("request_type") == "0")
	if oe != nil {
		return nil, oe
	}
	cust, ok, oe := s.headerCustomer(r)
	if oe != nil {
		return nil, oe
	}
	if !ok {
		s.auth.mu.Lock()
		cust, ok = s.auth.signed[f.Get("password")]
		s.auth.mu.Unlock()
	}
	if !ok {
		cust, ok = s.customerByCI(f.Get("username"))
	}
	if !ok {
		cust = s.customerFromKey(f.Get("username"))
	}
	return &grant{customer: cust, scopes: scopes}, nil
}

// revoke is 개별인증-004, GET (2021 drafts, token in the query) or POST
// (form). Revoking either token of a grant revokes the whole grant, so the
// access token then answers 40103. Unknown tokens succeed (RFC 7009 §2.2).
func (s *Simulator) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.writeOAuthError(w, r, badRequest("invalid_request", "malformed form body"))
		return
	}
	v := r.Form.Get("token")
	if v == "" {
		s.writeOAuthError(w, r, badRequest("invalid_request", "token required"))
		return
	}
	s.auth.mu.Lock()
	if t, ok := s.auth.tokens[v]; ok {
		t.g.revoked = true
	}
	s.auth.mu.Unlock()
	s.writeJSON(w, r, http.StatusOK, codeOK, success())
}

// IssuedSecrets returns the secrets the simulator has sent so far
// (authorization codes, access and refresh tokens, signed consents), sorted,
// for leak checks. It remembers the last 262144 of them.
func (s *Simulator) IssuedSecrets() []string {
	s.auth.mu.Lock()
	out := slices.Clone(s.auth.issued)
	s.auth.mu.Unlock()
	slices.Sort(out)
	return slices.Compact(out)
}
