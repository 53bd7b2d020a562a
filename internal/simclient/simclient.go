// Package simclient drives the MyData simulator the way an operator's client
// service would: it discovers the institutions through the portal, obtains
// tokens through individual and integrated authorisation, then calls every
// resource API the simulator serves, following ids from list responses into
// detail calls. Redaction property tests, the proxy's end-to-end tests, the
// demo and the benchmarks all use it, so they all meet the same payloads.
package simclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/mdtap/mdtap/internal/sim"
)

// Exchange is one call the client made, as the wire carried it.
type Exchange struct {
	Name       string // short label: "bank accounts", "oauth token (password)"
	Method     string
	URL        *url.URL
	ReqHeader  http.Header
	ReqBody    []byte
	Status     int
	RespHeader http.Header
	RespBody   []byte // as received (still compressed if the transport did not decode)
}

// Client calls one simulator (directly, or through a proxy configured in HTTP).
type Client struct {
	// Base is the simulator's base URL as this client addresses it.
	Base string
	// HTTP makes the calls. It must not follow redirects (authorize answers
	// 302) — New sets that.
	HTTP *http.Client
	// Sim, when set, supplies customer identity (CI, name, phone) for the
	// integrated-auth calls; otherwise synthetic values are sent.
	Sim *sim.Simulator
	// Header is added to every request (x-mdtap-subject, x-sim-fault …).
	Header http.Header
	// OnExchange sees every exchange.
	OnExchange func(Exchange)
	// MaxExchanges, when positive, stops the client after that many calls:
	// the next one returns ErrBudget.
	MaxExchanges int64

	seq atomic.Int64
	n   atomic.Int64
}

// ErrBudget is returned once MaxExchanges calls have been made.
var ErrBudget = errors.New("exchange budget used up")

// Exchanges reports how many calls the client has made.
func (c *Client) Exchanges() int64 { return c.n.Load() }

// New returns a client for base using hc (cloned so redirects are not followed).
func New(base string, hc *http.Client) *Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &c}
}

// TranID returns the next x-api-tran-id: operator code, M, 14 digits (AN(25)).
func (c *Client) TranID() string {
	return fmt.Sprintf("TESTMD0001M%014d", c.seq.Add(1))
}

// Org is an institution as /mgmts/orgs lists it.
type Org struct {
	Code     string `json:"org_code"`
	Industry string `json:"industry"`
}

// Do sends one request and returns the exchange. body is a url.Values (form),
// or anything else JSON-encoded; nil sends none. A non-2xx/3xx status is not
// an error here; callers check what they expect.
func (c *Client) Do(ctx context.Context, name, method, path string, query url.Values, token string, body any) (Exchange, error) {
	if c.MaxExchanges > 0 && c.n.Load() >= c.MaxExchanges {
		return Exchange{}, ErrBudget
	}
	u, err := url.Parse(c.Base + path)
	if err != nil {
		return Exchange{}, fmt.Errorf("%s: %w", name, err)
	}
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var rb []byte
	ct := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rb, ct = []byte(b.Encode()), "application/x-www-form-urlencoded"
	default:
		if rb, err = json.Marshal(b); err != nil {
			return Exchange{}, fmt.Errorf("%s: encode body: %w", name, err)
		}
		ct = "application/json; charset=UTF-8"
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(rb))
	if err != nil {
		return Exchange{}, fmt.Errorf("%s: %w", name, err)
	}
	for k, vs := range c.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("x-api-tran-id", c.TranID())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c.n.Add(1)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Exchange{}, fmt.Errorf("%s: %w", name, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return Exchange{}, fmt.Errorf("%s: read response: %w", name, err)
	}
	ex := Exchange{Name: name, Method: method, URL: u, ReqHeader: req.Header.Clone(), ReqBody: rb,
		Status: resp.StatusCode, RespHeader: resp.Header.Clone(), RespBody: respBody}
	if c.OnExchange != nil {
		c.OnExchange(ex)
	}
	return ex, nil
}

