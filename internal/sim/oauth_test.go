package sim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTokenErrors(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(1, "")
	const path = "/v1/bank/accounts?org_code=TESTBK0001"
	cases := []struct {
		name   string
		q      req
		status int
		code   string
	}{
		{"valid", req{path: path, token: tok}, http.StatusOK, codeOK},
		{"no Authorization", req{path: path}, http.StatusBadRequest, codeMissingHeader},
		{"no x-api-tran-id", req{path: path, token: tok, noTran: true}, http.StatusBadRequest, codeMissingHeader},
		{"unknown token", req{path: path, token: "bm90LWEtdG9rZW4"}, http.StatusUnauthorized, codeBadToken},
		{"not bearer", req{path: path, header: map[string]string{"Authorization": "Basic " + tok}}, http.StatusUnauthorized, codeBadToken},
		{"lower-case bearer", req{path: path, header: map[string]string{"Authorization": "bearer " + tok}}, http.StatusOK, codeOK},
		{"scope too narrow", req{path: path, token: e.sim.IssueToken(1, "card.list")}, http.StatusUnauthorized, codeNoAPIPermission},
		{"CA token on a resource API", req{path: path, token: e.sim.IssueToken(0, "ca")}, http.StatusUnauthorized, codeNoAPIPermission},
		{"user token on mgmts", req{path: "/mgmts/orgs", token: tok}, http.StatusUnauthorized, codeNoAPIPermission},
		{"user token on the CA", req{method: "POST", path: "/ca/sign_result", token: tok, json: map[string]any{}}, http.StatusUnauthorized, codeNoAPIPermission},
		{"no org_code", req{path: "/v1/bank/accounts", token: tok}, http.StatusBadRequest, codeBadParam},
		{"unknown org_code", req{path: "/v1/bank/accounts?org_code=NOSUCHORG1", token: tok}, http.StatusForbidden, codeUnknownOrg},
		{"org of another sector", req{path: "/v1/bank/accounts?org_code=TESTCD0001", token: tok}, http.StatusForbidden, codeUnknownOrg},
		{"unknown path", req{path: "/v1/bank/nothing", token: tok}, http.StatusNotFound, codeNoEndpoint},
		{"wrong method", req{method: "POST", path: path, token: tok, json: map[string]any{}}, http.StatusForbidden, codeInvalidCall},
		{"malformed JSON", req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok, rawBody: `{"org_code":`}, http.StatusBadRequest, codeBadParam},
		{"JSON array", req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok, rawBody: `[1]`}, http.StatusBadRequest, codeBadParam},
		{"empty body", req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok}, http.StatusBadRequest, codeBadParam},
		{"unknown account", req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok, json: map[string]any{"org_code": "TESTBK0001", "account_num": "99900000000000"}}, http.StatusNotFound, codeNotFound},
		{"body over 1 MiB", req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok, rawBody: `{"org_code":"` + strings.Repeat("x", 2<<20) + `"}`}, http.StatusBadRequest, codeBadParam},
		{"unknown card", req{path: "/v1/card/cards/CNOSUCHCARD0000?org_code=TESTCD0001", token: tok}, http.StatusNotFound, codeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tran := tranID()
			tc.q.tran = tran
			r := e.do(t, tc.q)
			wantCode(t, tc.name, r, tc.status, tc.code)
			if got := r.header.Get("x-api-tran-id"); !tc.q.noTran && got != tran {
				t.Errorf("x-api-tran-id: got %q, want %q", got, tran)
			}
			if tc.code == codeInvalidCall && r.header.Get("Allow") == "" {
				t.Error("Allow header missing on 40301")
			}
		})
	}
}

func TestIssueTokenPanicsOutOfRange(t *testing.T) {
	s := New(testOptions(t))
	for _, c := range []int{-1, s.Customers()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("IssueToken(%d): did not panic", c)
				}
			}()
			s.IssueToken(c, "")
		}()
	}
	if s.IssueToken(-1, "ca") == "" {
		t.Error("IssueToken(-1, ca): empty token")
	}
}

