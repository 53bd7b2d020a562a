package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
)

// mdtapRun runs one command line through run, as the binary would.
func mdtapRun(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(string) (string, bool) { return "", false })
	return out.String(), errb.String(), code
}

const rawRecordLine = `{"v":1,"id":"01JQ0000000000000000000000","time":"2026-03-15T09:30:00.000000Z","duration_ms":3,"sector":"bank","api":"/v1/bank/accounts","transmission":"scheduled",` +
	`"request":{"method":"GET","host":"h","path":"/v1/bank/accounts","query":{"org_code":["TESTBK0001"],"client_secret":["CLIENT-SECRET-1"]},"headers":{"authorization":["Bearer TOKEN-SECRET-1"]},"body_bytes":0,"captured_bytes":0},` +
	`"response":{"status":200,"body_kind":"json","body":{"rsp_code":"00000","account_list":[{"account_num":"99900012345678","prod_name":"테스트 통장","new_field":"x"}]},"body_bytes":100,"captured_bytes":100,"rsp_code":"00000"}}`

func TestRedactRevealCommands(t *testing.T) {
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	if _, errOut, code := mdtapRun(t, "", "keys", "init", "--dir", keyDir); code != 0 {
		t.Fatalf("keys init: %d %s", code, errOut)
	}
	protected, errOut, code := mdtapRun(t, rawRecordLine+"\n", "redact", "--keys", keyDir)
	if code != 0 {
		t.Fatalf("redact: %d %s", code, errOut)
	}
	for _, secret := range []string{"CLIENT-SECRET-1", "TOKEN-SECRET-1", "99900012345678", "테스트 통장"} {
		if strings.Contains(protected, secret) {
			t.Errorf("redact output contains %s", secret)
		}
	}
	var rec mdtap.Record
	if err := json.Unmarshal([]byte(protected), &rec); err != nil || rec.Validate() != nil || !strings.HasPrefix(rec.Policy, "builtin@") {
		t.Fatalf("redact output is not a protected record: %v", err)
	}

	unknown, _, code := mdtapRun(t, protected, "policy", "unknown")
	if code != 0 || unknown != "1\tresponse.body.account_list[*].new_field\n" {
		t.Fatalf("policy unknown = %d %q", code, unknown)
	}

	_, errOut, code = mdtapRun(t, protected, "reveal", "--keys", keyDir, "--actor", "kim")
	if code != exitUsage || !strings.Contains(errOut, "--reason is required") || !strings.Contains(errOut, "hint:") {
		t.Fatalf("reveal without --reason: %d %q", code, errOut)
	}
	logPath := filepath.Join(dir, "access.jsonl")
	revealed, errOut, code := mdtapRun(t, protected, "reveal", "--keys", keyDir, "--actor", "kim", "--reason", "FSS audit request 42", "--access-log", logPath)
	if code != 0 {
		t.Fatalf("reveal: %d %s", code, errOut)
	}
	for _, clear := range []string{"99900012345678", "테스트 통장"} {
		if !strings.Contains(revealed, clear) {
			t.Errorf("reveal did not restore %s", clear)
		}
	}
	if strings.Contains(revealed, "CLIENT-SECRET-1") || strings.Contains(revealed, "TOKEN-SECRET-1") {
		t.Error("reveal restored a dropped or hashed secret")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := archive.VerifyAccessLog(bytes.NewReader(log))
	if err != nil || n != 2 {
		t.Fatalf("access log: %d entries, %v", n, err)
	}
	if strings.Contains(string(log), "99900012345678") {
		t.Fatal("access log holds a revealed value")
	}
	var done mdtap.AccessEntry
	json.Unmarshal(bytes.Split(bytes.TrimSpace(log), []byte("\n"))[1], &done)
	if done.Event != mdtap.AccessComplete || done.Actor != "kim" || done.Records != 1 || done.Revealed != 3 || len(done.KeyIDs) != 2 {
		t.Fatalf("completion entry %+v", done)
	}

	_, errOut, code = mdtapRun(t, "not json\n", "redact", "--keys", keyDir)
	if code != exitFailure || !strings.Contains(errOut, "input line 1") {
		t.Fatalf("redact of bad input: %d %q", code, errOut)
	}
}

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("version: 1\nname: acme\nextends: builtin\nrules:\n  - {path: \"**.new_field\", action: keep}\n"), 0o644)
	out, errOut, code := mdtapRun(t, "", "policy", "check", good)
	if code != 0 || !strings.Contains(out, "ok (policy acme@") {
		t.Fatalf("policy check good: %d %q %q", code, out, errOut)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - {path: \"**.x\", action: shred}\n"), 0o644)
	_, errOut, code = mdtapRun(t, "", "policy", "check", bad)
	if code != exitFailure || !strings.Contains(errOut, `rule 1 (path **.x): action "shred"`) {
		t.Fatalf("policy check bad: %d %q", code, errOut)
	}
	out, _, code = mdtapRun(t, "", "policy", "show")
	if code != 0 || !strings.Contains(out, "name: builtin") || !strings.Contains(out, "account_num") {
		t.Fatalf("policy show: %d", code)
	}
	out, _, code = mdtapRun(t, "", "policy", "show", "--policy", "strict")
	if code != 0 || !strings.Contains(out, "extends: builtin") {
		t.Fatalf("policy show strict: %d", code)
	}
}