// call is Do for a JSON API that must answer 200 with rsp_code 00000; it
// decodes the body into out.
func (c *Client) call(ctx context.Context, name, method, path string, query url.Values, token string, body, out any) error {
	ex, err := c.Do(ctx, name, method, path, query, token, body)
	if err != nil {
		return err
	}
	if ex.Status != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", name, ex.Status, rspCode(ex.RespBody))
	}
	if out != nil {
		if err := json.Unmarshal(ex.RespBody, out); err != nil {
			return fmt.Errorf("%s: decode response: %w", name, err)
		}
	}
	return nil
}

func rspCode(b []byte) string {
	var v struct {
		RspCode string `json:"rsp_code"`
		Error   string `json:"error"`
	}
	json.Unmarshal(b, &v)
	if v.RspCode != "" {
		return "rsp_code " + v.RspCode
	}
	return "error " + v.Error
}

// ClientToken gets a client-credentials token for scope "ca" or "manage".
func (c *Client) ClientToken(ctx context.Context, scope string) (string, error) {
	var tok tokenResponse
	err := c.call(ctx, "oauth token ("+scope+")", http.MethodPost, "/oauth/2.0/token", nil, "",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-portal-secret"}, "scope": {scope}}, &tok)
	return tok.AccessToken, err
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// Orgs lists the institutions through the portal.
func (c *Client) Orgs(ctx context.Context) ([]Org, error) {
	tok, err := c.ClientToken(ctx, "manage")
	if err != nil {
		return nil, err
	}
	var orgs struct {
		List []Org `json:"org_list"`
	}
	if err := c.call(ctx, "mgmts orgs", http.MethodGet, "/mgmts/orgs", url.Values{"search_timestamp": {"0"}}, tok, nil, &orgs); err != nil {
		return nil, err
	}
	if err := c.call(ctx, "mgmts services", http.MethodGet, "/mgmts/services", url.Values{"search_timestamp": {"0"}}, tok, nil, nil); err != nil {
		return nil, err
	}
	return orgs.List, nil
}

const redirectURI = "https://operator.example/callback"

// UserToken runs individual authorisation for customer at org: authorize,
// then the authorization-code grant. It returns the access token and the
// refresh token.
func (c *Client) UserToken(ctx context.Context, customer int, org string) (access, refresh string, err error) {
	q := url.Values{"org_code": {org}, "response_type": {"code"}, "client_id": {"TESTCLIENT0001"},
		"redirect_uri": {redirectURI}, "state": {"st-" + strconv.Itoa(customer)}}
	saved := c.Header
	c.Header = saved.Clone()
	if c.Header == nil {
		c.Header = http.Header{}
	}
	c.Header.Set("x-sim-customer", strconv.Itoa(customer))
	ex, err := c.Do(ctx, "oauth authorize", http.MethodGet, "/oauth/2.0/authorize", q, "", nil)
	c.Header = saved
	if err != nil {
		return "", "", err
	}
	loc, err := url.Parse(ex.RespHeader.Get("Location"))
	if ex.Status != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		return "", "", fmt.Errorf("oauth authorize: HTTP %d without a code", ex.Status)
	}
	var tok tokenResponse
	err = c.call(ctx, "oauth token (authorization_code)", http.MethodPost, "/oauth/2.0/token", nil, "", url.Values{
		"org_code": {org}, "grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-secret-do-not-use"}, "redirect_uri": {redirectURI},
	}, &tok)
	return tok.AccessToken, tok.RefreshToken, err
}

// Refresh exercises both refresh variants (POST form, and the GET one that
// carries the secrets in the query string) and returns the last token pair.
func (c *Client) Refresh(ctx context.Context, org, refresh string) (string, string, error) {
	var tok tokenResponse
	err := c.call(ctx, "oauth token (refresh_token, POST)", http.MethodPost, "/oauth/2.0/token", nil, "", url.Values{
		"org_code": {org}, "grant_type": {"refresh_token"}, "refresh_token": {refresh},
		"client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-secret-do-not-use"},
	}, &tok)
	if err != nil {
		return "", "", err
	}
	q := url.Values{"org_code": {org}, "grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
		"client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-secret-do-not-use"}}
	err = c.call(ctx, "oauth token (refresh_token, GET)", http.MethodGet, "/oauth/2.0/token", q, "", nil, &tok)
	return tok.AccessToken, tok.RefreshToken, err
}

