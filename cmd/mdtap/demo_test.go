package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// `mdtap demo` as CI runs it: every exchange archived, every sector seen,
// the chain verified, no sensitive value in clear anywhere under the data dir.
func TestDemo(t *testing.T) {
	out, errOut, code := mdtapRun(t, "", "demo", "--json", "--requests", "200")
	if code != 0 {
		t.Fatalf("mdtap demo exited %d:\n%s\n%s", code, out, errOut)
	}
	var rep demoReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Leaks != 0 || rep.Records != 200 || rep.Exchanges != 200 || !rep.ChainOK || rep.Checked < 100 {
		t.Fatalf("report %+v", rep)
	}
	for _, s := range []string{"auth", "ca", "mgmts", "bank", "card", "invest", "insu", "efin", "telecom"} {
		if rep.Sectors[s] == 0 {
			t.Errorf("no %s exchange in the demo", s)
		}
	}
}

// The self-check is not vacuous: under a policy that keeps everything in
// clear, it finds the simulator's values and the demo fails.
func TestDemoLeakCheckFindsLeaks(t *testing.T) {
	dir := t.TempDir()
	leaky := filepath.Join(dir, "keep-all.yaml")
	os.WriteFile(leaky, []byte("version: 1\nrules:\n  - {path: \"**.*\", action: keep}\n"), 0o644)
	out, _, code := mdtapRun(t, "", "demo", "--json", "--requests", "60", "--data", filepath.Join(dir, "data"), "--policy", leaky)
	var rep demoReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if code != exitFailure || rep.Leaks == 0 {
		t.Fatalf("exit %d, leaks %d: a keep-everything policy must fail the demo", code, rep.Leaks)
	}
}
