package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
)

const recID = "01JQ0000000000000000000000"

func record(method, path string, query map[string][]string, reqCT, reqBody, respCT, respBody string) *mdtap.Record {
	m := mdtap.MatchAPI(path)
	rec := &mdtap.Record{
		V: 1, ID: recID, Time: mdtap.Timestamp{Time: time.Unix(1700000000, 0)},
		Sector: m.Sector, API: m.API, Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: method, Host: "127.0.0.1:9443", Path: path, Query: query,
			Headers: map[string][]string{"content-type": {reqCT}}},
		Response: &mdtap.Response{Status: 200, Headers: map[string][]string{"content-type": {respCT}}},
	}
	rec.Request.Body = []byte(reqBody)
	rec.Request.BodyBytes, rec.Request.CapturedBytes = int64(len(reqBody)), int64(len(reqBody))
	rec.Response.Body = []byte(respBody)
	rec.Response.BodyBytes, rec.Response.CapturedBytes = int64(len(respBody)), int64(len(respBody))
	return rec
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func mustProtect(t *testing.T, r *Redactor, rec *mdtap.Record) *mdtap.Record {
	t.Helper()
	out, err := r.Protect(rec)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	if err := out.Validate(); err != nil {
		t.Fatalf("protected record invalid: %v", err)
	}
	return out
}

