package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// loanCustomer returns a customer with a loan at TESTBK0001, so every bank
// API has something to answer.
func loanCustomer(t *testing.T, s *Simulator) int {
	t.Helper()
	oi, _ := s.org("TESTBK0001")
	for i := 0; i < s.Customers(); i++ {
		for _, a := range s.customer(i).assets[oi].bank {
			if a.loan {
				return i
			}
		}
	}
	t.Fatal("no customer with a loan")
	return 0
}

type conformanceCase struct {
	name   string
	method string
	path   string // without the /v1 or /v2 prefix for sector APIs
	body   any
	fields []string
}

// sectorCases resolves asset ids through the list APIs and returns one case
// per sector API of the issue, with the SPEC field names each must carry.
func sectorCases(t *testing.T, e *env, prefix, tok string) []conformanceCase {
	t.Helper()
	get := func(path string) *result {
		r := e.do(t, req{path: prefix + path, token: tok})
		wantCode(t, "GET "+path, r, http.StatusOK, codeOK)
		return r
	}
	accts := list(t, get("/bank/accounts?org_code=TESTBK0001&search_timestamp=0&limit=500").body, "account_list")
	var deposit, loan string
	for _, a := range accts {
		if strings.HasPrefix(a["account_type"].(string), "3") {
			loan = a["account_num"].(string)
		} else if deposit == "" {
			deposit = a["account_num"].(string)
		}
	}
	if deposit == "" || loan == "" {
		t.Fatalf("customer lacks a deposit (%q) or loan (%q) account", deposit, loan)
	}
	cardID := firstOf(t, get("/card/cards?org_code=TESTCD0001"), "card_list", "card_id")
	invAcct := firstOf(t, get("/invest/accounts?org_code=TESTIV0001"), "account_list", "account_num")
	insuNum := firstOf(t, get("/insu/insurances?org_code=TESTIS0001"), "insu_list", "insu_num")
	subKey := firstOf(t, get("/efin/accounts?org_code=TESTEF0001"), "account_list", "sub_key")

	acct := func(org, num string) map[string]any {
		return map[string]any{"org_code": org, "account_num": num, "seqno": "1", "search_timestamp": "0"}
	}
	trans := func(extra map[string]any) map[string]any {
		m := map[string]any{"from_date": "20200101", "to_date": "20240315", "limit": 500}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []conformanceCase{
		{"bank accounts", "GET", "/bank/accounts?org_code=TESTBK0001&search_timestamp=0", nil,
			[]string{"search_timestamp", "reg_date", "next_page", "account_cnt", "account_list[].account_num", "account_list[].is_consent", "account_list[].seqno", "account_list[].is_foreign_deposit", "account_list[].prod_name", "account_list[].account_type", "account_list[].account_status"}},
		{"deposit basic", "POST", "/bank/accounts/deposit/basic", acct("TESTBK0001", deposit),
			[]string{"search_timestamp", "saving_method", "holder_name", "issue_date", "currency_code", "commit_amt", "monthly_paid_in_amt"}},
		{"deposit detail", "POST", "/bank/accounts/deposit/detail", acct("TESTBK0001", deposit),
			[]string{"detail_cnt", "detail_list[].currency_code", "detail_list[].balance_amt", "detail_list[].withdrawable_amt", "detail_list[].offered_rate", "detail_list[].last_paid_in_cnt"}},
		{"deposit transactions", "POST", "/bank/accounts/deposit/transactions", trans(acct("TESTBK0001", deposit)),
			[]string{"next_page", "trans_cnt", "trans_list[].trans_dtime", "trans_list[].trans_no", "trans_list[].trans_type", "trans_list[].trans_class", "trans_list[].currency_code", "trans_list[].trans_amt", "trans_list[].balance_amt", "trans_list[].trans_memo"}},
		{"loan basic", "POST", "/bank/accounts/loan/basic", acct("TESTBK0001", loan),
			[]string{"holder_name", "issue_date", "exp_date", "last_offered_rate", "repay_date", "repay_method", "repay_org_code", "repay_account_num"}},
		{"card list", "GET", "/card/cards?org_code=TESTCD0001&search_timestamp=0", nil,
			[]string{"search_timestamp", "card_cnt", "card_list[].card_id", "card_list[].card_num", "card_list[].is_consent", "card_list[].card_name", "card_list[].card_member", "card_list[].card_type"}},
		{"card basic", "GET", "/card/cards/" + cardID + "?org_code=TESTCD0001&search_timestamp=0", nil,
			[]string{"card_type", "is_trans_payable", "is_cash_card", "linked_bank_code", "card_brand", "annual_fee", "issue_date"}},
		{"card approvals", "GET", "/card/cards/" + cardID + "/approval-domestic?org_code=TESTCD0001&from_date=20200101&to_date=20240315&limit=500", nil,
			[]string{"next_page", "approved_cnt", "approved_list[].approved_num", "approved_list[].status", "approved_list[].pay_type", "approved_list[].approved_dtime", "approved_list[].merchant_name", "approved_list[].approved_amt", "approved_list[].total_install_cnt"}},
		{"card bills", "GET", "/card/cards/bills?org_code=TESTCD0001&from_month=202301&to_month=202402&limit=500", nil,
			[]string{"next_page", "bill_cnt", "bill_list[].seqno", "bill_list[].charge_amt", "bill_list[].charge_day", "bill_list[].charge_month", "bill_list[].paid_out_date", "bill_list[].card_type"}},
		{"invest accounts", "GET", "/invest/accounts?org_code=TESTIV0001&search_timestamp=0", nil,
			[]string{"search_timestamp", "account_cnt", "account_list[].account_num", "account_list[].is_consent", "account_list[].account_name", "account_list[].account_type", "account_list[].account_status"}},
		{"invest transactions", "POST", "/invest/accounts/transactions", trans(map[string]any{"org_code": "TESTIV0001", "account_num": invAcct}),
			[]string{"next_page", "trans_cnt", "trans_list[].prod_name", "trans_list[].prod_code", "trans_list[].trans_dtime", "trans_list[].trans_type", "trans_list[].trans_type_detail", "trans_list[].trans_num", "trans_list[].base_amt", "trans_list[].trans_amt", "trans_list[].settle_amt", "trans_list[].balance_amt", "trans_list[].currency_code"}},
		{"insu list", "GET", "/insu/insurances?org_code=TESTIS0001&search_timestamp=0", nil,
			[]string{"search_timestamp", "insu_cnt", "insu_list[].insu_num", "insu_list[].is_consent", "insu_list[].prod_name", "insu_list[].insu_type", "insu_list[].insu_status"}},
		{"insu basic", "POST", "/insu/insurances/basic", map[string]any{"org_code": "TESTIS0001", "insu_num": insuNum, "search_timestamp": "0"},
			[]string{"is_renewable", "issue_date", "exp_date", "face_amt", "currency_code", "is_variable", "is_universal", "is_loanable", "insured_count", "insured_list[].insured_no", "insured_list[].insured_name"}},
		{"efin accounts", "GET", "/efin/accounts?org_code=TESTEF0001&search_timestamp=0", nil,
			[]string{"name", "reg_date", "account_list[].sub_key", "account_list[].account_id", "account_list[].is_consent", "account_list[].account_status", "account_list[].is_pay_reg", "account_list[].pay_list[].pay_org_code", "account_list[].pay_list[].pay_id", "account_list[].pay_list[].is_primary"}},
		{"efin transactions", "POST", "/efin/accounts/transactions", trans(map[string]any{"org_code": "TESTEF0001", "sub_key": subKey}),
			[]string{"next_page", "trans_cnt", "trans_list[].trans_type", "trans_list[].fob_name", "trans_list[].trans_num", "trans_list[].trans_dtime", "trans_list[].trans_amt", "trans_list[].trans_org_code", "trans_list[].trans_id", "trans_list[].total_install_cnt", "trans_list[].merchant_name", "trans_list[].trans_title", "trans_list[].trans_category", "trans_list[].pay_method"}},
		{"telecom list", "GET", "/telecom/telecoms?org_code=TESTTC0001&search_timestamp=0", nil,
			[]string{"search_timestamp", "telecom_cnt", "telecom_list[].mgmt_id", "telecom_list[].is_consent", "telecom_list[].telecom_num", "telecom_list[].type", "telecom_list[].status"}},
	}
}

func TestConformance(t *testing.T) {
	e := newEnv(t, testOptions(t))
	cust := loanCustomer(t, e.sim)
	tok := e.sim.IssueToken(cust, "")
	caTok := e.sim.IssueToken(0, "ca")
	mgTok := e.sim.IssueToken(0, "manage")
	ci, _ := e.sim.Customer(cust)

	var all []*result
	for _, prefix := range []string{"/v1", "/v2"} {
		for _, tc := range sectorCases(t, e, prefix, tok) {
			t.Run(prefix+" "+tc.name, func(t *testing.T) {
				tran := tranID()
				r := e.do(t, req{method: tc.method, path: prefix + tc.path, token: tok, json: tc.body, tran: tran})
				wantCode(t, tc.method+" "+tc.path, r, http.StatusOK, codeOK)
				if got := r.str("rsp_msg"); got != "성공" {
					t.Errorf("rsp_msg: got %q, want 성공", got)
				}
				if got := r.header.Get("x-api-tran-id"); got != tran {
					t.Errorf("x-api-tran-id: got %q, want %q", got, tran)
				}
				for _, f := range tc.fields {
					if err := checkPath(r.body, f); err != nil {
						t.Errorf("field %s: %v", f, err)
					}
				}
				all = append(all, r)
			})
		}
	}

	// The CA and portal APIs, richest in secrets.
	signReq := map[string]any{
		"sign_tx_id": "TESTMD0001_TESTCA0001_20240315093000_000000000001", "user_ci": ci.CI, "real_name": ci.Name,
		"phone_num": ci.PhoneIntl, "request_title": "마이데이터 전송요구", "device_code": "PC", "device_browser": "WB",
		"return_app_scheme_url": "https://operator.example/return", "consent_type": "1", "consent_cnt": 1,
		"consent_list": []map[string]any{{"tx_id": "MD_TESTMD0001_TESTBK0001_TESTRL0001_TESTCA0001_20240315093000_000000000001", "consent_title": "테스트은행 전송요구", "consent": `{"is_scheduled":true}`, "consent_len": 19}},
	}
	r := e.do(t, req{method: "POST", path: "/ca/sign_request", token: caTok, json: signReq})
	wantCode(t, "POST /ca/sign_request", r, http.StatusOK, codeOK)
	for _, f := range []string{"cert_tx_id", "sign_app_scheme"} {
		if err := checkPath(r.body, f); err != nil {
			t.Errorf("sign_request %s: %v", f, err)
		}
	}
	all = append(all, r)
	r = e.do(t, req{method: "POST", path: "/ca/sign_result", token: caTok, json: map[string]any{"cert_tx_id": r.str("cert_tx_id"), "sign_tx_id": signReq["sign_tx_id"]}})
	wantCode(t, "POST /ca/sign_result", r, http.StatusOK, codeOK)
	for _, f := range []string{"signed_consent_len", "signed_consent_list[].tx_id", "signed_consent_list[].signed_consent", "signed_consent_list[].signed_consent_len"} {
		if err := checkPath(r.body, f); err != nil {
			t.Errorf("sign_result %s: %v", f, err)
		}
	}
	all = append(all, r)
	for _, tc := range []struct {
		path   string
		fields []string
	}{
		{"/mgmts/services", []string{"org_list[].service_list[].service_name", "org_list[].service_list[].op_type", "org_list[].service_list[].client_id", "org_list[].service_list[].client_secret", "org_list[].service_list[].redirect_uri", "org_list[].service_list[].client_ip_list[].client_ip"}},
		{"/mgmts/orgs?search_timestamp=0", []string{"org_list[].op_type", "org_list[].org_code", "org_list[].org_type", "org_list[].org_name", "org_list[].org_regno", "org_list[].corp_regno", "org_list[].address", "org_list[].domain", "org_list[].relay_org_code", "org_list[].industry", "org_list[].auth_type"}},
		{"/mgmts/ca_credentials", []string{"org_list[].org_code", "org_list[].client_id", "org_list[].client_secret", "org_list[].client_ip_list[].client_ip"}},
	} {
		r := e.do(t, req{path: tc.path, token: mgTok})
		wantCode(t, "GET "+tc.path, r, http.StatusOK, codeOK)
		for _, f := range tc.fields {
			if err := checkPath(r.body, f); err != nil {
				t.Errorf("%s %s: %v", tc.path, f, err)
			}
		}
		all = append(all, r)
	}
	r = e.do(t, req{method: "POST", path: "/mgmts/services", token: mgTok})
	wantCode(t, "POST /mgmts/services", r, http.StatusOK, codeOK)

	t.Run("shapes", func(t *testing.T) {
		for _, r := range all {
			checkShapes(t, "", r.body)
		}
	})
	t.Run("sensitive values cover the payloads", func(t *testing.T) {
		known := map[string]bool{}
		for _, v := range e.sim.SensitiveValues(cust) {
			known[v] = true
		}
		for _, r := range all {
			checkSensitive(t, "", r.body, known)
		}
	})
}

var (
	reDigits14 = regexp.MustCompile(`^[0-9]{14}$`)
	reMonth    = regexp.MustCompile(`^[0-9]{6}$`)
)

// checkShapes applies the format rules of SPEC §1.5–1.6 to every field by
// its name: *_dtime and search_timestamp N(14) strings that are real times,
// *_date YYYYMMDD, *_month YYYYMM, *_amt/*_cnt/*_rate numbers, is_* booleans,
// rsp_code five digits.
func checkShapes(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := path + "." + k
			switch {
			case strings.HasSuffix(k, "_dtime") || k == "search_timestamp":
				s, ok := child.(string)
				if !ok || !reDigits14.MatchString(s) {
					t.Errorf("%s: got %v (%T), want a 14-digit string", p, child, child)
				} else if _, err := time.Parse(dtimeLayout, s); err != nil {
					t.Errorf("%s: %q is not a valid time: %v", p, s, err)
				}
			case strings.HasSuffix(k, "_date"):
				s, ok := child.(string)
				if _, err := time.Parse(dateLayout, s); !ok || len(s) != 8 || err != nil {
					t.Errorf("%s: got %v (%T), want YYYYMMDD", p, child, child)
				}
			case strings.HasSuffix(k, "_month"):
				s, ok := child.(string)
				if !ok || !reMonth.MatchString(s) {
					t.Errorf("%s: got %v (%T), want YYYYMM", p, child, child)
				}
			case strings.HasSuffix(k, "_amt") || strings.HasSuffix(k, "_cnt") || strings.HasSuffix(k, "_rate") || strings.HasSuffix(k, "_len") || k == "expires_in":
				if _, ok := child.(json.Number); !ok {
					t.Errorf("%s: got %v (%T), want a JSON number", p, child, child)
				}
			case strings.HasPrefix(k, "is_"):
				if _, ok := child.(bool); !ok {
					t.Errorf("%s: got %v (%T), want a boolean", p, child, child)
				}
			case k == "rsp_code":
				if s, _ := child.(string); len(s) != 5 || !allDigits(s) {
					t.Errorf("%s: got %v, want 5 digits", p, child)
				}
			case k == "org_code" || strings.HasSuffix(k, "_org_code"):
				if s, _ := child.(string); len(s) != 10 && !(k == "relay_org_code" && s == "") {
					t.Errorf("%s: got %q, want aN(10)", p, s)
				}
			}
			checkShapes(t, p, child)
		}
	case []any:
		for _, el := range v {
			checkShapes(t, path+"[]", el)
		}
	}
}

