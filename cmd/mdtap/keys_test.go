package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runMdtap runs one command line the way run does, capturing the streams.
func runMdtap(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{
		stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
	root := newRoot(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(t.Context())
	code = exitOK
	if err != nil {
		errb.WriteString("mdtap: error: " + err.Error() + "\n")
		code = exitFailure
		var ue *usageError
		if errors.As(err, &ue) {
			errb.WriteString("hint: run '" + cmd.CommandPath() + " --help'\n")
			code = exitUsage
		}
	}
	return out.String(), errb.String(), code
}

var keyIDLine = regexp.MustCompile(`^[1-9][0-9]*\n$`)

type listedKey struct {
	Purpose string  `json:"purpose"`
	KeyID   uint32  `json:"key_id"`
	Status  string  `json:"status"`
	Created *string `json:"created"`
}

func listJSON(t *testing.T, dir string) []listedKey {
	t.Helper()
	out, errOut, code := runMdtap(t, nil, "keys", "list", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("keys list --json: exit %d: %s", code, errOut)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("keys list --json: not one JSON array: %v\n%s", err, out)
	}
	for _, obj := range raw {
		var fields []string
		for k := range obj {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		if want := []string{"created", "key_id", "purpose", "status"}; !slices.Equal(fields, want) {
			t.Errorf("keys list --json: object fields %v, want %v", fields, want)
		}
	}
	var keys []listedKey
	json.Unmarshal([]byte(out), &keys)
	for _, k := range keys {
		if k.Created == nil {
			t.Errorf("key %d: created is null", k.KeyID)
			continue
		}
		if _, err := time.Parse(time.RFC3339, *k.Created); err != nil {
			t.Errorf("key %d: created %q is not RFC 3339: %v", k.KeyID, *k.Created, err)
		}
	}
	return keys
}

func statusIn(keys []listedKey, id uint32) string {
	for _, k := range keys {
		if k.KeyID == id {
			return k.Purpose + " " + k.Status
		}
	}
	return "absent"
}

func TestKeysCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")

	_, errOut, code := runMdtap(t, nil, "keys", "init", "--dir", dir)
	if code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "local KEK is for development") {
		t.Errorf("keys init: stderr lacks the development-KEK note: %q", errOut)
	}
	initial := listJSON(t, dir)
	if len(initial) != 3 {
		t.Fatalf("after init: %d keys, want 3", len(initial))
	}
	primary := map[string]uint32{}
	for _, k := range initial {
		primary[k.Purpose] = k.KeyID
	}

	// add prints the new id alone; the key is enabled, not primary.
	out, errOut, code := runMdtap(t, nil, "keys", "add", "--dir", dir, "--purpose", "daead")
	if code != 0 || !keyIDLine.MatchString(out) {
		t.Fatalf("keys add: exit %d, stdout %q, stderr %q; want a key id alone", code, out, errOut)
	}
	added, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 32)
	if got := statusIn(listJSON(t, dir), uint32(added)); got != "daead enabled" {
		t.Errorf("after add: key %d is %s, want daead enabled", added, got)
	}
	if _, errOut, code := runMdtap(t, nil, "keys", "promote", "--dir", dir, "--key-id", out[:len(out)-1]); code != 0 {
		t.Fatalf("keys promote: exit %d: %s", code, errOut)
	}
	after := listJSON(t, dir)
	if got := statusIn(after, uint32(added)); got != "daead primary" {
		t.Errorf("after promote: key %d is %s, want daead primary", added, got)
	}
	if got := statusIn(after, primary["daead"]); got != "daead enabled" {
		t.Errorf("after promote: old key is %s, want daead enabled", got)
	}

	// rotate defaults to aead; all rotates the three, one id per line.
	out, _, code = runMdtap(t, nil, "keys", "rotate", "--dir", dir)
	if code != 0 || !keyIDLine.MatchString(out) {
		t.Fatalf("keys rotate: exit %d, stdout %q", code, out)
	}
	rotated, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 32)
	if got := statusIn(listJSON(t, dir), uint32(rotated)); got != "aead primary" {
		t.Errorf("after rotate: key %d is %s, want aead primary", rotated, got)
	}
	out, _, code = runMdtap(t, nil, "keys", "rotate", "--dir", dir, "--purpose", "all")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("keys rotate --purpose all: exit %d, stdout %q; want three ids", code, out)
	}
	all := listJSON(t, dir)
	for i, p := range []string{"aead", "daead", "prf"} {
		id, _ := strconv.ParseUint(lines[i], 10, 32)
		if got := statusIn(all, uint32(id)); got != p+" primary" {
			t.Errorf("rotate all line %d: key %d is %s, want %s primary", i+1, id, got, p)
		}
	}

	// disable, enable, destroy the first aead key.
	old := strconv.FormatUint(uint64(primary["aead"]), 10)
	for _, step := range []struct {
		args   []string
		status string
	}{
		{[]string{"disable"}, "aead disabled"},
		{[]string{"enable"}, "aead enabled"},
		{[]string{"destroy"}, "aead destroyed"},
	} {
		args := append([]string{"keys"}, step.args...)
		_, errOut, code := runMdtap(t, nil, append(args, "--dir", dir, "--key-id", old)...)
		if code != 0 {
			t.Fatalf("keys %s: exit %d: %s", step.args[0], code, errOut)
		}
		if got := statusIn(listJSON(t, dir), primary["aead"]); got != step.status {
			t.Errorf("after %s: key is %s, want %s", step.args[0], got, step.status)
		}
	}

	// The text list shows the same keys, with the tombstone.
	out, _, code = runMdtap(t, nil, "keys", "list", "--dir", dir)
	if code != 0 || !strings.HasPrefix(out, "PURPOSE") || !strings.Contains(out, old) ||
		!regexp.MustCompile(`(?m)^aead +`+old+` +destroyed +\S+Z +destroyed \S+Z`).MatchString(out) {
		t.Errorf("keys list: exit %d, stdout:\n%s", code, out)
	}

	// Flags from the environment, per subcommand.
	out, errOut, code = runMdtap(t, map[string]string{"MDTAP_KEYS_LIST_DIR": dir, "MDTAP_KEYS_LIST_JSON": "true"}, "keys", "list")
	if code != 0 || !strings.HasPrefix(out, "[") {
		t.Errorf("keys list from env: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// And from the configuration file, one section per subcommand.
	cfg := filepath.Join(t.TempDir(), "mdtap.yaml")
	if err := os.WriteFile(cfg, []byte("keys:\n  list:\n    dir: "+dir+"\n    json: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runMdtap(t, nil, "--config", cfg, "keys", "list")
	if code != 0 || !strings.HasPrefix(out, "[") {
		t.Errorf("keys list from the config file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestKeysErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, errOut, code := runMdtap(t, nil, "keys", "init", "--dir", dir); code != 0 {
		t.Fatalf("keys init: %s", errOut)
	}
	primary := map[string]string{}
	for _, k := range listJSON(t, dir) {
		primary[k.Purpose] = strconv.FormatUint(uint64(k.KeyID), 10)
	}
	missing := filepath.Join(t.TempDir(), "none")

	cases := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"init again", []string{"keys", "init", "--dir", dir}, exitFailure, "refusing to overwrite"},
		{"init bad kek", []string{"keys", "init", "--dir", missing, "--kek", "gcp-kms://x"}, exitFailure, "use local://PATH or aws-kms://"},
		{"init no dir", []string{"keys", "init"}, exitUsage, "--dir is required"},
		{"add no purpose", []string{"keys", "add", "--dir", dir}, exitUsage, "--purpose is required"},
		{"add bad purpose", []string{"keys", "add", "--dir", dir, "--purpose", "mac"}, exitUsage, `unknown key purpose "mac"`},
		{"rotate bad purpose", []string{"keys", "rotate", "--dir", dir, "--purpose", "mac"}, exitUsage, "or all"},
		{"promote no key id", []string{"keys", "promote", "--dir", dir}, exitUsage, "--key-id is required"},
		{"promote bad key id", []string{"keys", "promote", "--dir", dir, "--key-id", "abc"}, exitUsage, "key-id"},
		{"promote unknown key", []string{"keys", "promote", "--dir", dir, "--key-id", "7"}, exitFailure, "no such key"},
		{"disable primary", []string{"keys", "disable", "--dir", dir, "--key-id", primary["aead"]}, exitFailure, "key is primary"},
		{"destroy primary", []string{"keys", "destroy", "--dir", dir, "--key-id", primary["prf"]}, exitFailure, "key is primary"},
		{"list missing dir", []string{"keys", "list", "--dir", missing}, exitFailure, "run 'mdtap keys init"},
		{"positional argument", []string{"keys", "list", "--dir", dir, "extra"}, exitUsage, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runMdtap(t, nil, c.args...)
			if code != c.code || !strings.Contains(errOut, c.wantErr) {
				t.Errorf("mdtap %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, errOut, c.code, c.wantErr)
			}
			if out != "" {
				t.Errorf("mdtap %s: stdout %q, want nothing", strings.Join(c.args, " "), out)
			}
			if c.code == exitUsage && !strings.Contains(errOut, "hint: run 'mdtap keys") {
				t.Errorf("mdtap %s: no hint line in %q", strings.Join(c.args, " "), errOut)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("a failed init created %s", missing)
	}
}

func TestKeysHelp(t *testing.T) {
	out, _, code := runMdtap(t, nil, "keys", "rotate", "--help")
	if code != 0 {
		t.Fatalf("keys rotate --help: exit %d", code)
	}
	for _, want := range []string{"mdtap keys add", "mdtap keys promote", "every token is different", "blind index", "[$MDTAP_KEYS_ROTATE_DIR]"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys rotate --help lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = runMdtap(t, nil, "keys", "--help")
	for _, sub := range []string{"init", "add", "promote", "rotate", "list", "disable", "enable", "destroy"} {
		if !regexp.MustCompile(`(?m)^  ` + sub + ` `).MatchString(out) {
			t.Errorf("keys --help does not list %s:\n%s", sub, out)
		}
	}
}
