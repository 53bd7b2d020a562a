//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/leakcheck"
	"github.com/mdtap/mdtap/internal/s3test"
)

const operatorGuide = "../../docs/operator.md"

// guideScript is the runnable part of a guide section: the sh blocks between
// the guide-test:begin and guide-test:end markers, in order, and the blocks a
// guide-test:skip marker set aside.
type guideScript struct {
	run, skipped []string
}

// readGuideScript extracts the sh blocks of the marked section of a Markdown
// file. A block right after a "<!-- guide-test:skip" line is set aside.
func readGuideScript(t *testing.T, path string) guideScript {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		gs                        guideScript
		inSection, inBlock, skip  bool
		began, ended, skipPending bool
		block                     strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inBlock && line == "```":
			inBlock = false
			if skip {
				gs.skipped = append(gs.skipped, block.String())
			} else {
				gs.run = append(gs.run, block.String())
			}
		case inBlock:
			block.WriteString(line + "\n")
		case strings.HasPrefix(line, "<!-- guide-test:begin"):
			inSection, began = true, true
		case strings.HasPrefix(line, "<!-- guide-test:end"):
			inSection, ended = false, true
		case inSection && strings.HasPrefix(line, "<!-- guide-test:skip"):
			skipPending = true
		case inSection && line == "```sh":
			inBlock, skip, skipPending = true, skipPending, false
			block.Reset()
		}
	}
	if !began || !ended || inBlock || len(gs.run) == 0 {
		t.Fatalf("%s: want a guide-test:begin … guide-test:end section with sh blocks (began %v, ended %v, open block %v, %d blocks)",
			path, began, ended, inBlock, len(gs.run))
	}
	return gs
}

// requiredVersion returns the version that go.mod file path requires of module.
func requiredVersion(t *testing.T, path, module string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s requires no %s", path, module)
	}
	return string(m[1])
}