func TestTokenExpiry(t *testing.T) {
	now := testNow
	opts := testOptions(t)
	opts.Now = func() time.Time { return now }
	e := newEnv(t, opts)
	tok := e.sim.IssueToken(0, "")
	now = now.Add(accessTokenTTL + time.Second)
	r := e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: tok})
	wantCode(t, "expired token", r, http.StatusUnauthorized, codeBadToken)
}

// authorize runs 개별인증-001 and returns the code.
func authorize(t *testing.T, e *env, customer int, org string) string {
	t.Helper()
	q := url.Values{"org_code": {org}, "response_type": {"code"}, "client_id": {"TESTMD0001CLIENT01"}, "redirect_uri": {"https://operator.example/callback?x=1"}, "state": {"st-42"}}
	r := e.do(t, req{path: "/oauth/2.0/authorize?" + q.Encode(), header: map[string]string{"x-sim-customer": strconv.Itoa(customer)}})
	if r.status != http.StatusFound {
		t.Fatalf("authorize: got HTTP %d (%s), want 302", r.status, r.raw)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize Location: %v", err)
	}
	if !strings.HasPrefix(loc.String(), "https://operator.example/callback?") || loc.Query().Get("x") != "1" {
		t.Fatalf("authorize Location: got %s, want the redirect_uri with its query kept", loc)
	}
	if got := loc.Query().Get("state"); got != "st-42" {
		t.Fatalf("authorize state: got %q, want st-42", got)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("authorize: no code in %s", loc)
	}
	return code
}

// tokenCall posts (or, with get, queries) the token endpoint.
func tokenCall(t *testing.T, e *env, form url.Values, get bool) *result {
	t.Helper()
	if get {
		return e.do(t, req{path: "/oauth/2.0/token?" + form.Encode()})
	}
	return e.do(t, req{method: "POST", path: "/oauth/2.0/token", form: form})
}

func wantTokenSet(t *testing.T, what string, r *result, refresh bool) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: got HTTP %d (%s), want 200", what, r.status, r.raw)
	}
	if r.str("token_type") != "Bearer" || r.str("access_token") == "" || r.str("scope") == "" || r.body["expires_in"] == nil {
		t.Fatalf("%s: incomplete token set %s", what, r.raw)
	}
	if refresh && (r.str("refresh_token") == "" || r.body["refresh_token_expires_in"] == nil) {
		t.Fatalf("%s: no refresh token in %s", what, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control: got %q, want no-store", what, r.header.Get("Cache-Control"))
	}
	checkShapes(t, what, r.body)
}

func wantOAuthError(t *testing.T, what string, r *result, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code || r.str("error_description") == "" {
		t.Fatalf("%s: got HTTP %d %s, want HTTP %d error %q", what, r.status, r.raw, status, code)
	}
}

// holderName fetches the deposit holder_name the token sees, to tell which
// customer it is bound to.
func holderName(t *testing.T, e *env, tok string) string {
	t.Helper()
	r := e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: tok})
	wantCode(t, "bank accounts", r, http.StatusOK, codeOK)
	acct := firstOf(t, r, "account_list", "account_num")
	r = e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: tok, json: map[string]any{"org_code": "TESTBK0001", "account_num": acct, "seqno": "1"}})
	wantCode(t, "deposit basic", r, http.StatusOK, codeOK)
	return r.str("holder_name")
}

