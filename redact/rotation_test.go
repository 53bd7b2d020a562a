package redact_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
)

func sampleRaw(id string) *mdtap.Record {
	body := `{"rsp_code":"00000","account_list":[{"account_num":"99900012345678","prod_name":"테스트 통장"}]}`
	return &mdtap.Record{
		V: 1, ID: id, Time: mdtap.Timestamp{Time: time.Now()}, Sector: mdtap.SectorBank, API: "/v1/bank/accounts",
		Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: "GET", Host: "h", Path: "/v1/bank/accounts",
			Query: map[string][]string{"org_code": {"TESTBK0001"}}},
		Response: &mdtap.Response{Status: 200, Headers: map[string][]string{"content-type": {"application/json"}},
			Payload: mdtap.Payload{Body: []byte(body), BodyBytes: int64(len(body)), CapturedBytes: int64(len(body))}},
	}
}

func protectedValues(t *testing.T, rec *mdtap.Record) (acct, prod string) {
	t.Helper()
	var b struct {
		List []struct {
			Acct string `json:"account_num"`
			Prod string `json:"prod_name"`
		} `json:"account_list"`
	}
	if err := json.Unmarshal(rec.Response.Body, &b); err != nil || len(b.List) != 1 {
		t.Fatalf("body: %v", err)
	}
	return b.List[0].Acct, b.List[0].Prod
}

// After a rotation new values carry the new key id and old values still
// reveal; after the old keys are destroyed, old values read as shredded and
// revealing does not fail.
func TestRotateThenDestroy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	set := keysIn(t, dir)
	p, _ := redact.Load("builtin")
	before, err := redact.New(p, set).Protect(sampleRaw("01JQ0000000000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	oldKeys := set.Primary()
	for _, purpose := range []keys.Purpose{keys.PurposeAEAD, keys.PurposeDAEAD} {
		if _, err := keys.Rotate(ctx, dir, purpose); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := redact.New(p, set).Protect(sampleRaw("01JQ0000000000000000000002"))
	if err != nil {
		t.Fatal(err)
	}
	if after.Keys.AEAD == oldKeys.AEAD || after.Keys.DAEAD == oldKeys.DAEAD {
		t.Fatalf("record keys %+v after rotation, old %+v", after.Keys, oldKeys)
	}
	acct, prod := protectedValues(t, after)
	for _, v := range []struct {
		value string
		want  uint32
	}{{acct, after.Keys.DAEAD}, {prod, after.Keys.AEAD}} {
		pv, err := mdtap.ParseProtected(v.value)
		if err != nil || pv.KeyID != v.want {
			t.Fatalf("value under key %d, want the new key %d (%v)", pv.KeyID, v.want, err)
		}
	}
	for _, rec := range []*mdtap.Record{before, after} {
		back, st, err := redact.Reveal(rec, set)
		if err != nil || st.Revealed != 2 || st.Shredded != 0 {
			t.Fatalf("reveal %s: %+v %v", rec.ID, st, err)
		}
		if !strings.Contains(string(back.Response.Body), "99900012345678") {
			t.Fatalf("reveal %s did not restore the account number", rec.ID)
		}
	}
	for _, id := range []uint32{oldKeys.AEAD, oldKeys.DAEAD} {
		if err := keys.Destroy(ctx, dir, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	back, st, err := redact.Reveal(before, set)
	if err != nil {
		t.Fatalf("reveal after destroy: %v, want the values reported shredded", err)
	}
	if st.Shredded != 2 || st.Revealed != 0 {
		t.Fatalf("stats %+v, want 2 shredded", st)
	}
	acct, prod = protectedValues(t, back)
	if acct != mdtap.ShredValue(mdtap.FormTok, oldKeys.DAEAD) || prod != mdtap.ShredValue(mdtap.FormEnc, oldKeys.AEAD) {
		t.Fatalf("shredded values read %q and %q", acct, prod)
	}
	if _, st, err := redact.Reveal(after, set); err != nil || st.Revealed != 2 {
		t.Fatalf("values under the new keys: %+v %v", st, err)
	}
}
