package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/internal/s3test"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

// runCLI runs one mdtap command line as run does, with `mdtap audit` added
// to the root if it is not there yet, writing stdout to out.
func runCLI(t *testing.T, out io.Writer, env map[string]string, args ...string) (stderr string, code int) {
	t.Helper()
	var errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: out, stderr: &errb, lookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}}
	root := newRoot(a)
	if findSub(root, "audit") == nil {
		audit := newAuditCmd(a)
		wrapAllArgs(audit)
		root.AddCommand(audit)
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(context.Background())
	if err == nil {
		return errb.String(), exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return errb.String(), ee.code
	}
	fmt.Fprintf(&errb, "mdtap: error: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(&errb, "hint: run '%s --help'\n", cmd.CommandPath())
		return errb.String(), exitUsage
	}
	if errors.As(err, &ee) {
		return errb.String(), ee.code
	}
	return errb.String(), exitFailure
}

// cli runs a command line and returns its stdout too.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out bytes.Buffer
	stderr, code = runCLI(t, &out, map[string]string{"USER": "auditor"}, args...)
	return out.String(), stderr, code
}

// day is when the test records were made: 2026-03-15, 09:00 to 12:00 UTC.
var day = time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)

// auditFixture is a key directory and an archive store holding protected
// records made with those keys.
type auditFixture struct {
	t        *testing.T
	keyDir   string
	storeURL string
	store    archive.Store
	raws     map[string]*mdtap.Record // raw records by id
	index    map[string]int           // their numbers (auditRaw)
	chains   int
}

func newAuditFixture(t *testing.T, storeURL string) *auditFixture {
	t.Helper()
	f := &auditFixture{t: t, keyDir: filepath.Join(t.TempDir(), "keys"), storeURL: storeURL,
		raws: map[string]*mdtap.Record{}, index: map[string]int{}}
	if err := keys.Init(context.Background(), f.keyDir, ""); err != nil {
		t.Fatal(err)
	}
	store, err := openStore(context.Background(), storeURL, "", true)
	if err != nil {
		t.Fatal(err)
	}
	f.store = store
	return f
}

// raw builds raw record i: three hours from day, bank and card, three orgs,
// customers cust-0 … cust-3 (and none), two result codes, a clear account
// number and product name in the body that the policy tokenizes and
// encrypts.
func auditRaw(i int) *mdtap.Record {
	t := day.Add(time.Duration(i)*7*time.Minute + 13*time.Second)
	sector, api := mdtap.SectorBank, "/v1/bank/accounts"
	if i%2 == 1 {
		sector, api = mdtap.SectorCard, "/v1/card/cards"
	}
	rsp := "00000"
	if i%5 == 4 {
		rsp = "40101"
	}
	body := fmt.Sprintf(`{"rsp_code":%q,"account_list":[{"account_num":"9990001%07d","prod_name":"통장 %d"}]}`, rsp, i, i)
	rec := &mdtap.Record{
		V: 1, ID: archivetest.ID(t, uint64(i+1)), Time: mdtap.Timestamp{Time: t}, DurationMS: 3,
		OrgCode: fmt.Sprintf("TESTORG%03d", i%3), Sector: sector, API: api,
		TranID: fmt.Sprintf("TESTMD0001M%014d", i), Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: "GET", Host: "api.example", Path: api,
			Query: map[string][]string{"org_code": {fmt.Sprintf("TESTORG%03d", i%3)}}},
		Response: &mdtap.Response{Status: 200, Headers: map[string][]string{"content-type": {"application/json"}},
			Payload: mdtap.Payload{Body: []byte(body), BodyBytes: int64(len(body)), CapturedBytes: int64(len(body))},
			RspCode: rsp},
	}
	if i%4 != 3 {
		rec.Subject = fmt.Sprintf("cust-%d", i%4)
	}
	return rec
}

