package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
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

// --- keys from NATS, per-subject keys, retire: on a real embedded NATS ---

// keysetMaterial is the plaintext key bytes of a key directory's keysets,
// unwrapped with its local KEK (test only: nothing else ever reads them).
func keysetMaterial(t *testing.T, dir string) [][]byte {
	t.Helper()
	kekB, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	if err != nil {
		t.Fatal(err)
	}
	kh, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(kekB)))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range []string{"aead", "daead", "prf"} {
		b, err := os.ReadFile(filepath.Join(dir, p+".keyset.json"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(b)), kek, []byte("mdtap:keyset:v1:"+p))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range insecurecleartextkeyset.KeysetMaterial(h).GetKey() {
			out = append(out, k.GetKeyData().GetValue())
		}
	}
	if len(out) < 3 {
		t.Fatalf("%d keys in %s, want 3 or more", len(out), dir)
	}
	return out
}

// streamBytes is every message (data and headers) the bucket's stream holds,
// and every file of the server's store: all the bytes NATS keeps.
func streamBytes(t *testing.T, ns *natstest.Server, bucket string) []byte {
	t.Helper()
	ctx := t.Context()
	st, err := ns.JetStream(t).Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.Data...)
		for k, vs := range m.Header {
			all = append(all, k...)
			all = append(all, strings.Join(vs, "")...)
		}
	}
	filepath.WalkDir(ns.StoreDir(), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			all = append(all, b...)
		}
		return nil
	})
	return all
}

func containsAny(hay []byte, needles [][]byte) bool {
	for _, n := range needles {
		for _, enc := range [][]byte{n, []byte(base64.StdEncoding.EncodeToString(n)), []byte(base64.RawURLEncoding.EncodeToString(n))} {
			if bytes.Contains(hay, enc[:16]) {
				return true
			}
		}
	}
	return false
}

func initKeys(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, errOut, code := runMdtap(t, nil, "keys", "init", "--dir", dir); code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, errOut)
	}
	return dir
}

