package archive_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// scanReference decodes the members the scanner picks with a full JSON
// decoder: a member counts when it is a JSON string (status: a number).
func scanReference(line []byte) (map[string]string, bool) {
	var raw map[string]jsontext.Value
	if err := jsonv2.Unmarshal(line, &raw); err != nil || raw == nil {
		return nil, false // not a JSON object (null decodes to a nil map)
	}
	out := map[string]string{}
	str := func(v jsontext.Value, name string) {
		var s string
		if len(v) > 0 && v[0] == '"' && jsonv2.Unmarshal(v, &s) == nil {
			out[name] = s
		}
	}
	for _, n := range []string{"id", "time", "sector", "org_code", "api", "tran_id", "subject"} {
		str(raw[n], n)
	}
	if resp := raw["response"]; len(resp) > 0 && resp[0] == '{' {
		var r map[string]jsontext.Value
		if jsonv2.Unmarshal(resp, &r) != nil || r == nil {
			return nil, false
		}
		str(r["rsp_code"], "rsp_code")
		if st := r["status"]; len(st) > 0 && st[0] != '"' && st[0] != '{' && st[0] != '[' {
			out["status"] = string(st)
		}
	}
	return out, true
}

var scanWants = [][]string{
	{"id", "time", "sector", "org_code", "api", "tran_id", "subject", "rsp_code", "status"},
	{"id", "time"},
	{"subject"},
	{"rsp_code"},
	{"org_code", "rsp_code"},
}

func checkScan(t *testing.T, line []byte) {
	t.Helper()
	ref, ok := scanReference(line)
	if !ok {
		archive.ScanForTest(line, scanWants[0]...) // must not panic
		return
	}
	for _, names := range scanWants {
		got, _, err := archive.ScanForTest(line, names...)
		if errors.Is(err, archive.ErrScanTime) {
			if _, terr := time.Parse(time.RFC3339Nano, ref["time"]); terr == nil {
				t.Fatalf("scanner refused time %q, time.Parse takes it", ref["time"])
			}
			continue
		}
		if err != nil {
			t.Fatalf("scan %q: %v on valid JSON", line, err)
		}
		want := map[string]string{}
		for _, n := range names {
			if v, ok := ref[n]; ok {
				want[n] = v
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("scan %q for %v = %q, want %q", line, names, got, want)
		}
	}
}

var scanSeeds = []string{
	`{}`,
	`{"id":"01JQ0000000000000000000000","time":"2026-03-15T09:30:00.123456Z","sector":"bank","response":{"status":200,"rsp_code":"00000"}}`,
	` { "response" : { "body" : {"rsp_code":"nested"} , "rsp_code" : "40101" , "status" : 404 } , "id" : "x\"y" } `,
	`{"subject":"mdtap:hash:v1:1:AAAA","org_code":"A\u0042C","api":"/v1/\\x","tran_id":"\\\\","x":[1,{"a":"}"},"]"],"time":"2026-03-15T18:30:00+09:00"}`,
	`{"id":5,"time":null,"sector":["bank"],"org_code":{"a":1},"response":"none"}`,
	`{"time":"2026-02-31T00:00:00.000000Z"}`,
	`{"id":"a","id2":true,"n":-1.5e3,"response":{"status":200}}`,
	`{"i\u0064":"escaped name","id":"plain"}`,
	`{"i\u0064":"escaped name","response":{"rsp\u005fcode":"1"}}`,
	`{"id":"01`,
	`{"response":{"rsp_code":"1"`,
	`[1,2]`,
	`{"a":"\\"}`,
}

func TestScanRecord(t *testing.T) {
	for _, s := range scanSeeds {
		checkScan(t, []byte(s))
	}
	start := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)
	for i, line := range archivetest.Records(20, start, 1500, []mdtap.Sector{"bank", "card"},
		[]string{"ORG1", ""}, []string{archivetest.Subject(1), ""}) {
		checkScan(t, line)
		_, ts, err := archive.ScanForTest(line, "id", "time")
		if want := start.Add(time.Duration(i) * time.Second).UnixMicro(); err != nil || ts != want {
			t.Fatalf("scan time = %d, %v; want %d", ts, err, want)
		}
	}
}

func TestParseRecordTime(t *testing.T) {
	for _, s := range []string{
		"2026-03-15T09:30:00.123456Z", "2026-03-15T18:30:00+09:00", "2024-02-29T23:59:59.999999Z",
		"2026-03-15T09:30:00Z", "2026-03-15T09:30:00.1Z",
	} {
		want, _ := time.Parse(time.RFC3339Nano, s)
		got, ok := archive.ParseRecordTimeForTest(s)
		if !ok || got != want.UnixMicro() {
			t.Errorf("parseRecordTime(%q) = %d %v, want %d", s, got, ok, want.UnixMicro())
		}
	}
	for _, s := range []string{"2026-02-30T09:30:00.000000Z", "2026-13-15T09:30:00.000000Z", "yesterday", "2026-03-15T24:00:00.000000Z"} {
		if got, ok := archive.ParseRecordTimeForTest(s); ok {
			t.Errorf("parseRecordTime(%q) = %d, want a refusal", s, got)
		}
	}
}

// FuzzScanRecord: on any input the query's record scanner never panics, and
// on valid JSON it finds exactly what a full decoder finds.
func FuzzScanRecord(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add(archivetest.Record(archivetest.Spec{Time: time.Unix(1773566400, 0), Org: "X", Subject: archivetest.Subject(7), Size: 600}, 1))
	f.Fuzz(func(t *testing.T, line []byte) {
		checkScan(t, line)
	})
}

func BenchmarkScanRecord(b *testing.B) {
	line := archivetest.Record(archivetest.Spec{Time: time.Unix(1773566400, 0), Org: "X", Subject: archivetest.Subject(7), Size: 1500}, 1)
	for _, names := range [][]string{{"id", "time"}, {"id", "time", "subject"}, {"id", "time", "rsp_code"}} {
		b.Run(names[len(names)-1], func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, _, err := archive.ScanForTest(line, names...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
