package archive

import (
	"bytes"
	"testing"
	"time"
)

func TestParseMeta(t *testing.T) {
	const id = "01JPA6N6D8ZQ3T9V5Y0B7C2K4M"
	valid := `{"v":1,"id":"` + id + `","time":"2026-03-15T09:30:00.123456Z","sector":"bank","org_code":"TESTBK0001","subject":"mdtap:hash:v1:7:AAAA","policy":"builtin@3f2a9c1d","request":{"method":"GET"}}`
	m, bad := parseMeta([]byte(valid))
	if bad != nil {
		t.Fatalf("parseMeta(valid) = %v", bad)
	}
	want := recordMeta{ID: id, Time: time.Date(2026, 3, 15, 9, 30, 0, 123456000, time.UTC), Sector: "bank", Org: "TESTBK0001", Subject: "mdtap:hash:v1:7:AAAA"}
	if m != want {
		t.Errorf("parseMeta(valid) = %+v, want %+v", m, want)
	}
	m, bad = parseMeta([]byte(`{"v":1,"id":"` + id + `","time":"2026-03-15T18:30:00+09:00","sector":"card","policy":"p"}`))
	if bad != nil || m.Org != "_" || m.Subject != "" || m.Time.Hour() != 9 || m.Time.Location() != time.UTC {
		t.Errorf("parseMeta(no org, KST time) = %+v, %v; want org _, 09:30 UTC", m, bad)
	}

	tests := []struct {
		name, data string
		reason     string
		id         string
		protected  bool
	}{
		{"garbage", "this is not json", ReasonNotJSON, "", false},
		{"empty", "", ReasonNotJSON, "", false},
		{"null", "null", ReasonNotJSON, "", false},
		{"array", `[{"policy":"p"}]`, ReasonNotJSON, "", false},
		{"truncated", valid[:len(valid)-5], ReasonNotJSON, "", false},
		{"trailing", valid + "{}", ReasonNotJSON, "", false},
		{"duplicate member", `{"policy":"p","policy":""}`, ReasonNotJSON, "", false},
		{"invalid utf8", "{\"policy\":\"p\xff\"}", ReasonNotJSON, "", false},
		{"raw record", `{"v":1,"id":"` + id + `","time":"2026-03-15T09:30:00Z","sector":"bank","request":{"body":{"account_num":"1234"}}}`, ReasonUnprotected, id, false},
		{"empty policy", `{"v":1,"id":"` + id + `","policy":""}`, ReasonUnprotected, id, false},
		{"policy not a string", `{"v":1,"id":"` + id + `","policy":1}`, ReasonUnprotected, id, false},
		{"raw, bad id", `{"v":1,"id":"secret 900101-1234567"}`, ReasonUnprotected, "", false},
		{"v2", `{"v":2,"id":"` + id + `","time":"2026-03-15T09:30:00Z","sector":"bank","policy":"p"}`, ReasonVersion, id, true},
		{"no v", `{"id":"` + id + `","time":"2026-03-15T09:30:00Z","sector":"bank","policy":"p"}`, ReasonInvalid, id, true},
		{"bad id", `{"v":1,"id":"x","time":"2026-03-15T09:30:00Z","sector":"bank","policy":"p"}`, ReasonInvalid, "", true},
		{"no time", `{"v":1,"id":"` + id + `","sector":"bank","policy":"p"}`, ReasonInvalid, id, true},
		{"bad time", `{"v":1,"id":"` + id + `","time":"yesterday","sector":"bank","policy":"p"}`, ReasonInvalid, id, true},
		{"bad sector", `{"v":1,"id":"` + id + `","time":"2026-03-15T09:30:00Z","sector":"../x","policy":"p"}`, ReasonInvalid, id, true},
		{"org not a string", `{"v":1,"id":"` + id + `","time":"2026-03-15T09:30:00Z","sector":"bank","org_code":7,"policy":"p"}`, ReasonInvalid, id, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, bad := parseMeta([]byte(tt.data))
			if bad == nil {
				t.Fatalf("parseMeta(%.40q) accepted it", tt.data)
			}
			if bad.reason != tt.reason || bad.id != tt.id || bad.protected != tt.protected {
				t.Errorf("parseMeta = reason %q id %q protected %v; want %q %q %v", bad.reason, bad.id, bad.protected, tt.reason, tt.id, tt.protected)
			}
			if tt.data != "" && bytes.Contains([]byte(bad.detail), []byte(tt.data)) {
				t.Errorf("detail %q quotes the message", bad.detail)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	one := []byte(`{"a":1,"b":"x\ny"}`)
	if got := oneLine(one); &got[0] != &one[0] {
		t.Error("oneLine copied a one-line record; want the message bytes themselves")
	}
	multi := []byte("{\n  \"a\": 1,\r\n  \"b\": \"x\\ny\"\n}")
	if got := oneLine(multi); string(got) != `{"a":1,"b":"x\ny"}` {
		t.Errorf("oneLine(multi-line) = %q", got)
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"01JPA6N6D8ZQ3T9V5Y0B7C2K4M","time":"2026-03-15T09:30:00.123456Z","sector":"bank","policy":"p"}`))
	f.Add([]byte("{\n\"policy\":\"p\"\n}"))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, bad := parseMeta(data)
		if bad != nil {
			return
		}
		line := oneLine(data)
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("an accepted record is not one line: %q", line)
		}
		if m.ID == "" || m.Time.IsZero() || !m.Sector.Valid() || m.Org == "" {
			t.Fatalf("accepted record with incomplete meta %+v", m)
		}
	})
}