// keys publish → a sidecar on another node loads from the bucket and
// follows a rotation within moments; the bucket never holds plaintext keys.
func TestKeysPublishAndWatchNATS(t *testing.T) {
	ctx := t.Context()
	ns := natstest.Start(t, natstest.WithSyncAlways())
	dir := initKeys(t)
	out, errOut, code := runMdtap(t, nil, "keys", "publish", "--dir", dir, "--nats", ns.URL())
	if code != 0 || len(strings.Fields(out)) != 6 || !strings.Contains(errOut, "6 of 6 files changed") {
		t.Fatalf("keys publish: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, _, _ := runMdtap(t, nil, "keys", "publish", "--dir", dir, "--nats", ns.URL()); out != "" {
		t.Errorf("publish of an unchanged directory wrote %q", out)
	}

	// Another node: no key directory, only the bucket and the KEK.
	var nf natsFlags
	nf.register(pflag.NewFlagSet("x", pflag.ContinueOnError))
	kek := "local://" + filepath.Join(dir, "kek.json")
	node, err := loadKeys(ctx, zerolog.New(zerolog.NewTestWriter(t)), ns.URL()+"/"+stream.DefaultKeysBucket, kek, &nf)
	if err != nil {
		t.Fatalf("loadKeys from NATS: %v", err)
	}
	defer node.Close()
	if node.Dir() != "" || !strings.HasSuffix(node.Source(), "/mdtap_keys") {
		t.Errorf("node source %q, dir %q", node.Source(), node.Dir())
	}
	local, err := keys.Load(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := local.Encrypt([]byte("from the directory"), []byte("ad"))
	if pt, err := node.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "from the directory" {
		t.Fatalf("node Decrypt = %q, %v", pt, err)
	}
	oldCT, _ := node.Encrypt([]byte("old"), nil)

	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		node.Watch(wctx, time.Hour, zerolog.New(zerolog.NewTestWriter(t))) // no poll: the KV watch must do it
	}()
	defer func() { cancel(); <-done }()

	out, _, code = runMdtap(t, nil, "keys", "rotate", "--dir", dir)
	if code != 0 {
		t.Fatal("keys rotate failed")
	}
	id, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 32)
	if _, errOut, code := runMdtap(t, nil, "keys", "publish", "--dir", dir, "--nats", ns.URL()); code != 0 {
		t.Fatalf("second publish: %s", errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for node.Primary().AEAD != uint32(id) {
		if time.Now().After(deadline) {
			t.Fatalf("the watching node did not load the new primary %d within 10s", id)
		}
		time.Sleep(10 * time.Millisecond) // poll pacing
	}
	if pt, err := node.Decrypt(oldCT, nil); err != nil || string(pt) != "old" {
		t.Errorf("old value after the reload = %q, %v", pt, err)
	}
	held := streamBytes(t, ns, stream.DefaultKeysBucket)
	if containsAny(held, keysetMaterial(t, dir)) {
		t.Error("NATS holds plaintext key material")
	}
	if enc, _ := os.ReadFile(filepath.Join(dir, "aead.keyset.json")); !bytes.Contains(held, enc) {
		t.Error("the scan does not find the published (encrypted) keyset: it proves nothing")
	}

	// Usage errors.
	for _, args := range [][]string{
		{"keys", "publish", "--nats", ns.URL()},
		{"keys", "publish", "--dir", dir, "--nats", ""},
	} {
		if _, _, code := runMdtap(t, nil, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if _, err := loadKeys(ctx, zerolog.Nop(), ns.URL()+"/no_such_bucket", kek, &nf); err == nil || !strings.Contains(err.Error(), "mdtap keys publish") {
		t.Errorf("loadKeys from a missing bucket: got %v, want a hint to publish", err)
	}
	if _, err := loadKeys(ctx, zerolog.Nop(), dir, kek, &nf); err == nil {
		t.Error("loadKeys of a directory with --kek: no error")
	}
}

func TestKeysNATSSpec(t *testing.T) {
	for _, c := range []struct {
		spec, url, bucket string
		isNATS, bad       bool
	}{
		{"/var/lib/mdtap/keys", "", "", false, false},
		{"nats://h:4222/b", "nats://h:4222", "b", true, false},
		{"nats://h:4222", "nats://h:4222", "", true, false},
		{"tls://u:p@h:4222/b/", "tls://u:p@h:4222", "b", true, false},
		{"nats://h:4222/a/b", "", "", true, true},
		{"nats:///b", "", "", true, true},
	} {
		url, bucket, ok, err := keysNATS(c.spec)
		if ok != c.isNATS || (err != nil) != c.bad || (!c.bad && (url != c.url || bucket != c.bucket)) {
			t.Errorf("keysNATS(%q) = %q, %q, %v, %v", c.spec, url, bucket, ok, err)
		}
	}
}

// subjectFixture is a sidecar protecting records with per-subject keys in
// a real bucket, and a reader revealing them.
type subjectFixture struct {
	t      *testing.T
	ns     *natstest.Server
	dir    string
	main   *keys.Set
	proxy  *keys.SubjectKeys
	redact *redact.Redactor
	n      int
}

func newSubjectFixture(t *testing.T) *subjectFixture {
	ns := natstest.Start(t, natstest.WithSyncAlways())
	dir := initKeys(t)
	main, err := keys.Load(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := openSubjectKeys(t.Context(), ns.Conn(t), "", main, true, keys.SubjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := redact.Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	r := redact.New(p, main)
	r.Subjects = subjectSealers{sk}
	f := &subjectFixture{t: t, ns: ns, dir: dir, main: main, proxy: sk, redact: r}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sk.Watch(wctx, zerolog.New(zerolog.NewTestWriter(t))) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

const subjectBody = `{"rsp_code":"00000","account_list":[{"account_num":"99900012345678","prod_name":"자유적금"}]}`

func (f *subjectFixture) protect(subject string) *mdtap.Record {
	f.t.Helper()
	f.n++
	raw := &mdtap.Record{
		V: 1, ID: fmt.Sprintf("01JQ%022d", f.n), Time: mdtap.Timestamp{Time: time.Now()}, Sector: mdtap.SectorBank,
		OrgCode: "TESTBK0001", API: "/v1/bank/accounts", Subject: subject, Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: "GET", Host: "h", Path: "/v1/bank/accounts"},
		Response: &mdtap.Response{Status: 200, RspCode: "00000", Headers: map[string][]string{"content-type": {"application/json"}},
			Payload: mdtap.Payload{Body: []byte(subjectBody), BodyBytes: int64(len(subjectBody)), CapturedBytes: int64(len(subjectBody))}},
	}
	rec, err := f.redact.Protect(raw)
	if err != nil {
		f.t.Fatalf("Protect: %v", err)
	}
	return rec
}

// reveal opens records as `mdtap reveal` / `mdtap audit --decrypt` will:
// a fresh reader, the bucket bound read-only.
func (f *subjectFixture) reveal(recs ...*mdtap.Record) (accts []string, st redact.RevealStats) {
	f.t.Helper()
	ctx := f.t.Context()
	set, err := keys.Load(ctx, f.dir, keys.PurposeAEAD, keys.PurposeDAEAD)
	if err != nil {
		f.t.Fatal(err)
	}
	sk, err := openSubjectKeys(ctx, f.ns.Conn(f.t), "", set, false, keys.SubjectOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	rv := &redact.Revealer{Keys: set, Subjects: subjectOpeners{sk}}
	for _, rec := range recs {
		out, s, err := rv.Reveal(ctx, rec)
		if err != nil {
			f.t.Fatalf("Reveal: %v", err)
		}
		accts = append(accts, accountNum(f.t, out))
		st.Revealed += s.Revealed
		st.Shredded += s.Shredded
		if out.Time != rec.Time || out.OrgCode != rec.OrgCode || out.API != rec.API || out.Response.RspCode != "00000" || out.Subject != rec.Subject {
			f.t.Errorf("reveal of %s changed its metadata", rec.ID)
		}
	}
	return accts, st
}

func accountNum(t *testing.T, rec *mdtap.Record) string {
	t.Helper()
	var b struct {
		List []struct {
			Acct string `json:"account_num"`
		} `json:"account_list"`
	}
	if err := json.Unmarshal(rec.Response.Body, &b); err != nil || len(b.List) != 1 {
		t.Fatalf("body %s: %v", rec.Response.Body, err)
	}
	return b.List[0].Acct
}

// The consent-withdrawal story on real NATS: per-customer tokens; keys
// forget shreds exactly one customer's values and leaves no revision of its
// keyset in NATS.
func TestKeysForgetNATS(t *testing.T) {
	ctx := t.Context()
	f := newSubjectFixture(t)
	a1, a2, b1, none := f.protect("customer-A"), f.protect("customer-A"), f.protect("customer-B"), f.protect("")
	if accountNum(t, a1) != accountNum(t, a2) {
		t.Error("one customer's equal account numbers have different tokens")
	}
	if accountNum(t, a1) == accountNum(t, b1) || accountNum(t, b1) == accountNum(t, none) {
		t.Error("different customers' equal account numbers have equal tokens")
	}
	want := "99900012345678"
	if accts, st := f.reveal(a1, a2, b1, none); slices.ContainsFunc(accts, func(s string) bool { return s != want }) || st.Shredded != 0 {
		t.Fatalf("reveal before forget: %v (%+v)", accts, st)
	}
	b, err := stream.BindBucket(ctx, f.ns.Conn(t), stream.DefaultSubjectsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keyA, _ := keys.SubjectStoreKey(a1.Subject)
	wrappedA, _, err := b.Get(ctx, keyA)
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Contains(streamBytes(t, f.ns, stream.DefaultSubjectsBucket), wrappedA[len(wrappedA)/2:]) {
		t.Fatal("the scan does not find A's keyset before forget: it would prove nothing after")
	}
	out, errOut, code := runMdtap(t, nil, "keys", "forget", "--subject", "customer-A", "--dir", f.dir, "--nats", f.ns.URL())
	if code != 0 || out != "destroyed 1 subject keysets\n" {
		t.Fatalf("keys forget: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	accts, st := f.reveal(a1, a2, b1, none)
	for i, acct := range accts[:2] {
		if !strings.HasPrefix(acct, "mdtap:shred:v1:tok:") {
			t.Errorf("A's record %d after forget reveals %q, want shredded", i, acct)
		}
	}
	if accts[2] != want || accts[3] != want {
		t.Errorf("B's and the untagged record after forget reveal %q, %q", accts[2], accts[3])
	}
	if st.Shredded != 4 { // account_num and prod_name of both A records
		t.Errorf("shredded values = %d, want 4", st.Shredded)
	}
	if bytes.Contains(streamBytes(t, f.ns, stream.DefaultSubjectsBucket), wrappedA[len(wrappedA)/2:]) {
		t.Error("NATS still holds a revision of A's keyset (stream messages or store files)")
	}
	// The sidecar dropped its cached copy: A's next record gets a new keyset.
	deadline := time.Now().Add(10 * time.Second)
	for accountNum(t, f.protect("customer-A")) == accountNum(t, a1) {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar kept using A's forgotten keyset")
		}
		time.Sleep(10 * time.Millisecond) // poll pacing
	}
	// Forgetting again finds nothing more than the new keyset; an unknown
	// subject, nothing.
	if out, _, _ := runMdtap(t, nil, "keys", "forget", "--subject", "customer-A", "--dir", f.dir, "--nats", f.ns.URL()); out != "destroyed 1 subject keysets\n" {
		t.Errorf("second forget: %q", out)
	}
	if out, _, code := runMdtapStdin(t, "customer-Z\n", "keys", "forget", "--subject", "-", "--dir", f.dir, "--nats", f.ns.URL()); code != 0 || out != "destroyed 0 subject keysets\n" {
		t.Errorf("forget of an unknown subject from stdin: exit %d, %q", code, out)
	}
	if _, _, code := runMdtap(t, nil, "keys", "forget", "--dir", f.dir, "--nats", f.ns.URL()); code != exitUsage {
		t.Errorf("forget without --subject: exit %d, want %d", code, exitUsage)
	}
}

// A subject tagged before and after a prf rotation has a keyset under each
// blind index; forget destroys both.
func TestKeysForgetAfterPRFRotation(t *testing.T) {
	ctx := t.Context()
	f := newSubjectFixture(t)
	before := f.protect("customer-A")
	if _, _, code := runMdtap(t, nil, "keys", "rotate", "--dir", f.dir, "--purpose", "prf"); code != 0 {
		t.Fatal("rotate prf failed")
	}
	if err := f.main.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after := f.protect("customer-A")
	other := f.protect("customer-B")
	if before.Subject == after.Subject {
		t.Fatal("the prf rotation did not change the blind index")
	}
	out, errOut, code := runMdtap(t, nil, "keys", "forget", "--subject", "customer-A", "--dir", f.dir, "--nats", f.ns.URL())
	if code != 0 || out != "destroyed 2 subject keysets\n" || !strings.Contains(errOut, "2 prf keys") {
		t.Fatalf("keys forget: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	accts, _ := f.reveal(before, after, other)
	if !strings.HasPrefix(accts[0], "mdtap:shred:") || !strings.HasPrefix(accts[1], "mdtap:shred:") || accts[2] != "99900012345678" {
		t.Errorf("after forget: %v; want A's two records shredded, B's intact", accts)
	}
}

// Two sidecars making one subject's keyset at once converge on one.
func TestSubjectKeysConcurrentFirstUseNATS(t *testing.T) {
	ctx := t.Context()
	ns := natstest.Start(t)
	dir := initKeys(t)
	var nodes []*keys.SubjectKeys
	for range 2 {
		main, err := keys.Load(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := openSubjectKeys(ctx, ns.Conn(t), "", main, true, keys.SubjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, sk)
	}
	main, _ := keys.Load(ctx, dir)
	const subjects, perNode = 10, 4
	for i := range subjects {
		bis, _ := redact.SubjectIndexes(main, fmt.Sprint("customer-", i))
		toks := make(chan string, 2*perNode)
		var wg sync.WaitGroup
		for _, n := range nodes {
			for range perNode {
				wg.Go(func() {
					s, err := n.Sealer(ctx, bis[0])
					if err != nil {
						t.Error(err)
						return
					}
					tok, _ := s.Tokenize([]byte("same"), nil)
					toks <- string(tok)
				})
			}
		}
		wg.Wait()
		close(toks)
		first := <-toks
		for tok := range toks {
			if tok != first {
				t.Errorf("subject %d: the sidecars use different keysets", i)
				break
			}
		}
	}
	b, _ := stream.BindBucket(ctx, ns.Conn(t), stream.DefaultSubjectsBucket)
	if ks, err := b.Keys(ctx, ""); err != nil || len(ks) != subjects {
		t.Errorf("bucket keys = %d, %v; want %d", len(ks), err, subjects)
	}
}

// keys retire: dry run, then destruction, re-wrapping subject keysets first.
func TestKeysRetireCommand(t *testing.T) {
	f := newSubjectFixture(t)
	rec := f.protect("customer-A")
	out, _, _ := runMdtap(t, nil, "keys", "list", "--dir", f.dir, "--json")
	var before []listedKey
	json.Unmarshal([]byte(out), &before)
	if _, _, code := runMdtap(t, nil, "keys", "rotate", "--dir", f.dir, "--purpose", "all"); code != 0 {
		t.Fatal("rotate failed")
	}
	// With a retention of a nanosecond every superseded key is past it.
	out, errOut, code := runMdtap(t, nil, "keys", "retire", "--dir", f.dir, "--older-than", "1ns", "--dry-run")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(errOut, "would destroy (dry run) 3 keys") {
		t.Fatalf("retire --dry-run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, k := range listJSON(t, f.dir) {
		if k.Status == "destroyed" {
			t.Fatalf("a dry run destroyed key %d", k.KeyID)
		}
	}
	out, errOut, code = runMdtap(t, nil, "keys", "retire", "--dir", f.dir, "--older-than", "1ns", "--purpose", "aead", "--nats", f.ns.URL())
	if code != 0 || !strings.Contains(errOut, "destroyed 1 keys") || !strings.Contains(errOut, "re-wrapped 1 and erased 0") {
		t.Fatalf("retire --purpose aead --nats: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, k := range before {
		if k.Purpose == "aead" && statusIn(listJSON(t, f.dir), k.KeyID) != "aead destroyed" {
			t.Errorf("the old aead key %d was not destroyed", k.KeyID)
		}
	}
	// The subject's keyset was re-wrapped: its values still reveal.
	if accts, st := f.reveal(rec); accts[0] != "99900012345678" || st.Shredded != 0 {
		t.Errorf("subject record after retiring its wrapping key: %v (%+v)", accts, st)
	}
	// Retiring the old prf key erases the subject keysets indexed under it.
	out, errOut, code = runMdtap(t, nil, "keys", "retire", "--dir", f.dir, "--older-than", "1ns", "--purpose", "prf", "--nats", f.ns.URL())
	if code != 0 || !strings.Contains(errOut, "erased 1 per-subject") {
		t.Fatalf("retire --purpose prf --nats: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if accts, _ := f.reveal(rec); !strings.HasPrefix(accts[0], "mdtap:shred:") {
		t.Errorf("subject record after retiring its index's prf key: %q, want shredded", accts[0])
	}
	_, errOut, code = runMdtap(t, nil, "keys", "retire", "--dir", f.dir, "--older-than", "1ns", "--purpose", "daead")
	if code != 0 || strings.Contains(errOut, "without --nats") {
		t.Errorf("retire of daead keys without --nats: exit %d, stderr %q; want no warning (subject keysets do not depend on them)", code, errOut)
	}
	runMdtap(t, nil, "keys", "rotate", "--dir", f.dir)
	_, errOut, code = runMdtap(t, nil, "keys", "retire", "--dir", f.dir, "--older-than", "1ns")
	if code != 0 || !strings.Contains(errOut, "without --nats") {
		t.Errorf("retire without --nats: exit %d, stderr %q; want a warning", code, errOut)
	}
	if _, _, code := runMdtap(t, nil, "keys", "retire", "--dir", f.dir); code != exitUsage {
		t.Errorf("retire without --older-than: exit %d, want %d", code, exitUsage)
	}
}

// runMdtapStdin is runMdtap with stdin.
func runMdtapStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		lookupEnv: func(string) (string, bool) { return "", false },
	}
	root := newRoot(a)
	root.SetArgs(args)
	code = exitOK
	if _, err := root.ExecuteContextC(t.Context()); err != nil {
		errb.WriteString("mdtap: error: " + err.Error() + "\n")
		code = exitFailure
		var ue *usageError
		if errors.As(err, &ue) {
			code = exitUsage
		}
	}
	return out.String(), errb.String(), code
}