// protect protects raw records i in [from, to) with the keys as they are
// now (so after a rotation, under the new keys).
func (f *auditFixture) protect(from, to int) [][]byte {
	f.t.Helper()
	set, err := keys.Load(context.Background(), f.keyDir)
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := redact.Load("builtin")
	if err != nil {
		f.t.Fatal(err)
	}
	r := redact.New(p, set)
	var lines [][]byte
	for i := from; i < to; i++ {
		raw := auditRaw(i)
		rec, err := r.Protect(raw)
		if err != nil {
			f.t.Fatal(err)
		}
		line, err := json.Marshal(rec)
		if err != nil {
			f.t.Fatal(err)
		}
		f.raws[raw.ID], f.index[raw.ID] = auditRaw(i), i
		lines = append(lines, line)
	}
	return lines
}

// archive stores lines through a real archiver (its own chain), batches
// of batch records; heads nil keeps the heads in memory.
func (f *auditFixture) archive(lines [][]byte, batch int, heads archive.HeadStore) string {
	f.t.Helper()
	f.chains++
	chain := fmt.Sprintf("test-archiver-%d", f.chains)
	if heads == nil {
		heads = archivetest.NewHeads()
	}
	src := archivetest.NewSource()
	a, err := archive.New(src, f.store, heads, archive.Options{Chain: chain, BatchMaxRecords: batch, BatchMaxAge: 20 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	src.Publish(lines...)
	deadline := time.Now().Add(30 * time.Second)
	for src.AckedCount() < len(lines) {
		if time.Now().After(deadline) {
			cancel()
			f.t.Fatalf("archived %d of %d records in 30s", src.AckedCount(), len(lines))
		}
		time.Sleep(5 * time.Millisecond) // poll pacing
	}
	cancel()
	if err := <-done; err != nil {
		f.t.Fatal(err)
	}
	return chain
}

// ids returns the record ids of JSON lines, in order.
func ids(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for line := range strings.Lines(out) {
		id, err := archive.RecordID([]byte(line))
		if err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		got = append(got, id)
	}
	return got
}

// expect returns the ids of the raw records that keep selects, in time order.
func (f *auditFixture) expect(keep func(*mdtap.Record) bool) []string {
	var recs []*mdtap.Record
	for _, r := range f.raws {
		if keep(r) {
			recs = append(recs, r)
		}
	}
	slices.SortFunc(recs, func(a, b *mdtap.Record) int {
		if c := a.Time.Compare(b.Time.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func accessLog(t *testing.T, store archive.Store) []archive.AccessItem {
	t.Helper()
	items, err := archive.ReadAccessLog(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

const (
	from = "2026-03-15T09:00:00Z"
	to   = "2026-03-15T12:00:00Z"
)

func TestAuditQuery(t *testing.T) {
	ctx := context.Background()
	f := newAuditFixture(t, "file://"+t.TempDir()+"/archive")
	f.archive(f.protect(0, 12), 5, nil)
	// A PRF and AEAD rotation between two batches: customers' blind
	// indexes change, the old ones must still be found.
	oldKeys, err := keys.Load(ctx, f.keyDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []keys.Purpose{keys.PurposePRF, keys.PurposeAEAD} {
		if _, err := keys.Rotate(ctx, f.keyDir, p); err != nil {
			t.Fatal(err)
		}
	}
	f.archive(f.protect(12, 24), 5, nil)
	q := func(args ...string) []string {
		t.Helper()
		out, errOut, code := cli(t, append([]string{"audit", "query", "--store", f.storeURL, "--from", from, "--to", to}, args...)...)
		if code != 0 {
			t.Fatalf("audit query %v: exit %d\n%s", args, code, errOut)
		}
		return ids(t, out)
	}

	t.Run("subject across a PRF rotation", func(t *testing.T) {
		got := q("--keys", f.keyDir, "--subject", "cust-1")
		want := f.expect(func(r *mdtap.Record) bool { return r.Subject == "cust-1" })
		if !slices.Equal(got, want) || len(want) != 6 {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		// cust-1 is records 1, 5, 9 (before the rotation) and 13, 17, 21.
		if !slices.Contains(got, auditRaw(1).ID) || !slices.Contains(got, auditRaw(21).ID) {
			t.Fatal("records from before or after the rotation are missing")
		}
	})
	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			keep func(*mdtap.Record) bool
		}{
			{nil, func(*mdtap.Record) bool { return true }},
			{[]string{"--from", "2026-03-15T10:00:00Z", "--to", "2026-03-15T11:30:00+00:00"}, func(r *mdtap.Record) bool {
				return !r.Time.Before(day.Add(time.Hour)) && r.Time.Before(day.Add(150*time.Minute))
			}},
			{[]string{"--sector", "card"}, func(r *mdtap.Record) bool { return r.Sector == mdtap.SectorCard }},
			{[]string{"--org", "TESTORG002"}, func(r *mdtap.Record) bool { return r.OrgCode == "TESTORG002" }},
			{[]string{"--api", "/v1/bank/accounts"}, func(r *mdtap.Record) bool { return r.API == "/v1/bank/accounts" }},
			{[]string{"--tran-id", "TESTMD0001M00000000000017"}, func(r *mdtap.Record) bool { return r.TranID == "TESTMD0001M00000000000017" }},
			{[]string{"--rsp-code", "40101"}, func(r *mdtap.Record) bool { return r.Response.RspCode == "40101" }},
			{[]string{"--sector", "bank", "--org", "TESTORG000,TESTORG001", "--keys", f.keyDir, "--subject", "cust-0", "--subject", "cust-2"},
				func(r *mdtap.Record) bool {
					return r.Sector == mdtap.SectorBank && r.OrgCode != "TESTORG002" && (r.Subject == "cust-0" || r.Subject == "cust-2")
				}},
		} {
			// A later --from/--to wins over the one q sets.
			got := q(tc.args...)
			want := f.expect(tc.keep)
			if !slices.Equal(got, want) || len(want) == 0 {
				t.Errorf("audit query %v:\ngot  %v\nwant %v", tc.args, got, want)
			}
		}
	})
	t.Run("manifest pruning", func(t *testing.T) {
		_, errOut, code := cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", to, "--keys", f.keyDir, "--subject", "nobody")
		if code != 0 || !strings.Contains(errOut, "audit query: 0 records; 3 partitions") || !strings.Contains(errOut, ": 0 scanned,") {
			t.Fatalf("query for an unknown customer: exit %d\n%s", code, errOut)
		}
		_, errOut, _ = cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", "2026-03-15T10:00:00Z", "--sector", "card")
		if !strings.Contains(errOut, "; 1 partitions,") {
			t.Fatalf("query of one hour and sector: %s", errOut)
		}
	})
	t.Run("split roles", func(t *testing.T) {
		// A directory with the PRF keyset alone searches by customer and
		// cannot decrypt.
		prfOnly := filepath.Join(t.TempDir(), "prf")
		os.Mkdir(prfOnly, 0o700)
		for _, name := range []string{"prf.keyset.json", "prf.meta.json", "kek.json"} {
			b, err := os.ReadFile(filepath.Join(f.keyDir, name))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(prfOnly, name), b, 0o600)
		}
		if got := q("--keys", prfOnly, "--subject", "cust-2"); len(got) != 6 {
			t.Fatalf("subject query with the PRF keyset alone: %d records, want 6", len(got))
		}
		_, errOut, code := cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", to,
			"--keys", prfOnly, "--decrypt", "--actor", "kim", "--reason", "r")
		if code != exitFailure || !strings.Contains(errOut, "aead") {
			t.Fatalf("decrypt without the aead keyset: exit %d %s", code, errOut)
		}
	})
	t.Run("duplicates and time order", func(t *testing.T) {
		f.archive(f.protect(0, 12), 12, nil) // the first batch again, by another archiver
		all := q()
		want := f.expect(func(*mdtap.Record) bool { return true })
		if !slices.Equal(all, want) {
			t.Fatalf("after archiving a batch twice:\ngot  %v\nwant %v", all, want)
		}
		_, errOut, _ := cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", to)
		if !strings.Contains(errOut, "(12 duplicates removed)") {
			t.Errorf("stderr does not count the duplicates: %s", errOut)
		}
	})
	t.Run("decrypt", func(t *testing.T) {
		args := []string{"audit", "query", "--store", f.storeURL, "--from", from, "--to", to, "--keys", f.keyDir, "--subject", "cust-1"}
		_, errOut, code := cli(t, append(args, "--decrypt", "--reason", "r")...)
		if code != exitUsage || !strings.Contains(errOut, "--actor is required") || !strings.Contains(errOut, "hint:") {
			t.Fatalf("--decrypt without --actor: exit %d %s", code, errOut)
		}
		_, errOut, code = cli(t, append(args, "--decrypt", "--actor", "kim")...)
		if code != exitUsage || !strings.Contains(errOut, "--reason is required") {
			t.Fatalf("--decrypt without --reason: exit %d %s", code, errOut)
		}
		before := len(accessLog(t, f.store))

		// The start entry must be in the store before the first byte of
		// output: the writer looks when it is first written to.
		probe := &probeWriter{check: func() error {
			items := accessLog(t, f.store)
			if len(items) != before+1 {
				return fmt.Errorf("%d new access-log entries at the first output, want the start entry alone", len(items)-before)
			}
			e := items[len(items)-1].Entry
			if e.Event != mdtap.AccessStart || !e.Decrypt || e.Actor != "kim" {
				return fmt.Errorf("entry at the first output: %+v", e)
			}
			return nil
		}}
		errOut, code = runCLI(t, probe, nil, append(args, "--decrypt", "--actor", "kim", "--reason", "FSS request 2026-17")...)
		if code != 0 || probe.err != nil || !probe.checked {
			t.Fatalf("decrypting query: exit %d, probe %v (checked %v)\n%s", code, probe.err, probe.checked, errOut)
		}
		out := probe.buf.String()
		got := ids(t, out)
		if len(got) != 6 {
			t.Fatalf("decrypting query printed %d records, want 6", len(got))
		}
		for _, id := range got {
			i := f.index[id]
			for _, clear := range []string{fmt.Sprintf(`"account_num":"9990001%07d"`, i), fmt.Sprintf(`"prod_name":"통장 %d"`, i)} {
				if !strings.Contains(out, clear) {
					t.Errorf("record %d: %s not restored", i, clear)
				}
			}
		}
		items := accessLog(t, f.store)
		if len(items) != before+2 {
			t.Fatalf("%d new access-log entries, want start and completion", len(items)-before)
		}
		start, done := items[len(items)-2].Entry, items[len(items)-1].Entry
		if done.Event != mdtap.AccessComplete || done.ID != start.ID || done.Records != 6 || done.Revealed != 12 || len(done.KeyIDs) < 4 {
			t.Errorf("completion entry %+v: want 6 records, 12 values revealed, the PRF keys and the AEAD keys used", done)
		}
		if start.Reason != "FSS request 2026-17" || start.Command != "audit query" || !strings.HasPrefix(start.Filter["subject"], "mdtap:hash:v1:") {
			t.Errorf("start entry %+v", start)
		}
		for _, it := range items {
			for _, secret := range []string{"cust-1", "9990001", "통장"} {
				if bytes.Contains(it.Data, []byte(secret)) {
					t.Errorf("access-log entry %d holds %q", it.Seq, secret)
				}
			}
		}
	})
	t.Run("shredded", func(t *testing.T) {
		// Destroy the AEAD key of the first batch: its encrypted values are
		// gone, the query still succeeds.
		if err := keys.Destroy(ctx, f.keyDir, oldKeys.Primary().AEAD); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", to,
			"--keys", f.keyDir, "--subject", "cust-1", "--decrypt", "--actor", "kim", "--reason", "r")
		if code != 0 {
			t.Fatalf("exit %d %s", code, errOut)
		}
		shred := mdtap.ShredValue(mdtap.FormEnc, oldKeys.Primary().AEAD)
		if n := strings.Count(out, shred); n != 3 {
			t.Errorf("%d values print as %s, want the 3 product names of the first batch", n, shred)
		}
		if !strings.Contains(errOut, "3 shredded") {
			t.Errorf("stderr does not count the shredded values: %s", errOut)
		}
		items := accessLog(t, f.store)
		if done := items[len(items)-1].Entry; done.Shredded != 3 || done.Records != 6 {
			t.Errorf("completion entry %+v: want 3 shredded of 6 records", done)
		}
	})
	t.Run("table", func(t *testing.T) {
		out, _, code := cli(t, "audit", "query", "--store", f.storeURL, "--from", from, "--to", to, "--tran-id", "TESTMD0001M00000000000004", "--format", "table")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "40101") || !strings.Contains(lines[1], "TESTORG001") {
			t.Fatalf("table: exit %d\n%s", code, out)
		}
	})
	t.Run("audit log", func(t *testing.T) {
		out, errOut, code := cli(t, "audit", "log", "--store", f.storeURL, "--actor", "kim")
		if code != 0 || strings.Contains(errOut, "warning") {
			t.Fatalf("audit log: exit %d %s", code, errOut)
		}
		var n int
		for line := range strings.Lines(out) {
			var e mdtap.AccessEntry
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Actor != "kim" {
				t.Fatalf("audit log line %q: %v", line, err)
			}
			n++
		}
		if n != 4 {
			t.Errorf("%d entries of kim, want 4 (two decrypting queries)", n)
		}
		out, _, _ = cli(t, "audit", "log", "--store", f.storeURL, "--format", "table", "--from", "2000-01-01T00:00:00Z")
		if !strings.Contains(out, "auditor") || !strings.Contains(out, "SEQ") || !strings.Contains(out, "subject=mdtap:hash:v1:") {
			t.Errorf("audit log table:\n%s", out)
		}
		out, _, _ = cli(t, "audit", "log", "--store", f.storeURL, "--to", "2000-01-01T00:00:00Z")
		if out != "" {
			t.Errorf("audit log before 2000: %s", out)
		}
	})
	t.Run("verify", func(t *testing.T) {
		out, errOut, code := cli(t, "audit", "verify", "--store", f.storeURL)
		if code != 0 || !strings.Contains(out, "verified: 3 chains and the access log, no problems") {
			t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
		}
	})
}

// probeWriter calls check on its first write.
type probeWriter struct {
	buf     bytes.Buffer
	check   func() error
	checked bool
	err     error
}

func (p *probeWriter) Write(b []byte) (int, error) {
	if !p.checked {
		p.checked, p.err = true, p.check()
	}
	return p.buf.Write(b)
}

func TestAuditQueryUsage(t *testing.T) {
	store := "file://" + t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "query", "--from", from, "--to", to}, "--store is required"},
		{[]string{"audit", "query", "--store", store, "--to", to}, "--from and --to are required"},
		{[]string{"audit", "query", "--store", store, "--from", "yesterday", "--to", to}, "want an RFC 3339 time"},
		{[]string{"audit", "query", "--store", store, "--from", to, "--to", from}, "--from must be before --to"},
		{[]string{"audit", "query", "--store", store, "--from", from, "--to", to, "--subject", "x"}, "--keys is required"},
		{[]string{"audit", "query", "--store", store, "--from", from, "--to", to, "--sector", "banks"}, `--sector "banks"`},
		{[]string{"audit", "query", "--store", store, "--from", from, "--to", to, "--format", "csv"}, `--format "csv"`},
		{[]string{"audit", "query", "--store", "ftp://x", "--from", from, "--to", to}, "--store"},
		{[]string{"audit", "log"}, "--store is required"},
		{[]string{"audit", "verify", "--store", store, "--format", "xml"}, `--format "xml"`},
	} {
		_, errOut, code := cli(t, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "hint:") {
			t.Errorf("%v: exit %d %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// Tampering is found and named, and verify exits 1; a verification that
// cannot run exits 2. The heads are in a real NATS key-value bucket.
func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	ns := natstest.Start(t)
	kv, err := stream.OpenKV(ctx, ns.Conn(t), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/archive"
	f := newAuditFixture(t, "file://"+dir)
	chain := f.archive(f.protect(0, 24), 4, headsAdapter{kv})
	for range 3 {
		if _, errOut, code := cli(t, "audit", "query", "--store", f.storeURL, "--nats", ns.URL(), "--from", from, "--to", to); code != 0 {
			t.Fatalf("audit query: %s", errOut)
		}
	}
	verify := func(format string) (string, int) {
		t.Helper()
		out, _, code := cli(t, "audit", "verify", "--store", f.storeURL, "--nats", ns.URL(), "--format", format)
		return out, code
	}
	out, code := verify("text")
	if code != 0 || !strings.Contains(out, "access log: 6 entries, last seq 6, head 6: ok") || !strings.Contains(out, "head 6: ok") {
		t.Fatalf("verify of a sound archive: exit %d\n%s", code, out)
	}
	refs, err := archive.ListManifests(ctx, f.store, chain)
	if err != nil || len(refs) < 8 {
		t.Fatalf("%d manifests, %v", len(refs), err)
	}
	m := func(i int) *archive.Manifest {
		m, _, err := archive.ReadManifest(ctx, f.store, refs[i].Key)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	flipped, deleted, lostManifest := m(1).Object, m(3).Object, m(5)

	b, _ := os.ReadFile(filepath.Join(dir, flipped))
	b[len(b)/3] ^= 0x20
	os.WriteFile(filepath.Join(dir, flipped), b, 0o640)
	os.Remove(filepath.Join(dir, deleted))
	os.Remove(filepath.Join(dir, refs[5].Key))
	os.Remove(filepath.Join(dir, archive.AccessLogKey(4)))
	out, code = verify("text")
	for _, want := range []string{
		"altered_object seq 2 " + flipped,
		"missing_object seq 4 " + deleted,
		"missing_manifest seq 6: 1 manifests missing before seq 7",
		"unlisted_object seq 6 " + lostManifest.Object,
		"missing_entry seq 4: 1 entries missing before seq 5",
		"FAILED: 5 problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q", want)
		}
	}
	if code != exitFailure {
		t.Errorf("verify of a tampered archive: exit %d, want 1", code)
	}
	if t.Failed() {
		t.Fatalf("verify output:\n%s", out)
	}

	// Entries deleted from the end show against the head in NATS.
	os.Remove(filepath.Join(dir, archive.AccessLogKey(6)))
	out, code = verify("json")
	var rep struct {
		Problems  int
		AccessLog archive.AccessLogReport `json:"access_log"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailure {
		t.Fatalf("verify --format json: exit %d, %v\n%s", code, err, out)
	}
	if rep.Problems != 6 || rep.AccessLog.Problems[len(rep.AccessLog.Problems)-1].Kind != archive.ProblemTailDeleted {
		t.Errorf("verify --format json: %+v, want 6 problems, the last a deleted tail of the access log", rep)
	}

	// Could not run: exit 2.
	for _, args := range [][]string{
		{"audit", "verify", "--store", "file://" + t.TempDir() + "/does-not-exist"},
		{"audit", "verify", "--store", f.storeURL, "--nats", "nats://127.0.0.1:1"},
	} {
		if _, errOut, code := cli(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}

// Queries running at once, from several processes' worth of goroutines,
// append to one access log without forking it: on S3 (versitygw, whose
// conditional writes decide the race) with the head in NATS, and on a
// local directory.
func TestAuditConcurrentQueries(t *testing.T) {
	ns := natstest.Start(t)
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey())
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey())
	for _, tc := range []struct {
		name, storeURL string
		nats           []string
	}{
		{"s3", s3.StoreURL("mdtap-audit", "prod"), []string{"--nats", ns.URL()}},
		{"file", "file://" + t.TempDir() + "/archive", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			natsURL := ""
			if tc.nats != nil {
				natsURL = tc.nats[1]
			}
			f := newAuditFixture(t, tc.storeURL)
			var heads archive.HeadStore
			if natsURL != "" {
				kv, err := stream.OpenKV(context.Background(), ns.Conn(t), "", 1)
				if err != nil {
					t.Fatal(err)
				}
				heads = headsAdapter{kv}
			}
			f.archive(f.protect(0, 20), 7, heads)
			const queries = 6
			var wg sync.WaitGroup
			outs := make([]string, queries)
			codes := make([]int, queries)
			for i := range queries {
				wg.Go(func() {
					// Each query its own app, store client and access-log
					// writer, as separate processes would have. (Not through
					// run: its setup writes zerolog's global time format.)
					c := auditQueryConfig{store: storeFlags{url: f.storeURL}, from: from, to: to, keyDir: f.keyDir,
						subjects: []string{fmt.Sprintf("cust-%d", i%3)}, decrypt: true,
						actor: fmt.Sprintf("auditor-%d", i), reason: "parallel", format: "jsonl"}
					c.heads.nats.url, c.heads.bucket = natsURL, stream.DefaultHeadsBucket
					var errb bytes.Buffer
					a := &app{stdout: io.Discard, stderr: &errb, lookupEnv: func(string) (string, bool) { return "", false }, log: zerolog.Nop()}
					if err := runAuditQuery(context.Background(), a, c); err != nil {
						outs[i], codes[i] = err.Error()+"\n"+errb.String(), 1
					}
				})
			}
			wg.Wait()
			for i := range queries {
				if codes[i] != 0 {
					t.Fatalf("query %d: exit %d\n%s", i, codes[i], outs[i])
				}
			}
			out, errOut, code := cli(t, append([]string{"audit", "verify", "--store", f.storeURL}, tc.nats...)...)
			if code != 0 || !strings.Contains(out, fmt.Sprintf("access log: %d entries, last seq %d", 2*queries, 2*queries)) {
				t.Fatalf("verify after %d parallel queries: exit %d\n%s%s", queries, code, out, errOut)
			}
			starts := map[string]int{}
			for _, it := range accessLog(t, f.store) {
				starts[it.Entry.ID]++
			}
			if len(starts) != queries {
				t.Errorf("%d accesses in the log, want %d with two entries each: %v", len(starts), queries, starts)
			}
		})
	}
}

// `mdtap reveal --store` logs to the store's access log, which the audit
// reviews and verifies.
func TestRevealToStore(t *testing.T) {
	f := newAuditFixture(t, "file://"+t.TempDir()+"/archive")
	lines := f.protect(0, 2)
	in := string(bytes.Join(lines, []byte("\n"))) + "\n"
	var out bytes.Buffer
	a := []string{"reveal", "--keys", f.keyDir, "--actor", "park", "--reason", "complaint 7", "--store", f.storeURL}
	if _, errOut, code := mdtapRunWith(t, in, &out, a...); code != 0 || !strings.Contains(out.String(), "9990001") {
		t.Fatalf("reveal --store: exit %d %s", code, errOut)
	}
	items := accessLog(t, f.store)
	if len(items) != 2 || items[0].Entry.Command != "reveal" || items[1].Entry.Records != 2 || items[1].Entry.Actor != "park" {
		t.Fatalf("store access log after reveal: %+v", items)
	}
	if _, _, code := mdtapRunWith(t, in, io.Discard, append(a, "--access-log", filepath.Join(t.TempDir(), "log"))...); code != exitUsage {
		t.Errorf("reveal --store --access-log: exit %d, want 2", code)
	}
	if out, _, code := cli(t, "audit", "verify", "--store", f.storeURL); code != 0 || !strings.Contains(out, "access log: 2 entries") {
		t.Errorf("verify after reveal: exit %d\n%s", code, out)
	}
}

func mdtapRunWith(t *testing.T, stdin string, out io.Writer, args ...string) (string, string, int) {
	t.Helper()
	var errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), out, &errb, func(string) (string, bool) { return "", false })
	return "", errb.String(), code
}