// TestOperatorGuideLocalTrial is the issue's acceptance "a new reader can
// follow the operator guide's local section end to end": it runs the sh
// blocks of docs/operator.md's local trial, in one bash, with free ports
// instead of the guide's defaults, and checks what the reader is told to
// expect. The guide's install block is not run; the test puts the same
// versions on PATH instead (and checks that they are the same): mdtap is this
// test binary (TestMain runs the CLI), nats-server is built from the main
// module — so its version is go.mod's by construction, and its server package
// is already compiled for the embedded test servers — and versitygw comes from
// tools/go.mod through internal/toolbin, like every S3 test's.
func TestOperatorGuideLocalTrial(t *testing.T) {
	gs := readGuideScript(t, operatorGuide)

	// The versions the guide installs are the ones the tests use.
	install := strings.Join(gs.skipped, "\n")
	for _, want := range []string{
		"github.com/nats-io/nats-server/v2@" + requiredVersion(t, "../../go.mod", "github.com/nats-io/nats-server/v2"),
		"github.com/versity/versitygw/cmd/versitygw@" + requiredVersion(t, "../../tools/go.mod", "github.com/versity/versitygw"),
		"go build -o \"$TRIAL/bin/mdtap\" ./cmd/mdtap",
	} {
		if !strings.Contains(install, want) {
			t.Errorf("the guide's install block lacks %q:\n%s", want, install)
		}
	}

	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\n%s=1 exec '%s' \"$@\"\n", testMainEnv, self)
	if err := os.WriteFile(filepath.Join(bin, "mdtap"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server from the main module: %v\n%s", err, out)
	}
	if err := os.Symlink(s3test.Binary(t), filepath.Join(bin, "versitygw")); err != nil {
		t.Fatal(err)
	}

	trial := t.TempDir()
	addrs, err := freeAddrs(6)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"TRIAL=" + trial, "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "USER=guide-test"}
	for i, name := range []string{"NATS_PORT", "S3_PORT", "SIM_PORT", "PROXY_PORT", "PROXY_ADMIN", "ARCHIVE_ADMIN"} {
		_, port, _ := net.SplitHostPort(addrs[i])
		env = append(env, name+"="+port)
	}
	for _, kv := range os.Environ() {
		// The guide sets the S3 credentials itself; the rest of the caller's
		// environment (HOME, GOCACHE, …) passes through.
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "MDTAP_") && !strings.HasPrefix(kv, "PATH=") &&
			!strings.HasPrefix(kv, "USER=") && !strings.HasPrefix(kv, "TRIAL=") {
			env = append(env, kv)
		}
	}

	script := filepath.Join(t.TempDir(), "trial.sh")
	if err := os.WriteFile(script, []byte("set -eu\n"+strings.Join(gs.run, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = trial
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so the guide's background servers die with it,
	// whether the script ends, fails or times out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	runErr := cmd.Wait()
	output := out.String()
	if runErr != nil {
		t.Fatalf("the guide's local trial failed after %s: %v\n%s\n%s", time.Since(start).Round(time.Millisecond), runErr, output, trialLogs(trial, 3000))
	}
	t.Logf("the guide's local trial ran in %s", time.Since(start).Round(time.Millisecond))

	defer func() {
		if t.Failed() {
			t.Logf("script output:\n%s", output)
		}
	}()

	// Under -race the mdtap children are race-instrumented too; their reports
	// go to the servers' logs.
	if logs := trialLogs(trial, 1<<30); strings.Contains(logs, "WARNING: DATA RACE") {
		t.Errorf("a data race in an mdtap server:\n%s", logs)
	}

	// Section 5: both servers said they were ready.
	if n := len(regexp.MustCompile(`(?m)^ready$`).FindAllString(output, -1)); n != 2 {
		t.Errorf("%d readiness answers, want the sidecar's and the archiver's", n)
	}

	// Section 6: what the client got is the provider's answer, in clear.
	var accounts struct {
		AccountList []trialAccount `json:"account_list"`
	}
	readJSON(t, filepath.Join(trial, "accounts.json"), &accounts)
	if len(accounts.AccountList) == 0 || accounts.AccountList[0].AccountNum == "" || accounts.AccountList[0].ProdName == "" {
		t.Fatalf("accounts.json holds no account: %+v", accounts)
	}
	acct, prod := accounts.AccountList[0].AccountNum, accounts.AccountList[0].ProdName

	// Section 7: the table lists the three exchanges; the archived record is protected.
	for _, api := range []string{"/oauth/2.0/authorize", "/oauth/2.0/token", "/v1/bank/accounts"} {
		if !strings.Contains(output, api) {
			t.Errorf("the audit table lacks %s", api)
		}
	}
	protected := readRecords(t, filepath.Join(trial, "protected.jsonl"))
	if len(protected) != 1 || protected[0].TranID != "TESTMD0001M00000000000001" {
		t.Fatalf("the query by tran id gave %d records, want 1 with the guide's tran id", len(protected))
	}
	if !strings.Contains(string(protected[0].Response.Body), `"account_num":"mdtap:tok:v1:`) {
		t.Errorf("the archived account number is not a token: %s", protected[0].Response.Body)
	}
	if auth := protected[0].Request.Headers["authorization"]; len(auth) != 1 || !strings.HasPrefix(auth[0], "mdtap:hash:v1:") {
		t.Errorf("the archived Authorization header is %q, want a hash", auth)
	}

	// Section 8: the rotation reached the running sidecar, and the destroyed key shredded its values only.
	m := regexp.MustCompile(`aead: (\d+) -> (\d+)`).FindStringSubmatch(output)
	if m == nil {
		t.Fatalf("the output lacks the rotation line")
	}
	oldID, newID := m[1], m[2]
	// Section 7 decrypted the customer's one accounts call; section 8 asked
	// again after a rotation and a second call, then after the old key's destruction.
	customer := readRecords(t, filepath.Join(trial, "customer.jsonl"))
	shredded := readRecords(t, filepath.Join(trial, "shredded.jsonl"))
	if len(customer) != 1 || len(shredded) != 2 {
		t.Fatalf("the customer queries gave %d and %d records, want 1 and 2", len(customer), len(shredded))
	}
	wantTran := []string{"TESTMD0001M00000000000001", "TESTMD0001M00000000000002"}
	wantProd := []string{"mdtap:shred:v1:enc:" + oldID, prod}
	for i, r := range append(customer, shredded...) {
		j := max(i-1, 0) // customer[0] is the first call, shredded[0] and [1] the two
		if r.TranID != wantTran[j] || r.Subject == "" {
			t.Errorf("customer record %d: tran id %q subject %q, want %s and a blind index", i, r.TranID, r.Subject, wantTran[j])
		}
		if got := firstAccount(t, r).AccountNum; got != acct {
			t.Errorf("customer record %d: account_num %q, want it decrypted", i, got)
		}
	}
	if got := firstAccount(t, customer[0]).ProdName; got != prod {
		t.Errorf("customer.jsonl: prod_name %q, want it decrypted", got)
	}
	for i, r := range shredded {
		if got := firstAccount(t, r).ProdName; got != wantProd[i] {
			t.Errorf("shredded.jsonl record %d: prod_name %q, want %q", i, got, wantProd[i])
		}
	}
	if shredded[0].Keys == nil || shredded[1].Keys == nil {
		t.Fatal("a protected record without its key ids")
	}
	if got := fmt.Sprint(shredded[0].Keys.AEAD, " ", shredded[1].Keys.AEAD); got != oldID+" "+newID {
		t.Errorf("aead key ids before and after the rotation: %s, want %s %s", got, oldID, newID)
	}

	// Section 9: the access log names the decrypting actor, and the archive verifies.
	if !regexp.MustCompile(`(?m)start\s+trial\.operator\s+true`).MatchString(output) {
		t.Errorf("the access log table lacks the decrypting queries of trial.operator")
	}
	if !regexp.MustCompile(`(?m)^verified: .*no problems$`).MatchString(output) {
		t.Errorf("audit verify did not report a verified archive")
	}

	// Nothing the servers keep holds the customer's values or id in clear.
	scan := leakcheck.New([]string{acct, prod, "customer-0001"})
	for _, dir := range []string{"s3", "nats", "spool"} {
		files, found, err := scan.ScanDir(filepath.Join(trial, dir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if dir != "spool" && files == 0 {
			t.Errorf("no files under %s", dir)
		}
		for _, f := range found {
			t.Errorf("plaintext in %s: %+v", dir, f)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readRecords(t *testing.T, path string) []mdtap.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []mdtap.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r mdtap.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		recs = append(recs, r)
	}
	return recs
}

type trialAccount struct {
	AccountNum string `json:"account_num"`
	ProdName   string `json:"prod_name"`
}

// firstAccount returns the first account of an accounts response record.
func firstAccount(t *testing.T, r mdtap.Record) trialAccount {
	t.Helper()
	var body struct {
		AccountList []trialAccount `json:"account_list"`
	}
	if r.Response == nil || json.Unmarshal(r.Response.Body, &body) != nil || len(body.AccountList) == 0 {
		t.Fatalf("record %s has no account list", r.ID)
	}
	return body.AccountList[0]
}

// trialLogs returns the last n bytes of each server log.
func trialLogs(dir string, n int) string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, p := range logs {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(p), tail(string(data), n))
	}
	return b.String()
}