func TestRoundTripJSON(t *testing.T) {
	keys := &fakeKeys{}
	r := New(builtin(t), keys)
	cases := map[string]string{
		"bank transactions":   `{"rsp_code":"00000","trans_cnt":2,"trans_list":[{"trans_dtime":"20240314183022","trans_amt":12500,"trans_memo":"테스트편의점"},{"trans_memo":"홍길동","balance_amt":1500000.5}]}`,
		"types under encrypt": `{"mystery":{"n":12.50,"b":false,"s":"x","a":[1,"two",null,{"k":[]}],"e":{},"z":null}}`,
		"escapes":             `{"trans_memo":"\u0041\"q\"\\\n\t\u00e9\ud83d\ude00","account_num":"\u0039\u0039\u0039"}`,
		"looks protected":     `{"rsp_msg":"mdtap:enc:v1:AQID","prod_name":"mdtap:drop:v1"}`,
		"scalar body":         `"just a string"`,
		"array body":          `[{"account_num":"1"},{"account_num":"2"}]`,
		"consent container":   `{"consent":{"is_scheduled":true,"end_date":"20250101","target_info":[{"scope":"bank.list","asset_list":[{"asset":"99900012345678","seqno":"1"}]}]}}`,
		"odd names":           `{"a.b":{"[0]":"x","":"y"},"한글":"z"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			rec := record("POST", "/v1/bank/accounts/deposit/transactions", nil, "application/json", body, "application/json; charset=UTF-8", body)
			out := mustProtect(t, r, rec)
			if out.Response.BodyKind != mdtap.BodyJSON {
				t.Fatalf("body_kind = %s (%s), want json", out.Response.BodyKind, out.Response.OpaqueReason)
			}
			back, stats, err := Reveal(out, keys)
			if err != nil {
				t.Fatalf("Reveal: %v", err)
			}
			for _, part := range []struct {
				got []byte
			}{{back.Request.Body}, {back.Response.Body}} {
				if !jsonEqual(t, part.got, []byte(body)) {
					t.Fatalf("reveal gave %s\nwant %s", part.got, body)
				}
			}
			if stats.Shredded != 0 || stats.Unavailable != 0 {
				t.Fatalf("stats = %+v", stats)
			}
		})
	}
}

// The encrypt value of a field must not be usable in another record or field.
func TestAssociatedDataBindsRecordAndField(t *testing.T) {
	keys := &fakeKeys{}
	r := New(builtin(t), keys)
	body := `{"trans_memo":"홍길동","trans_title":"소설책"}`
	out := mustProtect(t, r, record("POST", "/v1/efin/accounts/transactions", nil, "application/json", "{}", "application/json", body))
	var m map[string]string
	if err := json.Unmarshal(out.Response.Body, &m); err != nil {
		t.Fatal(err)
	}
	// Swap the two ciphertexts between fields.
	swapped := *out
	resp := *out.Response
	resp.Body, _ = json.Marshal(map[string]string{"trans_memo": m["trans_title"], "trans_title": m["trans_memo"]})
	swapped.Response = &resp
	if _, _, err := Reveal(&swapped, keys); err == nil {
		t.Fatal("Reveal of ciphertexts moved between fields succeeded, want an error")
	}
	// Move the record's values under another record id.
	moved := *out
	moved.ID = "01JQ0000000000000000000001"
	if _, _, err := Reveal(&moved, keys); err == nil {
		t.Fatal("Reveal of ciphertexts moved to another record succeeded, want an error")
	}
}

func TestTokenizeIsDeterministicPerField(t *testing.T) {
	r := New(builtin(t), &fakeKeys{})
	acct := "99900012345678"
	rec := record("POST", "/v1/bank/accounts/deposit/basic", map[string][]string{"account_num": {acct}},
		"application/json", `{"account_num":"`+acct+`"}`, "application/json", `{"account_list":[{"account_num":"`+acct+`"},{"account_num":"`+acct+`"}],"repay_account_num":"`+acct+`"}`)
	out := mustProtect(t, r, rec)
	var req struct {
		AccountNum string `json:"account_num"`
	}
	var resp struct {
		List []struct {
			AccountNum string `json:"account_num"`
		} `json:"account_list"`
		Repay string `json:"repay_account_num"`
	}
	json.Unmarshal(out.Request.Body, &req)
	json.Unmarshal(out.Response.Body, &resp)
	tok := out.Request.Query["account_num"][0]
	if !strings.HasPrefix(tok, "mdtap:tok:v1:") {
		t.Fatalf("query account_num = %q, want a token", tok)
	}
	for _, got := range []string{req.AccountNum, resp.List[0].AccountNum, resp.List[1].AccountNum} {
		if got != tok {
			t.Fatalf("token %q differs from the query's %q: one account must give one token", got, tok)
		}
	}
	if resp.Repay == tok {
		t.Fatal("repay_account_num has the same token as account_num; tokens must be bound to the field name")
	}
}

func TestBodiesThatCannotBeWalked(t *testing.T) {
	keys := &fakeKeys{}
	r := New(builtin(t), keys)
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + `1` + strings.Repeat(`}`, MaxDepth+1)
	cases := []struct {
		name, ct, body, reason string
		truncated              bool
	}{
		{"text", "text/plain", "홍길동 99900012345678", mdtap.OpaqueNotJSON, false},
		{"html", "text/html", "<b>99900012345678</b>", mdtap.OpaqueNotJSON, false},
		{"no content type", "", `{"account_num":"99900012345678"}`, mdtap.OpaqueNotJSON, false},
		{"malformed", "application/json", `{"account_num":"99900012345678"`, mdtap.OpaqueMalformed, false},
		{"trailing garbage", "application/json", `{"account_num":"99900012345678"} x`, mdtap.OpaqueMalformed, false},
		{"duplicate names", "application/json", `{"account_num":"1","account_num":"99900012345678"}`, mdtap.OpaqueMalformed, false},
		{"too deep", "application/json", deep, mdtap.OpaqueTooDeep, false},
		{"invalid utf-8", "application/json", "{\"trans_memo\":\"\xff99900012345678\"}", mdtap.OpaqueInvalidUTF8, false},
		{"truncated", "application/json", `{"account_list":[{"account_num":"99900012345678"}]}`, mdtap.OpaqueTruncated, true},
		{"binary", "application/octet-stream", "\x00\x01\x02", mdtap.OpaqueNotJSON, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := record("GET", "/v1/bank/accounts", nil, "", "", tc.ct, tc.body)
			if tc.truncated {
				rec.Response.Truncated = true
				rec.Response.BodyBytes *= 10
				rec.Response.BodyDigest = mdtap.HashValue(1, make([]byte, 16))
			}
			out := mustProtect(t, r, rec)
			if out.Response.BodyKind != mdtap.BodyOpaque || out.Response.OpaqueReason != tc.reason {
				t.Fatalf("body_kind %s reason %s, want opaque %s", out.Response.BodyKind, out.Response.OpaqueReason, tc.reason)
			}
			b, _ := json.Marshal(out)
			if bytes.Contains(b, []byte("99900012345678")) {
				t.Fatalf("opaque body leaked: %s", b)
			}
			back, _, err := Reveal(out, keys)
			if err != nil {
				t.Fatal(err)
			}
			var b64 string
			json.Unmarshal(back.Response.Body, &b64)
			got, _ := base64.StdEncoding.DecodeString(b64)
			if string(got) != tc.body {
				t.Fatalf("revealed %q, want %q", got, tc.body)
			}
		})
	}
}

func TestFormAndQuerySecrets(t *testing.T) {
	keys := &fakeKeys{}
	r := New(builtin(t), keys)
	form := "org_code=TESTBK0001&grant_type=refresh_token&refresh_token=REFRESH-SECRET&client_id=c1&client_secret=CLIENT-SECRET&code=AUTH-CODE&redirect_uri=https%3A%2F%2Fop.example%2Fcb&weird=%zz"
	query := mdtap.ParseQuery("grant_type=refresh_token&refresh_token=REFRESH-SECRET&client_secret=CLIENT-SECRET&token=TOK-SECRET&state=STATE-1")
	rec := record("POST", "/oauth/2.0/token", query, "application/x-www-form-urlencoded", form, "application/json",
		`{"token_type":"Bearer","access_token":"ACCESS-SECRET","refresh_token":"REFRESH-SECRET","expires_in":7776000,"scope":"bank.list"}`)
	out := mustProtect(t, r, rec)
	b, _ := json.Marshal(out)
	for _, secret := range []string{"REFRESH-SECRET", "CLIENT-SECRET", "AUTH-CODE", "ACCESS-SECRET", "TOK-SECRET", "STATE-1"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("record contains %s", secret)
		}
	}
	var f map[string][]string
	json.Unmarshal(out.Request.Body, &f)
	if f["client_secret"][0] != mdtap.Dropped || f["code"][0] != mdtap.Dropped {
		t.Errorf("client_secret %v code %v, want dropped", f["client_secret"], f["code"])
	}
	if f["grant_type"][0] != "refresh_token" || f["redirect_uri"][0] != "https://op.example/cb" {
		t.Errorf("kept fields changed: %v", f)
	}
	if f["weird"][0] == "%zz" || !strings.HasPrefix(f["weird"][0], "mdtap:enc:v1:") {
		t.Errorf("unknown form field = %v, want encrypted", f["weird"])
	}
	// The refresh token hashes alike in the query, the form and the response: calls link.
	var resp map[string]any
	json.Unmarshal(out.Response.Body, &resp)
	if out.Request.Query["refresh_token"][0] != f["refresh_token"][0] || resp["refresh_token"] != f["refresh_token"][0] {
		t.Errorf("refresh_token hashes differ: query %v form %v response %v", out.Request.Query["refresh_token"], f["refresh_token"], resp["refresh_token"])
	}
	// The Authorization header of a later call links to the access token issued here.
	later := mustProtect(t, r, &mdtap.Record{V: 1, ID: recID, Time: rec.Time, Sector: "bank", API: "/v1/bank/accounts", Transmission: mdtap.UserInitiated,
		Request:  mdtap.Request{Method: "GET", Path: "/v1/bank/accounts", Headers: map[string][]string{"Authorization": {"Bearer ACCESS-SECRET"}}},
		Response: &mdtap.Response{Status: 200}})
	if later.Request.Headers["authorization"][0] != resp["access_token"] {
		t.Errorf("authorization %v does not link to access_token %v", later.Request.Headers["authorization"], resp["access_token"])
	}
	back, _, err := Reveal(out, keys)
	if err != nil {
		t.Fatal(err)
	}
	var bf map[string][]string
	json.Unmarshal(back.Request.Body, &bf)
	if bf["weird"][0] != "%zz" {
		t.Errorf("revealed weird = %v, want %%zz", bf["weird"])
	}
}

func TestPathParametersAndUnknownPaths(t *testing.T) {
	keys := &fakeKeys{}
	r := New(builtin(t), keys)
	out := mustProtect(t, r, record("GET", "/v1/card/cards/CARD-0001-SECRET/approval-domestic", nil, "", "", "application/json", `{}`))
	if strings.Contains(out.Request.Path, "CARD-0001-SECRET") || !strings.HasPrefix(out.Request.PathParams["card_id"], "mdtap:tok:v1:") {
		t.Fatalf("path %q params %v", out.Request.Path, out.Request.PathParams)
	}
	if want := "/v1/card/cards/" + out.Request.PathParams["card_id"] + "/approval-domestic"; out.Request.Path != want {
		t.Fatalf("path = %q, want %q", out.Request.Path, want)
	}
	back, _, err := Reveal(out, keys)
	if err != nil || back.Request.Path != "/v1/card/cards/CARD-0001-SECRET/approval-domestic" {
		t.Fatalf("revealed path %q, %v", back.Request.Path, err)
	}
	unknown := mustProtect(t, r, record("GET", "/v1/bank/accounts/99900012345678/extra", nil, "", "", "application/json", `{}`))
	if !strings.HasPrefix(unknown.Request.Path, "mdtap:enc:v1:") {
		t.Fatalf("unknown API path = %q, want it encrypted whole", unknown.Request.Path)
	}
}

func TestHeadersDefaultDrop(t *testing.T) {
	r := New(builtin(t), &fakeKeys{})
	rec := record("GET", "/v1/bank/accounts", nil, "", "", "application/json", `{}`)
	rec.Request.Headers = map[string][]string{
		"X-Api-Tran-Id": {"T1"}, "Cookie": {"sid=SECRET"}, "X-Custom": {"SECRET2"}, "Connection": {"keep-alive"},
		"X-Mdtap-Subject": {"user-1"}, "X-User-Ci": {"CI-SECRET"},
	}
	out := mustProtect(t, r, rec)
	h := out.Request.Headers
	if h["x-api-tran-id"][0] != "T1" {
		t.Errorf("x-api-tran-id = %v", h["x-api-tran-id"])
	}
	if h["cookie"][0] != mdtap.Dropped {
		t.Errorf("cookie = %v, want dropped", h["cookie"])
	}
	for _, gone := range []string{"x-custom", "connection", "x-mdtap-subject"} {
		if _, ok := h[gone]; ok {
			t.Errorf("header %s recorded, want it left out", gone)
		}
	}
	if !strings.HasPrefix(h["x-user-ci"][0], "mdtap:enc:v1:") {
		t.Errorf("x-user-ci = %v, want encrypted", h["x-user-ci"])
	}
}

func TestSubjectBlindIndex(t *testing.T) {
	r := New(builtin(t), &fakeKeys{})
	rec := record("GET", "/v1/bank/accounts", nil, "", "", "application/json", `{}`)
	rec.Subject = "internal-user-42"
	a := mustProtect(t, r, rec)
	b := mustProtect(t, r, rec)
	if a.Subject != b.Subject || !strings.HasPrefix(a.Subject, "mdtap:hash:v1:") {
		t.Fatalf("subject = %q then %q, want one stable hash", a.Subject, b.Subject)
	}
}

func TestProtectRefuses(t *testing.T) {
	r := New(builtin(t), &fakeKeys{})
	rec := record("GET", "/v1/bank/accounts", nil, "", "", "application/json", `{}`)
	rec.Policy = "builtin@x"
	if _, err := r.Protect(rec); err == nil {
		t.Error("Protect of a protected record succeeded")
	}
	rec.Policy, rec.ID = "", "x"
	if _, err := r.Protect(rec); err == nil {
		t.Error("Protect without a ULID succeeded")
	}
}
