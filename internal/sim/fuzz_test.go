package sim

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzRequestParsers: the parsers of client input never panic, and the
// values they accept respect their contracts.
func FuzzRequestParsers(f *testing.F) {
	for _, seed := range []string{"", "500", "501", "0", "-1", "00000000000000000100", "abc", "big=10,slow", "gzip;q=0", "20240230", `{"limit":1e2}`, `{"a":"x"}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := parsePage(s, ""); err == nil && (p.limit < 1 || p.limit > MaxLimit) {
			t.Fatalf("parsePage(%q): limit %d accepted", s, p.limit)
		}
		if p, err := parsePage("", s); err == nil && p.offset < 0 {
			t.Fatalf("parsePage next_page %q: offset %d", s, p.offset)
		}
		if f, err := parseFault(s); err == nil && (f.big < 0 || f.big > MaxBigFault) {
			t.Fatalf("parseFault(%q): big %d accepted", s, f.big)
		}
		if dr, err := parseDates(s, s); err == nil && s != "" && !dr.contains(s+"000000") {
			t.Fatalf("parseDates(%q): range excludes its own bound", s)
		}
		_ = acceptsGzip(s)
		var fs flexString
		_ = json.Unmarshal([]byte(s), &fs)
		var b postReq
		_ = json.Unmarshal([]byte(s), &b)
		if json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimSpace(s), "{") {
			body := []byte(strings.TrimSpace(s))
			for _, n := range []int{len(body) + 1, len(body) + 16, len(body) + 17, len(body) + 100} {
				r, size := padBody(body, n)
				out, _ := io.ReadAll(r)
				if len(out) != n || size != int64(n) || !json.Valid(out) {
					t.Fatalf("padBody(%q, %d): %d bytes, valid=%v", body, n, len(out), json.Valid(out))
				}
			}
		}
	})
}