// sensitiveFields are the SPEC §4 names whose values must all be listed by
// SensitiveValues.
var sensitiveFields = map[string]bool{
	"account_num": true, "repay_account_num": true, "card_id": true, "card_num": true, "insu_num": true,
	"insured_name": true, "holder_name": true, "telecom_num": true, "mgmt_id": true, "sub_key": true,
	"account_id": true, "pay_id": true, "trans_id": true, "trans_memo": true, "merchant_name": true,
	"merchant_regno": true, "trans_title": true, "name": true, "client_secret": true, "signed_consent": true,
	"access_token": true, "refresh_token": true,
}

func checkSensitive(t *testing.T, path string, v any, known map[string]bool) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if s, ok := child.(string); ok && sensitiveFields[k] && !known[s] {
				t.Errorf("%s.%s: value not in SensitiveValues", path, k)
			}
			checkSensitive(t, path+"."+k, child, known)
		}
	case []any:
		for _, el := range v {
			checkSensitive(t, path+"[]", el, known)
		}
	}
}

// TestRealisticValues checks the SPEC §7 formats of identifiers directly.
func TestRealisticValues(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(3, "")
	c, ok := e.sim.Customer(3)
	if !ok {
		t.Fatal("Customer(3): not found")
	}
	if !regexp.MustCompile(`^\p{Hangul}{3}$`).MatchString(c.Name) {
		t.Errorf("name: got %q, want three Hangul syllables", c.Name)
	}
	if len(c.CI) != 88 || !regexp.MustCompile(`^[A-Za-z0-9+/]{86}==$`).MatchString(c.CI) {
		t.Errorf("CI: got %q (len %d), want 88-char base64", c.CI, len(c.CI))
	}
	if !regexp.MustCompile(`^010-[0-9]{4}-[0-9]{4}$`).MatchString(c.Phone) {
		t.Errorf("phone: got %q, want 010-xxxx-xxxx", c.Phone)
	}
	if !regexp.MustCompile(`^\+8210[0-9]{8}$`).MatchString(c.PhoneIntl) {
		t.Errorf("phone intl: got %q, want +8210xxxxxxxx", c.PhoneIntl)
	}
	checks := []struct {
		path, list, field string
		re                *regexp.Regexp
	}{
		{"/v1/bank/accounts?org_code=TESTBK0001", "account_list", "account_num", regexp.MustCompile(`^[0-9]{14}$`)},
		{"/v1/bank/accounts?org_code=TESTBK0002", "account_list", "account_num", regexp.MustCompile(`^[0-9]{14}$`)},
		{"/v1/card/cards?org_code=TESTCD0001", "card_list", "card_num", regexp.MustCompile(`^[0-9]{6}\*{6}[0-9]{4}$`)},
		{"/v1/card/cards?org_code=TESTCD0001", "card_list", "card_id", regexp.MustCompile(`^[0-9A-Z]{16}$`)},
		{"/v1/insu/insurances?org_code=TESTIS0001", "insu_list", "insu_num", regexp.MustCompile(`^[0-9]{13}$`)},
		{"/v1/telecom/telecoms?org_code=TESTTC0001", "telecom_list", "telecom_num", regexp.MustCompile(`^0[17]0-[0-9]{4}-[0-9]{4}$`)},
	}
	for _, ck := range checks {
		r := e.do(t, req{path: ck.path, token: tok})
		wantCode(t, ck.path, r, http.StatusOK, codeOK)
		for i, item := range list(t, r.body, ck.list) {
			if s, _ := item[ck.field].(string); !ck.re.MatchString(s) {
				t.Errorf("%s %s[%d].%s: got %q, want %s", ck.path, ck.list, i, ck.field, s, ck.re)
			}
		}
	}
	// The mobile line's number is the customer's phone.
	r := e.do(t, req{path: "/v1/telecom/telecoms?org_code=TESTTC0001", token: tok})
	if got := firstOf(t, r, "telecom_list", "telecom_num"); got != c.Phone {
		t.Errorf("telecom_num: got %q, want %q", got, c.Phone)
	}
	// Deposit rows: newest first, balance consistent with amounts.
	org, _, _ := e.sim.BigDepositAccount()
	acct := firstOf(t, e.do(t, req{path: "/v1/bank/accounts?org_code=" + org, token: tok}), "account_list", "account_num")
	r = e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: map[string]any{"org_code": org, "account_num": acct, "seqno": "1", "limit": 500}})
	rows := list(t, r.body, "trans_list")
	for i := 1; i < len(rows); i++ {
		newer, older := rows[i-1], rows[i]
		if newer["trans_dtime"].(string) < older["trans_dtime"].(string) {
			t.Fatalf("trans_list[%d]: not newest first", i)
		}
		amt, _ := newer["trans_amt"].(json.Number).Int64()
		nb, _ := newer["balance_amt"].(json.Number).Int64()
		ob, _ := older["balance_amt"].(json.Number).Int64()
		want := ob + amt
		if newer["trans_type"] == "02" {
			want = ob - amt
		}
		if nb != want || nb < 0 {
			t.Fatalf("trans_list[%d]: balance %d after %v %d from %d", i-1, nb, newer["trans_type"], amt, ob)
		}
	}
	// The search_timestamp is the clock's KST time.
	if got := r.header.Get("Content-Type"); got != contentTypeJSON {
		t.Errorf("Content-Type: got %q", got)
	}
	r = e.do(t, req{path: "/v1/bank/accounts?org_code=TESTBK0001&" + url.Values{"search_timestamp": {"0"}}.Encode(), token: tok})
	if got := r.str("search_timestamp"); got != "20240315093000" {
		t.Errorf("search_timestamp: got %q, want 20240315093000", got)
	}
}