func TestAuthorizationCodeFlow(t *testing.T) {
	e := newEnv(t, testOptions(t))
	code := authorize(t, e, 5, "TESTBK0001")
	form := url.Values{"org_code": {"TESTBK0001"}, "grant_type": {"authorization_code"}, "code": {code}, "client_id": {"TESTMD0001CLIENT01"}, "client_secret": {"anything"}, "redirect_uri": {"https://operator.example/callback?x=1"}}
	r := tokenCall(t, e, form, false)
	wantTokenSet(t, "authorization_code", r, true)
	if got := r.str("scope"); got != "bank.list bank.deposit bank.loan" {
		t.Errorf("scope: got %q, want the bank scopes", got)
	}
	access, refresh := r.str("access_token"), r.str("refresh_token")
	want, _ := e.sim.Customer(5)
	if got := holderName(t, e, access); got != want.Name {
		t.Errorf("holder_name: got %q, want customer 5's %q", got, want.Name)
	}
	wantCode(t, "bank token on card API", e.do(t, req{path: "/v1/card/cards?org_code=TESTCD0001", token: access}), http.StatusUnauthorized, codeNoAPIPermission)

	wantOAuthError(t, "code reuse", tokenCall(t, e, form, false), http.StatusBadRequest, "invalid_grant")

	// Refresh by POST rotates the refresh token.
	r = tokenCall(t, e, url.Values{"org_code": {"TESTBK0001"}, "grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"c"}, "client_secret": {"s"}}, false)
	wantTokenSet(t, "refresh POST", r, true)
	refresh2 := r.str("refresh_token")
	if holderName(t, e, r.str("access_token")) != want.Name {
		t.Error("refreshed token bound to another customer")
	}
	wantOAuthError(t, "old refresh token", tokenCall(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, false), http.StatusBadRequest, "invalid_grant")

	// Refresh by GET with the secrets in the query (2021 drafts).
	rGet := tokenCall(t, e, url.Values{"org_code": {"TESTBK0001"}, "grant_type": {"refresh_token"}, "refresh_token": {refresh2}, "client_id": {"c"}, "client_secret": {"query-secret"}}, true)
	wantTokenSet(t, "refresh GET", rGet, true)
	wantOAuthError(t, "GET authorization_code", tokenCall(t, e, form, true), http.StatusBadRequest, "invalid_request")

	// Revoke by POST: every access token of the grant answers 40103 and its
	// refresh token is dead.
	r = e.do(t, req{method: "POST", path: "/oauth/2.0/revoke", form: url.Values{"org_code": {"TESTBK0001"}, "token": {access}, "token_type_hint": {"access_token"}, "client_id": {"c"}, "client_secret": {"s"}}})
	wantCode(t, "revoke POST", r, http.StatusOK, codeOK)
	for _, tok := range []string{access, rGet.str("access_token")} {
		wantCode(t, "revoked token", e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: tok}), http.StatusUnauthorized, codeRevokedToken)
	}
	wantOAuthError(t, "refresh after revoke", tokenCall(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rGet.str("refresh_token")}}, false), http.StatusBadRequest, "invalid_grant")
	// Another customer's grant is untouched.
	wantCode(t, "other grant", e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: e.sim.IssueToken(5, "")}), http.StatusOK, codeOK)
}

