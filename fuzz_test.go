package mdtap_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
)

// The root package's parsers see outside input: record values, request
// paths, URL queries, store URLs. None may panic, and each keeps its promise.

func FuzzParseProtected(f *testing.F) {
	for _, s := range []string{mdtap.Dropped, mdtap.MaskValue("**12"), mdtap.EncValue(fakeCT), mdtap.HashValue(3, []byte("0123456789abcdef")),
		mdtap.ShredValue(mdtap.FormTok, 7), "mdtap:lit:v1:mdtap:x", "mdtap:enc:v1:", "mdtap:hash:v1::", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := mdtap.ParseProtected(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, mdtap.ProtectedPrefix) {
			t.Fatalf("parsed a clear string as %s", p.Form)
		}
		switch p.Form {
		case mdtap.FormEnc, mdtap.FormBlob, mdtap.FormTok, mdtap.FormHash:
			if _, err := p.Bytes(); err != nil {
				t.Fatalf("parsed %s whose bytes do not decode: %v", p.Form, err)
			}
		}
	})
}

func FuzzMatchAPI(f *testing.F) {
	for _, s := range []string{"/v1/bank/accounts", "/v2/card/cards/x/approval-domestic", "/oauth/2.0/token", "//", "/v1/card/cards/{card_id}", "/mgmts/orgs/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		m := mdtap.MatchAPI(path)
		if !m.Sector.Valid() {
			t.Fatalf("sector %q outside the vocabulary", m.Sector)
		}
		if m.API != mdtap.APIUnknown && !strings.HasPrefix(m.API, "/") {
			t.Fatalf("api %q", m.API)
		}
		for name, v := range m.Params {
			if v == "" || !strings.Contains(path, v) || strings.Contains(v, "/") {
				t.Fatalf("param %s = %q not a segment of %q", name, v, path)
			}
		}
		if subj := mdtap.RecordSubject(m.Sector, path); strings.Count(subj, ".") != 3 || strings.ContainsAny(subj, "*> ") {
			t.Fatalf("subject %q", subj)
		}
	})
}

func FuzzParseValues(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a=%zz", "=&&=", "a", "%80=1", "x=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vals, ok := mdtap.ParseValues(s)
		if !ok {
			return
		}
		if _, err := json.Marshal(vals); err != nil {
			t.Fatal(err)
		}
		for name := range vals {
			if !strings.Contains(s, name) && !strings.Contains(s, "%") && !strings.Contains(s, "+") {
				t.Fatalf("name %q not from the input", name)
			}
		}
	})
}

func FuzzParseStoreURL(f *testing.F) {
	for _, s := range []string{"s3://bucket/prefix?endpoint=127.0.0.1:7070&secure=false", "file:///var/lib/x", "s3://", "file://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := mdtap.ParseStoreURL(s)
		if err != nil {
			return
		}
		again, err := mdtap.ParseStoreURL(u.String())
		if err != nil || again != u {
			t.Fatalf("String() does not parse back: %q → %+v, %v", u.String(), again, err)
		}
	})
}

// FuzzDecodeRecord: records come back from NATS, the spool, the archive and
// `mdtap redact`'s input. A record that decodes and validates encodes to
// bytes that decode to a valid record encoding to the same bytes (the
// encoding is a fixed point after one round: times are cut to microseconds
// and bodies compacted), and keeps its id and time.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"01JQ3V7ZC8M4W5X6Y7Z8A9B0CD","time":"2026-03-15T09:30:00.123456Z","sector":"bank","api":"unknown","transmission":"user_initiated","request":{"method":"GET","body_bytes":0,"captured_bytes":0},"error":"refused"}`))
	f.Add([]byte(`{"v":1,"id":"01JQ3V7ZC8M4W5X6Y7Z8A9B0CD","time":"2026-03-15T09:30:00.1234567+09:00","sector":"card","api":"/v1/card/cards","transmission":"scheduled","request":{"method":"GET","body_bytes":0,"captured_bytes":0},"response":{"status":200,"body_kind":"json","body":{ "a" : [1, "<\u00e9>"] },"body_bytes":9,"captured_bytes":9}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec mdtap.Record
		if err := json.Unmarshal(data, &rec); err != nil || rec.Validate() != nil {
			return
		}
		enc, err := json.Marshal(&rec)
		if err != nil {
			t.Fatalf("encode a valid record: %v", err)
		}
		var back mdtap.Record
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("decode an encoded record: %v", err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("a valid record re-decodes invalid: %v", err)
		}
		again, err := json.Marshal(&back)
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not a fixed point: %v\n%s\n%s", err, enc, again)
		}
		if back.ID != rec.ID || !back.Time.Equal(rec.Time.Truncate(time.Microsecond)) {
			t.Fatalf("id/time %s %v came back as %s %v", rec.ID, rec.Time, back.ID, back.Time)
		}
	})
}
