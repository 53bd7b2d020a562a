package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
)

// Seeds live in testdata/fuzz/<Target>/ (MyData bodies from the simulator
// and hostile shapes); f.Add adds a few inline ones.
func addJSONSeeds(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `"s"`, `1`, `{"a":[1,"b",{"c":null}]}`,
		`{"account_list":[{"account_num":"99900012345678","prod_name":"통장"}]}`,
		`{"a":"mdtap:enc:v1:AQID"}`, `{"\u0061":"\ud83d\ude00"}`, `{"a":1,"a":2}`, `{"a":`,
		strings.Repeat("[", 100) + strings.Repeat("]", 100), "{\"x\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
}

// emptyPolicy protects every value by the default rule.
func emptyPolicy(t testing.TB) *Policy {
	p, err := Parse([]byte("version: 1\nrules: []\n"), "empty")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzProtectJSON checks the walker's invariants on arbitrary bodies: it never
// panics, the output is valid JSON, under a policy without keep rules every
// leaf comes out protected in the input's shape, and reveal restores the body.
func FuzzProtectJSON(f *testing.F) {
	addJSONSeeds(f)
	keys := &fakeKeys{}
	r := New(emptyPolicy(f), keys)
	b := New(builtin(f), keys)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := record("POST", "/v1/bank/accounts/deposit/transactions", nil, "application/json", "", "application/json", string(body))
		for _, red := range []*Redactor{r, b} {
			out, err := red.Protect(rec)
			if err != nil {
				t.Fatalf("Protect: %v", err)
			}
			enc, err := json.Marshal(out)
			if err != nil || !json.Valid(enc) {
				t.Fatalf("protected record is not valid JSON: %v", err)
			}
			if len(body) >= 8 && out.Response.BodyKind == mdtap.BodyOpaque && bytes.Contains(out.Response.Body, body) {
				t.Fatal("an opaque body appears in clear")
			}
		}
		out, _ := r.Protect(rec)
		back, _, err := Reveal(out, keys)
		if err != nil {
			t.Fatalf("Reveal: %v", err)
		}
		if out.Response.BodyKind != mdtap.BodyJSON {
			return
		}
		var in, prot any
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("walker accepted a body encoding/json rejects: %v", err)
		}
		if err := json.Unmarshal(out.Response.Body, &prot); err != nil {
			t.Fatal(err)
		}
		sameShapeAllProtected(t, in, prot)
		if !jsonEqual(t, back.Response.Body, body) {
			t.Fatalf("reveal gave %s, want %s", back.Response.Body, body)
		}
	})
}

func sameShapeAllProtected(t *testing.T, in, out any) {
	t.Helper()
	switch v := in.(type) {
	case map[string]any:
		o, ok := out.(map[string]any)
		if !ok || len(o) != len(v) {
			t.Fatalf("object became %T", out)
		}
		for k := range v {
			sameShapeAllProtected(t, v[k], o[k])
		}
	case []any:
		o, ok := out.([]any)
		if !ok || len(o) != len(v) {
			t.Fatalf("array became %T", out)
		}
		for i := range v {
			sameShapeAllProtected(t, v[i], o[i])
		}
	case nil:
		if out != nil {
			t.Fatalf("null became %v", out)
		}
	default:
		s, ok := out.(string)
		if !ok || !strings.HasPrefix(s, "mdtap:enc:v1:") {
			t.Fatalf("leaf %v came out as %v, want an enc value", in, out)
		}
	}
}