// Revoke revokes a token with the GET variant (token in the query) or POST.
func (c *Client) Revoke(ctx context.Context, org, token string, get bool) error {
	v := url.Values{"org_code": {org}, "token": {token}, "token_type_hint": {"access_token"},
		"client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-secret-do-not-use"}}
	if get {
		return c.call(ctx, "oauth revoke (GET)", http.MethodGet, "/oauth/2.0/revoke", v, "", nil, nil)
	}
	return c.call(ctx, "oauth revoke (POST)", http.MethodPost, "/oauth/2.0/revoke", nil, "", v, nil)
}

// IntegratedToken runs integrated authorisation for customer at org: a CA
// token, the signature request and result at the CA, then the password
// grant carrying the signed consent.
func (c *Client) IntegratedToken(ctx context.Context, customer int, org string) (string, error) {
	caTok, err := c.ClientToken(ctx, "ca")
	if err != nil {
		return "", err
	}
	id := c.identity(customer)
	consent := `{"snd_org_code":"` + org + `","rcv_org_code":"TESTMD0001","is_scheduled":true,"fnd_cycle":"1/w","add_cycle":"1/w","end_date":"20271231","purpose":"자산관리","period":"20271231"}`
	signTx := fmt.Sprintf("SIGN%016d", customer)
	var sr struct {
		CertTxID string `json:"cert_tx_id"`
	}
	err = c.call(ctx, "ca sign_request", http.MethodPost, "/ca/sign_request", nil, caTok, map[string]any{
		"sign_tx_id": signTx, "user_ci": id.CI, "real_name": id.Name, "phone_num": id.PhoneIntl,
		"request_title": "마이데이터 전송요구", "device_code": "MO", "device_browser": "NA",
		"return_app_scheme_url": "operatorapp://sign", "consent_type": "1", "consent_cnt": 1,
		"consent_list": []map[string]any{{"tx_id": "TX" + signTx, "consent_title": "전송요구", "consent": consent, "consent_len": len(consent)}},
	}, &sr)
	if err != nil {
		return "", err
	}
	var res struct {
		List []struct {
			TxID          string `json:"tx_id"`
			SignedConsent string `json:"signed_consent"`
		} `json:"signed_consent_list"`
	}
	if err := c.call(ctx, "ca sign_result", http.MethodPost, "/ca/sign_result", nil, caTok,
		map[string]any{"cert_tx_id": sr.CertTxID, "sign_tx_id": signTx}, &res); err != nil {
		return "", err
	}
	if len(res.List) == 0 {
		return "", errors.New("ca sign_result: no signed consent")
	}
	signed := res.List[0].SignedConsent
	personInfo := "MIIB-FAKE-PERSON-INFO-" + signTx
	var tok tokenResponse
	err = c.call(ctx, "oauth token (password)", http.MethodPost, "/oauth/2.0/token", nil, "", url.Values{
		"tx_id":    {"MD_TESTMD0001_" + org + "_RELAY00001_TESTCA0001_20260101120000_000000000001"},
		"org_code": {org}, "grant_type": {"password"}, "client_id": {"TESTCLIENT0001"}, "client_secret": {"fake-secret-do-not-use"},
		"ca_code": {"TESTCA0001"}, "username": {id.CI}, "request_type": {"1"},
		"password_len": {strconv.Itoa(len(signed))}, "password": {signed}, "auth_type": {"1"}, "consent_type": {"1"},
		"consent_len": {strconv.Itoa(len(consent))}, "consent": {consent},
		"signed_person_info_req_len": {strconv.Itoa(len(personInfo))}, "signed_person_info_req": {personInfo},
		"consent_nonce": {"NONCE-C-" + signTx}, "ucpid_nonce": {"NONCE-U-" + signTx},
		"cert_tx_id": {sr.CertTxID}, "service_id": {"TESTMD0001202105200001"},
	}, &tok)
	return tok.AccessToken, err
}

func (c *Client) identity(customer int) sim.Customer {
	if c.Sim != nil {
		if id, ok := c.Sim.Customer(customer); ok {
			return id
		}
	}
	return sim.Customer{Index: customer, Name: "홍길동", CI: strings.Repeat("C", 86) + "==", Phone: "010-0000-0000", PhoneIntl: "+821000000000"}
}
