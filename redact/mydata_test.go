package redact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/leakcheck"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
)

// rawFromExchange builds the raw record the proxy would build for one
// exchange (the proxy has its own builder; this keeps the redactor's tests
// independent of it).
func rawFromExchange(n int, ex simclient.Exchange) *mdtap.Record {
	m := mdtap.MatchAPI(ex.URL.Path)
	h := func(hh http.Header) map[string][]string {
		out := map[string][]string{}
		for k, v := range hh {
			out[strings.ToLower(k)] = v
		}
		return out
	}
	rec := &mdtap.Record{
		V: 1, ID: fmt.Sprintf("01JQ%022d", n), Time: mdtap.Timestamp{Time: time.Now()},
		Sector: m.Sector, API: m.API, TranID: ex.ReqHeader.Get("x-api-tran-id"),
		APIType: ex.ReqHeader.Get("x-api-type"), Transmission: mdtap.TransmissionOf(ex.ReqHeader.Get("x-api-type")),
		Request: mdtap.Request{Method: ex.Method, Host: ex.URL.Host, Path: ex.URL.Path,
			Query: mdtap.ParseQuery(ex.URL.RawQuery), Headers: h(ex.ReqHeader),
			Payload: mdtap.Payload{Body: ex.ReqBody, BodyBytes: int64(len(ex.ReqBody)), CapturedBytes: int64(len(ex.ReqBody))}},
		Response: &mdtap.Response{Status: ex.Status, Headers: h(ex.RespHeader),
			Payload: mdtap.Payload{Body: ex.RespBody, BodyBytes: int64(len(ex.RespBody)), CapturedBytes: int64(len(ex.RespBody))}},
	}
	var rsp struct {
		RspCode string `json:"rsp_code"`
		RspMsg  string `json:"rsp_msg"`
	}
	json.Unmarshal(ex.RespBody, &rsp)
	rec.Response.RspCode, rec.Response.RspMsg = rsp.RspCode, rsp.RspMsg
	return rec
}

func newKeys(t *testing.T) *keys.Set { return keysIn(t, t.TempDir()) }