// FuzzProtectForm does the same for form bodies and URL queries.
func FuzzProtectForm(f *testing.F) {
	for _, s := range []string{"", "a=b", "grant_type=refresh_token&refresh_token=X&client_secret=Y", "a=%zz&=&&b", "a=1&a=2", "\xff=1"} {
		f.Add(s)
	}
	keys := &fakeKeys{}
	r := New(emptyPolicy(f), keys)
	f.Fuzz(func(t *testing.T, form string) {
		rec := record("POST", "/oauth/2.0/token", mdtap.ParseQuery(form), "application/x-www-form-urlencoded", form, "application/json", "{}")
		out, err := r.Protect(rec)
		if err != nil {
			t.Fatalf("Protect: %v", err)
		}
		if out.Request.BodyKind == mdtap.BodyForm {
			var vals map[string][]string
			if err := json.Unmarshal(out.Request.Body, &vals); err != nil {
				t.Fatalf("form body is not an object of arrays: %v", err)
			}
			for _, vs := range vals {
				for _, v := range vs {
					if !isEncrypted(v) {
						t.Fatalf("form value %q not protected", v)
					}
				}
			}
		}
		for _, vs := range out.Request.Query {
			for _, v := range vs {
				if !isEncrypted(v) {
					t.Fatalf("query value %q not protected", v)
				}
			}
		}
		back, _, err := Reveal(out, keys)
		if err != nil {
			t.Fatalf("Reveal: %v", err)
		}
		for name, vs := range rec.Request.Query {
			for i, v := range vs {
				if back.Request.Query[name][i] != v {
					t.Fatalf("query %s[%d] revealed %q, want %q", name, i, back.Request.Query[name][i], v)
				}
			}
		}
	})
}

// FuzzParsePolicy: policy files are outside input too.
func FuzzParsePolicy(f *testing.F) {
	text, _ := BuiltinText(ProfileBuiltin)
	f.Add(text)
	f.Add([]byte("version: 1\nextends: builtin\nrules:\n  - {path: 'a[*].b', action: keep, api: /v1/x}\n"))
	f.Add([]byte("version: 1\nrules:\n  - {path: '**.[', action: keep}\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		p, err := Parse(text, "fuzz")
		if err != nil {
			return
		}
		r := New(p, &fakeKeys{})
		rec := record("GET", "/v1/bank/accounts", map[string][]string{"a": {"b"}}, "", "", "application/json", `{"a":[{"b":1}]}`)
		if _, err := r.Protect(rec); err != nil {
			t.Fatalf("Protect under a parsed policy: %v", err)
		}
	})
}

// isEncrypted: an enc value, or a blob for bytes that were not UTF-8.
func isEncrypted(v string) bool {
	return strings.HasPrefix(v, "mdtap:enc:v1:") || strings.HasPrefix(v, "mdtap:blob:v1:")
}

// FuzzRevealRecord: `mdtap reveal` and `audit query --decrypt` read
// protected records back from the archive, outside input by then. Whatever
// the record, Reveal never panics, leaves its input untouched, keeps the
// record's identity, and gives a record that encodes as JSON.
func FuzzRevealRecord(f *testing.F) {
	keys := &fakeKeys{}
	r := New(builtin(f), keys)
	for _, rec := range []*mdtap.Record{
		record("GET", "/v1/bank/accounts", map[string][]string{"org_code": {"TESTBK0001"}, "limit": {"2"}}, "", "", "application/json",
			`{"rsp_code":"00000","rsp_msg":"성공","account_cnt":1,"account_list":[{"account_num":"99900012345678","prod_name":"테스트통장","account_type":"1001"}]}`),
		record("POST", "/oauth/2.0/token", nil, "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=TEST-refresh&client_secret=TEST-secret",
			"application/json", `{"access_token":"TEST-access","token_type":"Bearer","expires_in":7776000}`),
		record("GET", "/v1/card/cards/TESTCARD01/approval-domestic", nil, "", "", "application/octet-stream", "\x00\x01binary"),
	} {
		out, err := r.Protect(rec)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(out)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec mdtap.Record
		if json.Unmarshal(data, &rec) != nil {
			return
		}
		before, err := json.Marshal(&rec)
		if err != nil {
			return // a body json.Marshal refuses to compact; never stored
		}
		out, _, err := Reveal(&rec, keys)
		if after, _ := json.Marshal(&rec); !bytes.Equal(after, before) {
			t.Fatalf("Reveal changed its input:\n%s\n%s", before, after)
		}
		if err != nil {
			return
		}
		if out.ID != rec.ID || out.Time != rec.Time || out.Sector != rec.Sector || out.API != rec.API || out.Subject != rec.Subject || out.Policy != rec.Policy {
			t.Fatalf("Reveal changed the record's identity")
		}
		if enc, err := json.Marshal(out); err != nil || !json.Valid(enc) {
			t.Fatalf("revealed record does not encode: %v", err)
		}
	})
}