func TestRevokeGET(t *testing.T) {
	e := newEnv(t, testOptions(t))
	code := authorize(t, e, 2, "TESTCD0001")
	r := tokenCall(t, e, url.Values{"grant_type": {"authorization_code"}, "code": {code}}, false)
	wantTokenSet(t, "authorization_code", r, true)
	access, refresh := r.str("access_token"), r.str("refresh_token")
	wantCode(t, "card list", e.do(t, req{path: "/v1/card/cards?org_code=TESTCD0001", token: access}), http.StatusOK, codeOK)
	q := url.Values{"org_code": {"TESTCD0001"}, "token": {refresh}, "token_type_hint": {"refresh_token"}, "client_id": {"c"}, "client_secret": {"query-secret"}}
	tran := tranID()
	r = e.do(t, req{path: "/oauth/2.0/revoke?" + q.Encode(), tran: tran})
	wantCode(t, "revoke GET", r, http.StatusOK, codeOK)
	if r.header.Get("x-api-tran-id") != tran {
		t.Error("revoke: x-api-tran-id not echoed")
	}
	wantCode(t, "access after revoking its refresh token", e.do(t, req{path: "/v1/card/cards?org_code=TESTCD0001", token: access}), http.StatusUnauthorized, codeRevokedToken)
	wantOAuthError(t, "revoked refresh", tokenCall(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, true), http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, "revoke without token", e.do(t, req{method: "POST", path: "/oauth/2.0/revoke", form: url.Values{"client_id": {"c"}}}), http.StatusBadRequest, "invalid_request")
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, testOptions(t))
	base := url.Values{"org_code": {"TESTBK0001"}, "response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {"https://operator.example/cb"}, "state": {"s1"}}
	with := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range base {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return "/oauth/2.0/authorize?" + q.Encode()
	}
	wantOAuthError(t, "no redirect_uri", e.do(t, req{path: with("redirect_uri", "")}), http.StatusBadRequest, "invalid_request")
	wantOAuthError(t, "relative redirect_uri", e.do(t, req{path: with("redirect_uri", "/cb")}), http.StatusBadRequest, "invalid_request")
	wantOAuthError(t, "no client_id", e.do(t, req{path: with("client_id", "")}), http.StatusBadRequest, "invalid_request")
	for _, tc := range []struct{ name, key, val, err string }{
		{"response_type token", "response_type", "token", "unsupported_response_type"},
		{"no org_code", "org_code", "", "invalid_request"},
		{"unknown org_code", "org_code", "NOSUCHORG1", "invalid_request"},
	} {
		r := e.do(t, req{path: with(tc.key, tc.val)})
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc == nil || loc.Query().Get("error") != tc.err || loc.Query().Get("state") != "s1" || loc.Query().Get("code") != "" {
			t.Errorf("%s: got HTTP %d Location %q, want 302 with error=%s and state", tc.name, r.status, r.header.Get("Location"), tc.err)
		}
	}
	// Without x-sim-customer the customer is derived from client_id and
	// org_code: the same client sees the same customer.
	q := with("state", "")
	c1 := e.do(t, req{path: q}).header.Get("Location")
	c2 := e.do(t, req{path: q}).header.Get("Location")
	u1, _ := url.Parse(c1)
	u2, _ := url.Parse(c2)
	t1 := tokenCall(t, e, url.Values{"grant_type": {"authorization_code"}, "code": {u1.Query().Get("code")}}, false)
	t2 := tokenCall(t, e, url.Values{"grant_type": {"authorization_code"}, "code": {u2.Query().Get("code")}}, false)
	if holderName(t, e, t1.str("access_token")) != holderName(t, e, t2.str("access_token")) {
		t.Error("same client_id and org_code: different customers")
	}
	// x-user-ci picks the customer with that CI.
	c9, _ := e.sim.Customer(9)
	r := e.do(t, req{path: with("state", "x"), header: map[string]string{"x-user-ci": c9.CI}})
	u, _ := url.Parse(r.header.Get("Location"))
	tr := tokenCall(t, e, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}}, false)
	if got := holderName(t, e, tr.str("access_token")); got != c9.Name {
		t.Errorf("x-user-ci: got customer %q, want %q", got, c9.Name)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t, testOptions(t))
	cases := []struct {
		name string
		form url.Values
		err  string
	}{
		{"no grant_type", url.Values{}, "invalid_request"},
		{"unknown grant_type", url.Values{"grant_type": {"implicit"}}, "unsupported_grant_type"},
		{"client_credentials bad scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"bank.list"}}, "invalid_scope"},
		{"unknown code", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, "invalid_grant"},
		{"no code", url.Values{"grant_type": {"authorization_code"}}, "invalid_request"},
		{"no refresh_token", url.Values{"grant_type": {"refresh_token"}}, "invalid_request"},
		{"password without username", url.Values{"grant_type": {"password"}, "tx_id": {"t"}, "org_code": {"TESTBK0001"}, "password": {"p"}}, "invalid_request"},
		{"password_len mismatch", url.Values{"grant_type": {"password"}, "tx_id": {"t"}, "org_code": {"TESTBK0001"}, "username": {"u"}, "password": {"p"}, "password_len": {"5"}}, "invalid_request"},
		{"password unknown org", url.Values{"grant_type": {"password"}, "tx_id": {"t"}, "org_code": {"NOSUCHORG1"}, "username": {"u"}, "password": {"p"}}, "invalid_request"},
		{"password bad auth_type", url.Values{"grant_type": {"password"}, "tx_id": {"t"}, "org_code": {"TESTBK0001"}, "username": {"u"}, "password": {"p"}, "auth_type": {"7"}}, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantOAuthError(t, tc.name, tokenCall(t, e, tc.form, false), http.StatusBadRequest, tc.err)
		})
	}
}