func keysIn(t testing.TB, dir string) *keys.Set {
	t.Helper()
	if err := keys.Init(context.Background(), dir, ""); err != nil {
		t.Fatal(err)
	}
	set, err := keys.Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestBuiltinPolicyLeaksNothing is the field-protection property test: every
// request and response of every simulator API, through the built-in policy
// with real Tink keys, contains no sensitive value in any encoding; reveal
// restores every encrypt and tokenize value exactly; no field of the
// simulator is left to the default rule.
func TestBuiltinPolicyLeaksNothing(t *testing.T) {
	s := sim.New(sim.Options{Customers: 10})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	var exchanges []simclient.Exchange
	c := simclient.New(srv.URL, &http.Client{Transport: &http.Transport{DisableCompression: true}})
	c.Sim = s
	c.Header = http.Header{"X-Api-Type": {"scheduled"}}
	c.OnExchange = func(ex simclient.Exchange) { exchanges = append(exchanges, ex) }
	for _, customer := range []int{0, 7} {
		if err := c.Walk(context.Background(), customer, 500); err != nil {
			t.Fatal(err)
		}
	}
	set := newKeys(t)
	p, err := redact.Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	r := redact.New(p, set)

	// What the client sent is sensitive too: secrets, CIs, consent documents.
	scanner := leakcheck.New(append(s.SensitiveValues(0, 7),
		"fake-secret-do-not-use", "fake-portal-secret", "MIIB-FAKE-PERSON-INFO", "NONCE-C-", "NONCE-U-"))
	if scanner.Len() < 100 {
		t.Fatalf("only %d sensitive values to look for", scanner.Len())
	}

	var all bytes.Buffer
	unclassified := map[string]bool{}
	for i, ex := range exchanges {
		raw := rawFromExchange(i, ex)
		prot, err := r.Protect(raw)
		if err != nil {
			t.Fatalf("%s: Protect: %v", ex.Name, err)
		}
		if err := prot.Validate(); err != nil {
			t.Fatalf("%s: %v", ex.Name, err)
		}
		b, _ := json.Marshal(prot)
		all.Write(b)
		all.WriteByte('\n')
		for _, u := range prot.Unclassified {
			if !strings.HasPrefix(u, "request.headers") {
				unclassified[ex.Name+": "+u] = true
			}
		}
		back, st, err := redact.Reveal(prot, set)
		if err != nil {
			t.Fatalf("%s: Reveal: %v", ex.Name, err)
		}
		if st.Shredded+st.Unavailable > 0 {
			t.Fatalf("%s: reveal stats %+v", ex.Name, st)
		}
		for _, part := range []struct {
			name      string
			raw, back mdtap.Payload
			protected []byte
		}{{"request", raw.Request.Payload, back.Request.Payload, prot.Request.Body}, {"response", raw.Response.Payload, back.Response.Payload, prot.Response.Body}} {
			if len(part.raw.Body) == 0 || part.back.BodyKind == mdtap.BodyOpaque {
				continue
			}
			checkRevealed(t, ex.Name+" "+part.name, part.raw.Body, part.back.Body, part.protected, back)
		}
		for name, vals := range raw.Request.Query {
			for i, v := range vals {
				got := back.Request.Query[name][i]
				if got != v && !irreversible(got) {
					t.Errorf("%s: query %s revealed %q, want %q", ex.Name, name, got, v)
				}
			}
		}
	}
	if found := scanner.Find(all.Bytes()); len(found) > 0 {
		t.Errorf("%d sensitive values appear in the protected records", len(found))
	}
	for u := range unclassified {
		t.Errorf("no rule names %s", u)
	}
	t.Logf("%d exchanges, %d sensitive values checked in every encoding, %d bytes of protected records", len(exchanges), scanner.Len(), all.Len())
}

func irreversible(v string) bool {
	p, err := mdtap.ParseProtected(v)
	return err == nil && !p.Reversible()
}

// checkRevealed compares a revealed body with the raw one leaf by leaf: each
// leaf is restored exactly, unless its protected form is irreversible.
func checkRevealed(t *testing.T, where string, raw, back, prot []byte, rec *mdtap.Record) {
	t.Helper()
	var rv, bv, pv any
	if rec.Request.BodyKind == mdtap.BodyForm || bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) == false {
		if json.Unmarshal(raw, &rv) != nil { // a form body: compare as values
			vals, _ := url.ParseQuery(string(raw))
			var got map[string][]string
			json.Unmarshal(back, &got)
			for k, vs := range vals {
				for i, v := range vs {
					if got[k][i] != v && !irreversible(got[k][i]) {
						t.Errorf("%s: form %s revealed %q, want %q", where, k, got[k][i], v)
					}
				}
			}
			return
		}
	}
	if err := json.Unmarshal(raw, &rv); err != nil {
		t.Fatalf("%s: raw body: %v", where, err)
	}
	json.Unmarshal(back, &bv)
	json.Unmarshal(prot, &pv)
	var walk func(path string, r, b, p any)
	walk = func(path string, r, b, p any) {
		switch rt := r.(type) {
		case map[string]any:
			bm, _ := b.(map[string]any)
			pm, _ := p.(map[string]any)
			if bm == nil {
				if s, ok := p.(string); ok && irreversible(s) {
					return
				}
				t.Errorf("%s: %s: object not restored", where, path)
				return
			}
			for k := range rt {
				walk(path+"."+k, rt[k], bm[k], pm[k])
			}
		case []any:
			ba, _ := b.([]any)
			pa, _ := p.([]any)
			if len(ba) != len(rt) {
				if s, ok := p.(string); ok && irreversible(s) {
					return
				}
				t.Errorf("%s: %s: array not restored", where, path)
				return
			}
			for i := range rt {
				var pe any
				if i < len(pa) {
					pe = pa[i]
				}
				walk(fmt.Sprintf("%s[%d]", path, i), rt[i], ba[i], pe)
			}
		default:
			if reflect.DeepEqual(r, b) {
				return
			}
			if s, ok := p.(string); ok && irreversible(s) {
				return
			}
			t.Errorf("%s: %s revealed %v, want %v", where, path, b, r)
		}
	}
	walk("", rv, bv, pv)
}
