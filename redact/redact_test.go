package redact

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
)

func builtin(t testing.TB) *Policy {
	t.Helper()
	p, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rawRecord(api, path string, respBody string) *mdtap.Record {
	m := mdtap.MatchAPI(path)
	return &mdtap.Record{
		V: 1, ID: "01JQ0000000000000000000000", Time: mdtap.Timestamp{Time: time.Unix(1700000000, 0)},
		Sector: m.Sector, API: m.API, Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: "GET", Host: "127.0.0.1:9443", Path: path,
			Query:   map[string][]string{"org_code": {"TESTBK0001"}, "limit": {"500"}},
			Headers: map[string][]string{"Authorization": {"Bearer SECRET-TOKEN-1"}, "x-api-tran-id": {"TESTMD0001M00000000000001"}, "X-Secret": {"s3cr3t"}}},
		Response: &mdtap.Response{Status: 200,
			Headers: map[string][]string{"Content-Type": {"application/json; charset=UTF-8"}},
			Payload: mdtap.Payload{Body: []byte(respBody), BodyBytes: int64(len(respBody)), CapturedBytes: int64(len(respBody))}},
	}
}

func TestProtectBankAccounts(t *testing.T) {
	r := New(builtin(t), &fakeKeys{})
	body := `{"rsp_code":"00000","rsp_msg":"성공","account_cnt":1,"account_list":[{"account_num":"99900012345678","is_consent":true,"prod_name":"테스트 자유입출금통장","new_field":"x","balance_amt":1487500}]}`
	out, err := r.Protect(rawRecord("", "/v1/bank/accounts", body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	s := string(b)
	t.Logf("%s", s)
	for _, secret := range []string{"99900012345678", "테스트 자유입출금통장", "SECRET-TOKEN-1", "s3cr3t"} {
		if strings.Contains(s, secret) {
			t.Errorf("protected record contains %q", secret)
		}
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(out.Unclassified) != 1 || out.Unclassified[0] != "response.body.account_list[*].new_field" {
		t.Errorf("Unclassified = %v", out.Unclassified)
	}
}