// TestIntegratedAuthFlow runs IA101 → IA102 → IA103 → IA002: the CA token,
// the signature request and result, and the password grant carrying every
// field of SPEC §2.2.
func TestIntegratedAuthFlow(t *testing.T) {
	e := newEnv(t, testOptions(t))
	r := tokenCall(t, e, url.Values{"grant_type": {"client_credentials"}, "client_id": {"TESTMD0001CLIENT01"}, "client_secret": {"s"}, "scope": {"ca"}}, false)
	wantTokenSet(t, "client_credentials ca", r, false)
	if r.str("scope") != "ca" || r.str("refresh_token") != "" {
		t.Errorf("ca token: got scope %q refresh %q, want scope ca and no refresh", r.str("scope"), r.str("refresh_token"))
	}
	caTok := r.str("access_token")

	c, _ := e.sim.Customer(7)
	signTx := "TESTMD0001_TESTCA0001_20240315093000_000000000001"
	txID := "MD_TESTMD0001_TESTBK0001_TESTRL0001_TESTCA0001_20240315093000_000000000001"
	consent := `{"snd_org_code":"TESTBK0001","rcv_org_code":"TESTMD0001","is_scheduled":true,"fnd_cycle":"1/w","add_cycle":"1/w","end_date":"20250315","purpose":"자산관리","period":"20250315"}`
	r = e.do(t, req{method: "POST", path: "/ca/sign_request", token: caTok, json: map[string]any{
		"sign_tx_id": signTx, "user_ci": c.CI, "real_name": c.Name, "phone_num": c.PhoneIntl, "request_title": "전송요구",
		"device_code": "MO", "device_browser": "NA", "return_app_scheme_url": "operator://return", "consent_type": "1", "consent_cnt": "1",
		"consent_list": []map[string]any{{"tx_id": txID, "consent_title": "테스트은행", "consent": consent, "consent_len": len(consent)}},
	}})
	wantCode(t, "sign_request", r, http.StatusOK, codeOK)
	certTx := r.str("cert_tx_id")

	wantCode(t, "sign_result unknown", e.do(t, req{method: "POST", path: "/ca/sign_result", token: caTok, json: map[string]any{"cert_tx_id": "nope"}}), http.StatusNotFound, codeNotFound)
	wantCode(t, "sign_result wrong sign_tx_id", e.do(t, req{method: "POST", path: "/ca/sign_result", token: caTok, json: map[string]any{"cert_tx_id": certTx, "sign_tx_id": "other"}}), http.StatusBadRequest, codeBadParam)
	r = e.do(t, req{method: "POST", path: "/ca/sign_result", token: caTok, json: map[string]any{"cert_tx_id": certTx, "sign_tx_id": signTx}})
	wantCode(t, "sign_result", r, http.StatusOK, codeOK)
	items := list(t, r.body, "signed_consent_list")
	if len(items) != 1 || items[0]["tx_id"] != txID {
		t.Fatalf("signed_consent_list: got %v, want one item for %s", items, txID)
	}
	signed := items[0]["signed_consent"].(string)
	if !strings.HasPrefix(signed, "MIIC") && !strings.HasPrefix(signed, "MII") {
		t.Errorf("signed_consent: got %.12s…, want base64 DER", signed)
	}
	again := e.do(t, req{method: "POST", path: "/ca/sign_result", token: caTok, json: map[string]any{"cert_tx_id": certTx}})
	if list(t, again.body, "signed_consent_list")[0]["signed_consent"] != signed {
		t.Error("sign_result: a second poll changed the signature")
	}

	form := url.Values{
		"tx_id": {txID}, "org_code": {"TESTBK0001"}, "grant_type": {"password"}, "client_id": {"TESTMD0001CLIENT01"},
		"client_secret": {"s"}, "ca_code": {"TESTCA0001"}, "username": {"not-the-ci"}, "request_type": {"1"},
		"password_len": {strconv.Itoa(len(signed))}, "password": {signed}, "auth_type": {"1"}, "consent_type": {"1"},
		"consent_len": {strconv.Itoa(len(consent))}, "consent": {consent},
		"signed_person_info_req_len": {"8"}, "signed_person_info_req": {"MIIBfake"},
		"consent_nonce": {"nonce-1"}, "ucpid_nonce": {"nonce-2"}, "cert_tx_id": {certTx}, "service_id": {"TESTMD0001202105200001"},
	}
	r = tokenCall(t, e, form, false)
	wantTokenSet(t, "password grant", r, true)
	if got := holderName(t, e, r.str("access_token")); got != c.Name {
		t.Errorf("password grant by signed consent: got customer %q, want %q", got, c.Name)
	}

	// The CI alone also identifies the customer; request_type 0 is list-only.
	c3, _ := e.sim.Customer(3)
	form.Set("username", c3.CI)
	form.Set("password", "unknown-signature")
	form.Set("password_len", strconv.Itoa(len("unknown-signature")))
	form.Set("request_type", "0")
	r = tokenCall(t, e, form, false)
	wantTokenSet(t, "password grant list-only", r, true)
	if r.str("scope") != "bank.list" {
		t.Errorf("list-only scope: got %q, want bank.list", r.str("scope"))
	}
	listTok := r.str("access_token")
	wantCode(t, "list-only token on the list", e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: listTok}), http.StatusOK, codeOK)
	r = e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001", token: listTok})
	oi, _ := e.sim.org("TESTBK0001")
	if firstOf(t, r, "account_list", "account_num") != e.sim.customer(3).assets[oi].bank[0].num {
		t.Error("password grant by CI: wrong customer")
	}
	wantCode(t, "list-only token on basic", e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/basic", token: listTok, json: map[string]any{"org_code": "TESTBK0001", "account_num": "1"}}), http.StatusUnauthorized, codeNoAPIPermission)

	// The portal token.
	r = tokenCall(t, e, url.Values{"grant_type": {"client_credentials"}, "client_id": {"c"}, "client_secret": {"s"}, "scope": {"manage"}}, false)
	wantTokenSet(t, "client_credentials manage", r, false)
	wantCode(t, "mgmts services", e.do(t, req{path: "/mgmts/services", token: r.str("access_token")}), http.StatusOK, codeOK)
	wantCode(t, "manage token on the CA", e.do(t, req{method: "POST", path: "/ca/sign_result", token: r.str("access_token"), json: map[string]any{"cert_tx_id": certTx}}), http.StatusUnauthorized, codeNoAPIPermission)
	r = e.do(t, req{method: "POST", path: "/support/oauth/2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "scope": {"manage"}}})
	wantTokenSet(t, "support token path", r, false)

	for _, bad := range []map[string]any{
		{"user_ci": c.CI, "consent_list": []map[string]any{{"tx_id": "x"}}},
		{"sign_tx_id": "s", "user_ci": c.CI},
		{"sign_tx_id": "s", "user_ci": c.CI, "consent_cnt": 2, "consent_list": []map[string]any{{"tx_id": "x"}}},
		{"sign_tx_id": "s", "user_ci": c.CI, "device_code": "XX", "consent_list": []map[string]any{{"tx_id": "x"}}},
	} {
		wantCode(t, "bad sign_request", e.do(t, req{method: "POST", path: "/ca/sign_request", token: caTok, json: bad}), http.StatusBadRequest, codeBadParam)
	}

	// Every secret that went on the wire is listed.
	issued := map[string]bool{}
	for _, v := range e.sim.IssuedSecrets() {
		issued[v] = true
	}
	if !issued[signed] || !issued[caTok] || !issued[listTok] {
		t.Error("IssuedSecrets: misses a signed consent or a token")
	}
}
