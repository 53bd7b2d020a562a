package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// A batch spanning two hours and two sectors makes four objects, each with
// a manifest that describes it exactly.
func TestPartitioning(t *testing.T) {
	e := newEnv(t)
	s1, s2, s3 := archivetest.Subject(1), archivetest.Subject(2), archivetest.Subject(3)
	at := func(h, m, s int) time.Time { return time.Date(2026, 3, 15, h, m, s, 0, time.UTC) }
	specs := []archivetest.Spec{
		{Time: at(9, 59, 58), Sector: mdtap.SectorBank, Org: "TESTBK0001", Subject: s1},
		{Time: at(9, 59, 59), Sector: mdtap.SectorCard, Org: "TESTCD0001", Subject: s2},
		{Time: at(10, 0, 0), Sector: mdtap.SectorBank, Subject: s1},
		{Time: at(10, 0, 1), Sector: mdtap.SectorCard, Org: "TESTBK0001"},
		{Time: at(9, 30, 0), Sector: mdtap.SectorBank, Org: "TESTBK0001", Subject: s3},
		{Time: at(10, 30, 0), Sector: mdtap.SectorCard, Org: "TESTCD0002", Subject: s2},
	}
	var recs [][]byte
	for i, s := range specs {
		recs = append(recs, archivetest.Record(s, uint64(i+1)))
	}
	seqs := e.src.Publish(recs...)
	o := e.options()
	o.BatchMaxRecords = len(recs)
	a := e.archiver(o)
	e.run(a, e.ackedAll(len(recs)))

	ms, hashes := manifests(t, e.fs, testChain)
	if len(ms) != 4 {
		t.Fatalf("%d manifests, want 4 (2 hours × 2 sectors)", len(ms))
	}
	type want struct {
		prefix   string
		recs     []int // indexes into specs, in stream order
		orgs     []string
		subjects []string
	}
	wants := []want{
		{"records/dt=2026-03-15/hour=09/sector=bank/", []int{0, 4}, []string{"TESTBK0001"}, []string{s1, s3}},
		{"records/dt=2026-03-15/hour=09/sector=card/", []int{1}, []string{"TESTCD0001"}, []string{s2}},
		{"records/dt=2026-03-15/hour=10/sector=bank/", []int{2}, []string{"_"}, []string{s1}},
		{"records/dt=2026-03-15/hour=10/sector=card/", []int{3, 5}, []string{"TESTBK0001", "TESTCD0002"}, []string{s2}},
	}
	slices.Sort(wants[0].subjects)
	var chainRecords uint64
	for i, m := range ms {
		w := wants[i]
		seq := uint64(i + 1)
		wantKey := fmt.Sprintf("%s%s-%012d-%s.jsonl.zst", w.prefix, testChain, seq, a.Writer())
		if m.Object != wantKey {
			t.Errorf("manifest %d: object %q, want %q", seq, m.Object, wantKey)
		}
		data, err := e.fs.Get(context.Background(), m.Object)
		if err != nil {
			t.Fatalf("Get(%s): %v", m.Object, err)
		}
		sum := sha256.Sum256(data)
		if m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(len(data)) {
			t.Errorf("manifest %d: sha256 %s bytes %d; object has %x, %d bytes", seq, m.SHA256, m.Bytes, sum, len(data))
		}
		lines, err := archive.DecodeObject(data)
		if err != nil {
			t.Fatalf("DecodeObject(%s): %v", m.Object, err)
		}
		var wantLines [][]byte
		var rawBytes int64
		var ids []string
		var times []time.Time
		var sseqs []uint64
		for _, j := range w.recs {
			wantLines = append(wantLines, recs[j])
			rawBytes += int64(len(recs[j]) + 1)
			id, _ := archive.RecordID(recs[j])
			ids = append(ids, id)
			times = append(times, specs[j].Time)
			sseqs = append(sseqs, seqs[j])
		}
		if !slices.EqualFunc(lines, wantLines, bytes.Equal) {
			t.Errorf("manifest %d: object lines are not exactly the messages %v", seq, w.recs)
		}
		chainRecords += uint64(len(w.recs))
		prev := ""
		if i > 0 {
			prev = hashes[i-1]
		}
		checks := []struct {
			name      string
			got, want any
		}{
			{"v", m.V, archive.ManifestVersion},
			{"chain", m.Chain, testChain},
			{"seq", m.Seq, seq},
			{"prev", m.Prev, prev},
			{"kind", m.Kind, archive.KindRecords},
			{"encoding", m.Encoding, "jsonl+zstd"},
			{"raw_bytes", m.RawBytes, rawBytes},
			{"records", m.Records, len(w.recs)},
			{"chain_records", m.ChainRecords, chainRecords},
			{"ids", *m.IDs, archive.IDRange{Min: slices.Min(ids), Max: slices.Max(ids)}},
			{"stream_seq", m.StreamSeq, archive.SeqRange{Min: slices.Min(sseqs), Max: slices.Max(sseqs)}},
			{"time.min", m.Time.Min.Time, slices.MinFunc(times, time.Time.Compare)},
			{"time.max", m.Time.Max.Time, slices.MaxFunc(times, time.Time.Compare)},
			{"sectors", fmt.Sprint(m.Sectors), fmt.Sprint([]mdtap.Sector{specs[w.recs[0]].Sector})},
			{"orgs", fmt.Sprint(m.Orgs), fmt.Sprint(w.orgs)},
			{"subjects", fmt.Sprint(m.Subjects), fmt.Sprint(w.subjects)},
			{"created", m.Created.Time, t0},
			{"writer", m.Writer, a.Writer()},
		}
		for _, c := range checks {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				t.Errorf("manifest %d: %s = %v, want %v", seq, c.name, c.got, c.want)
			}
		}
		k, err := archive.ParseObjectKey(m.Object)
		if err != nil || k.Manifest() != archive.ManifestKey(testChain, seq) {
			t.Errorf("manifest %d: object key %q does not lead back to it (%v)", seq, m.Object, err)
		}
	}
	h, _, err := e.heads.Get(context.Background(), testChain)
	if err != nil || h != (archive.Head{Hash: hashes[3], Seq: 4, Records: 6}) {
		t.Errorf("head = %+v, %v; want seq 4, records 6, hash of manifest 4", h, err)
	}
	if got := metric(t, e.reg, "mdtap_archive_records_total"); got != 6 {
		t.Errorf("mdtap_archive_records_total = %v, want 6", got)
	}
	if got := metric(t, e.reg, "mdtap_archive_objects_total"); got != 4 {
		t.Errorf("mdtap_archive_objects_total = %v, want 4", got)
	}
	var size int64
	for _, m := range ms {
		size += m.Bytes
	}
	if got := metric(t, e.reg, "mdtap_archive_bytes_total"); got != float64(size) {
		t.Errorf("mdtap_archive_bytes_total = %v, want %d", got, size)
	}
	if got := metric(t, e.reg, "mdtap_archive_batch_seconds"); got != 1 {
		t.Errorf("mdtap_archive_batch_seconds count = %v, want 1", got)
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

func checkVerified(t *testing.T, s archive.Store, heads archive.HeadStore, chain string) archive.Report {
	t.Helper()
	r, err := archive.VerifyChain(context.Background(), s, heads, chain)
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	if !r.OK() {
		for _, p := range r.Problems {
			t.Errorf("VerifyChain: %s", p)
		}
	}
	return r
}

// Batches flush at BatchMaxRecords, BatchMaxBytes or BatchMaxAge, whichever
// comes first; the age runs on the injected clock.
func TestBatching(t *testing.T) {
	rec := archivetest.Records(25, t0, 2<<10, nil, nil, nil)
	size := len(rec[0]) + 1
	tests := []struct {
		name        string
		n           int
		maxRecords  int
		maxBytes    int
		wantBatches []int
	}{
		{"count", 25, 10, 0, []int{10, 10, 5}},
		{"bytes", 7, 1000, 3*size + size/2, []int{3, 3, 1}},
		{"bytes exact", 6, 1000, 3 * size, []int{3, 3}},
		{"age", 4, 1000, 0, []int{4}},
		{"one oversized record", 2, 1000, size / 2, []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.src.Publish(rec[:tt.n]...)
			o := e.options()
			o.BatchMaxRecords = tt.maxRecords
			o.BatchMaxBytes = tt.maxBytes
			o.BatchMaxAge = 7 * time.Second
			e.run(e.archiver(o), e.ackedAll(tt.n))
			ms, _ := manifests(t, e.fs, testChain)
			var got []int
			for _, m := range ms {
				got = append(got, m.Records)
			}
			if !slices.Equal(got, tt.wantBatches) {
				t.Errorf("batches of %v records, want %v", got, tt.wantBatches)
			}
			// Full batches are written at once; only the last, partial one
			// waits for its age, measured from its first record.
			for i, m := range ms {
				want := t0
				if i == len(ms)-1 && tt.name != "bytes exact" && tt.name != "one oversized record" {
					want = t0.Add(o.BatchMaxAge)
				}
				if !m.Created.Time.Equal(want) {
					t.Errorf("batch %d written at %v, want %v", i+1, m.Created.Time, want)
				}
			}
		})
	}
}

// A batch's age counts from its first record, not from its last fetch.
func TestBatchAgeFromFirstRecord(t *testing.T) {
	e := newEnv(t)
	src := archivetest.NewSource() // blocking fetch: the test moves the clock
	o := e.options()
	o.BatchMaxAge = 10 * time.Second
	a, err := archive.New(src, e.store, e.heads, o)
	if err != nil {
		t.Fatal(err)
	}
	recs := archivetest.Records(3, t0, 1<<10, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (fetches with max %v)", what, src.FetchMaxes())
			}
			time.Sleep(time.Millisecond) // poll pacing
		}
	}
	fetchedWith := func(max int) func() bool {
		return func() bool { return slices.Contains(src.FetchMaxes(), max) }
	}
	src.Publish(recs[0])
	waitFor("first record in hand", fetchedWith(archive.DefaultBatchMaxRecords-1))
	e.clock.Advance(6 * time.Second)
	src.Publish(recs[1])
	waitFor("second record in hand", fetchedWith(archive.DefaultBatchMaxRecords-2))
	e.clock.Advance(4 * time.Second) // 10 s after the first record
	src.Publish(recs[2])
	waitFor("batch acked", func() bool { return src.AckedCount() == 3 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	ms, _ := manifests(t, e.fs, testChain)
	if len(ms) != 1 || ms[0].Records != 3 || !ms[0].Created.Time.Equal(t0.Add(10*time.Second)) {
		t.Errorf("manifests = %d, first with %d records at %v; want one of 3 written at t0+10s", len(ms), ms[0].Records, ms[0].Created.Time)
	}
}

// Manifests link, and a restarted archiver (a new process: a new writer id)
// continues its chain: seq+1, prev = the last manifest's hash.
func TestChainRestart(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(30, t0, 1<<10, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorInsu}, nil, nil)
	e.src.Publish(recs[:10]...)
	o := e.options()
	o.BatchMaxRecords = 5
	a1 := e.archiver(o)
	e.run(a1, e.ackedAll(10))
	ms1, hashes1 := manifests(t, e.fs, testChain)
	if len(ms1) != 4 { // 2 batches × 2 sectors
		t.Fatalf("first run wrote %d manifests, want 4", len(ms1))
	}

	e.reg = nil // a new process registers anew
	o.Registerer = nil
	a2 := e.archiver(o)
	if a2.Writer() == a1.Writer() {
		t.Fatalf("restarted archiver has the same writer id %s", a2.Writer())
	}
	e.src.Publish(recs[10:30]...)
	e.run(a2, e.ackedAll(30))
	ms, hashes := manifests(t, e.fs, testChain)
	if len(ms) != 12 {
		t.Fatalf("%d manifests after restart, want 12", len(ms))
	}
	for i, m := range ms {
		if m.Seq != uint64(i+1) {
			t.Errorf("manifest %d has seq %d", i+1, m.Seq)
		}
		if i > 0 && m.Prev != hashes[i-1] {
			t.Errorf("manifest %d: prev %.12s, want hash of manifest %d %.12s", i+1, m.Prev, i, hashes[i-1])
		}
	}
	if ms[4].Prev != hashes1[3] || ms[4].Writer != a2.Writer() || ms[3].Writer != a1.Writer() {
		t.Errorf("manifest 5 (first after restart): prev %.12s writer %s; want prev %.12s writer %s", ms[4].Prev, ms[4].Writer, hashes1[3], a2.Writer())
	}
	if ms[11].ChainRecords != 30 {
		t.Errorf("last manifest chain_records = %d, want 30", ms[11].ChainRecords)
	}
	r := checkVerified(t, e.fs, e.heads, testChain)
	if r.Manifests != 12 || r.Objects != 12 || r.Records != 30 || r.LastSeq != 12 {
		t.Errorf("VerifyChain report = %+v", r)
	}
}

// After a crash between storing manifests and moving the head, the head
// store is behind the store: the next archiver continues after the store's
// last manifest and moves the head there.
func TestRestartHeadBehind(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(20, t0, 1<<10, nil, nil, nil)
	e.src.Publish(recs[:10]...)
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(10))
	_, hashes := manifests(t, e.fs, testChain)
	e.heads.Set(testChain, archive.Head{Hash: hashes[0], Seq: 1, Records: 5}) // as if the second head update was lost

	o.Registerer = nil
	e.src.Publish(recs[10:]...)
	e.run(e.archiver(o), e.ackedAll(20))
	ms, hashes := manifests(t, e.fs, testChain)
	if len(ms) != 4 || ms[2].Prev != hashes[1] {
		t.Fatalf("%d manifests, third prev %.12s; want 4, prev = hash of manifest 2", len(ms), ms[2].Prev)
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// If the head store loses the head (or never had one), the archiver
// continues after the store's last manifest.
func TestRestartNoHead(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(10, t0, 1<<10, nil, nil, nil)
	e.src.Publish(recs[:5]...)
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(5))
	e.heads.Delete(testChain)
	o.Registerer = nil
	e.src.Publish(recs[5:]...)
	e.run(e.archiver(o), e.ackedAll(10))
	ms, hashes := manifests(t, e.fs, testChain)
	if len(ms) != 2 || ms[1].Prev != hashes[0] {
		t.Fatalf("%d manifests; want 2, linked", len(ms))
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// A deleted tail is evidence: a restarted archiver continues after the head
// (not after the store's last manifest), so verify shows the gap.
func TestRestartTailDeleted(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(15, t0, 1<<10, nil, nil, nil)
	e.src.Publish(recs[:10]...)
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(10))
	if err := os.Remove(filepath.Join(e.fs.Dir(), "manifests", testChain, "000000000002.json")); err != nil {
		t.Fatal(err)
	}
	e.src.Publish(recs[10:]...)
	a := e.archiver(o) // same registry: New reuses the registered metrics
	e.run(a, e.ackedAll(15))
	if got := metric(t, e.reg, "mdtap_archive_errors_total", archive.ErrReasonChain); got != 1 {
		t.Errorf("errors_total{reason=chain} = %v, want 1", got)
	}
	ms, _ := manifests(t, e.fs, testChain)
	if len(ms) != 2 || ms[1].Seq != 3 {
		t.Fatalf("manifests after restart: %d, last seq %d; want manifests 1 and 3", len(ms), ms[len(ms)-1].Seq)
	}
	r, err := archive.VerifyChain(context.Background(), e.fs, e.heads, testChain)
	if err != nil {
		t.Fatal(err)
	}
	if r.Count(archive.ProblemMissingManifest) != 1 || r.Count(archive.ProblemUnlistedObject) != 1 || len(r.Problems) != 2 {
		t.Errorf("VerifyChain problems = %v, want manifest 2 missing and its object unlisted", r.Problems)
	}
}

// Two archivers wrongly given one chain id, racing on one source: the chain
// never forks. A loser of a position reads the tail again and goes on after
// the winner's manifests; its orphaned object shows as unlisted.
func TestRacingArchiversSameChain(t *testing.T) {
	e := newEnv(t)
	src := archivetest.NewSource() // blocking fetch, shared: a work queue
	const n = 240
	recs := archivetest.Records(n, t0, 512, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard, mdtap.SectorInsu}, nil, nil)
	o := e.options()
	o.BatchMaxRecords = 6
	o.Registerer = nil
	var as []*archive.Archiver
	for range 2 {
		a, err := archive.New(src, e.store, e.heads, o)
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, len(as))
	for _, a := range as {
		go func() { errc <- a.Run(ctx) }()
	}
	src.Publish(recs...)
	deadline := time.Now().Add(30 * time.Second)
	for src.AckedCount() < n {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("acked %d of %d within 30s", src.AckedCount(), n)
		}
		time.Sleep(time.Millisecond) // poll pacing
	}
	cancel()
	for range as {
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	ms, hashes := manifests(t, e.fs, testChain)
	writers := map[string]int{}
	for i, m := range ms {
		writers[m.Writer]++
		if m.Seq != uint64(i+1) || i > 0 && m.Prev != hashes[i-1] {
			t.Fatalf("manifest %d: seq %d prev %.12s: the chain forked or has a gap", i+1, m.Seq, m.Prev)
		}
	}
	if len(writers) != 2 {
		t.Logf("only one archiver wrote manifests: %v", writers)
	}
	r, err := archive.VerifyChain(context.Background(), e.fs, e.heads, testChain)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		if p.Kind != archive.ProblemUnlistedObject {
			t.Errorf("VerifyChain: %s", p)
		}
	}
	t.Logf("%d manifests by %v; %d orphaned objects from lost races", len(ms), writers, r.Count(archive.ProblemUnlistedObject))
	var d archive.Dedup
	unique := 0
	lines := readRecords(t, e.fs, testChain)
	for _, l := range lines {
		if first, _ := d.First(l); first {
			unique++
		}
	}
	if unique != n || len(lines) != n {
		t.Errorf("chain holds %d records, %d unique; want %d, each once", len(lines), unique, n)
	}
	h, _, err := e.heads.Get(context.Background(), testChain)
	if err != nil || h.Seq != uint64(len(ms)) || h.Hash != hashes[len(hashes)-1] || h.Records != n {
		t.Errorf("head = %+v, %v; want the last manifest (%d), %d records", h, err, len(ms), n)
	}
}

// A store that fails several times, then works: the batch is retried with
// backoff, acknowledged once, nothing lost, the errors counted.
func TestStoreFailsThenSucceeds(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(12, t0, 1<<10, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, nil, nil)
	e.src.Publish(recs...)
	e.store.FailNext(5)
	o := e.options()
	o.BatchMaxRecords = 6
	e.run(e.archiver(o), e.ackedAll(12))
	for seq, n := range e.src.Acked() {
		if n != 1 {
			t.Errorf("message %d acknowledged %d times, want once", seq, n)
		}
	}
	// Each failed attempt counts once: the two objects of the first batch
	// fail together twice, then one of them once more.
	if got := metric(t, e.reg, "mdtap_archive_errors_total", archive.ErrReasonStore); got != 3 {
		t.Errorf("errors_total{reason=store} = %v, want 3", got)
	}
	if got := metric(t, e.reg, "mdtap_archive_records_total"); got != 12 {
		t.Errorf("records_total = %v, want 12", got)
	}
	if got := readRecords(t, e.fs, testChain); len(got) != 12 {
		t.Errorf("archive holds %d records, want 12", len(got))
	}
	// The backoff grew on the fake clock: 100ms, 200ms, 400ms, each
	// jittered in its upper half.
	if waited := e.clock.Now().Sub(t0); waited < 350*time.Millisecond {
		t.Errorf("backoff waited %v in total, want at least 350ms", waited)
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// Nothing is acknowledged before its objects and manifests are stored.
func TestNoAckBeforeStored(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(10, t0, 1<<10, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, nil, nil)
	e.src.Publish(recs...)
	e.src.OnAck(func(msgs []archive.Message) error {
		stored := map[uint64]bool{}
		ms, _ := manifests(t, e.fs, testChain)
		for _, m := range ms {
			for s := m.StreamSeq.Min; s <= m.StreamSeq.Max; s++ {
				stored[s] = true
			}
		}
		for _, m := range msgs {
			if !stored[m.Seq()] {
				t.Errorf("message %d acknowledged before a manifest covers it", m.Seq())
			}
		}
		return nil
	})
	// Manifest writes fail twice: the objects are stored, the batch is not.
	n := 2
	e.store.SetFail(func(op, key string) error {
		if op == "put_if_absent" && n > 0 {
			n--
			return archivetest.ErrInjected
		}
		return nil
	})
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(10))
	checkVerified(t, e.fs, e.heads, testChain)
}

// A crash between storing a batch and acknowledging it: the batch is
// delivered again and stored again; reading with Dedup gives each record
// once.
func TestCrashBeforeAck(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(10, t0, 1<<10, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, nil, nil)
	e.src.Publish(recs...)
	o := e.options()
	o.BatchMaxRecords = 10
	o.AckAttempts = 1
	// The first process "dies" at its ack: nothing is acknowledged.
	e.src.OnAck(func([]archive.Message) error { return errBoom })
	a1 := e.archiver(o)
	e.run(a1, func() bool { return e.store.Calls("put_if_absent") >= 2 && e.src.Pending() == 10 && metricOK(e) })
	if e.src.AckedCount() != 0 {
		t.Fatalf("acked %d before the crash", e.src.AckedCount())
	}
	e.src.OnAck(nil)
	if got := e.src.Redeliver(); got != 10 {
		t.Fatalf("redelivered %d, want 10", got)
	}
	o.Registerer = nil
	e.run(e.archiver(o), e.ackedAll(10))

	lines := readRecords(t, e.fs, testChain)
	if len(lines) != 20 {
		t.Fatalf("archive holds %d records, want 20 (the batch twice)", len(lines))
	}
	var d archive.Dedup
	var unique [][]byte
	for _, l := range lines {
		if first, err := d.First(l); err != nil {
			t.Fatal(err)
		} else if first {
			unique = append(unique, l)
		}
	}
	// Objects list records by partition; compare as sets.
	key := func(b []byte) string { return string(b) }
	got, want := mapSlice(unique, key), mapSlice(recs, key)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("deduplicated archive holds %d records, want the %d published, each once", len(unique), len(recs))
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// metricOK: the first archiver has counted its failed ack.
func metricOK(e *env) bool {
	fams, _ := e.reg.Gather()
	for _, f := range fams {
		if f.GetName() == "mdtap_archive_errors_total" {
			for _, m := range f.GetMetric() {
				if hasLabelValue(m, archive.ErrReasonAck) && m.Counter.GetValue() >= 1 {
					return true
				}
			}
		}
	}
	return false
}

func mapSlice[T, U any](s []T, f func(T) U) []U {
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// Messages that are not protected records go to a dead-letter object with
// its own manifest, in the chain; of a message without policy only its id
// and length are kept.
func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	good := archivetest.Records(3, t0, 1<<10, nil, nil, nil)
	const secret = "900101-1234567" // a resident registration number
	id := archivetest.ID(t0, 99)
	raw := []byte(`{"v":1,"id":"` + id + `","time":"2026-03-15T09:00:00.000000Z","sector":"bank","api":"/v1/bank/accounts","request":{"method":"POST","body":{"rrn":"` + secret + `"}}}`)
	garbage := []byte("GET /?rrn=" + secret + " HTTP/1.1")
	badSector := bytes.Replace(archivetest.Record(archivetest.Spec{Time: t0}, 7), []byte(`"sector":"bank"`), []byte(`"sector":"mars"`), 1)
	e.src.Publish(good[0], raw, good[1], garbage, badSector, good[2])
	o := e.options()
	o.BatchMaxRecords = 6
	e.run(e.archiver(o), e.ackedAll(6))

	ms, _ := manifests(t, e.fs, testChain)
	if len(ms) != 2 || ms[0].Kind != archive.KindRecords || ms[1].Kind != archive.KindDeadLetter {
		t.Fatalf("manifests: %d; want a records one and a dead-letter one", len(ms))
	}
	if ms[0].Records != 3 {
		t.Errorf("records object holds %d records, want 3", ms[0].Records)
	}
	dm := ms[1]
	if !strings.HasPrefix(dm.Object, "deadletter/dt=2026-03-15/"+testChain+"-000000000002-") {
		t.Errorf("dead-letter object key %q", dm.Object)
	}
	if dm.Records != 3 || dm.StreamSeq != (archive.SeqRange{Min: 2, Max: 5}) || dm.ChainRecords != 6 {
		t.Errorf("dead-letter manifest: records %d, stream_seq %+v, chain_records %d", dm.Records, dm.StreamSeq, dm.ChainRecords)
	}
	if want := map[string]int{archive.ReasonUnprotected: 1, archive.ReasonNotJSON: 1, archive.ReasonInvalid: 1}; fmt.Sprint(dm.Reasons) != fmt.Sprint(want) {
		t.Errorf("dead-letter reasons = %v, want %v", dm.Reasons, want)
	}
	lines, err := archive.ReadObject(context.Background(), e.fs, dm.Object)
	if err != nil {
		t.Fatal(err)
	}
	var dls []archive.DeadLetter
	for _, l := range lines {
		var dl archive.DeadLetter
		if err := json.Unmarshal(l, &dl); err != nil {
			t.Fatalf("dead-letter line %q: %v", l, err)
		}
		dls = append(dls, dl)
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	if d := dls[0]; d.StreamSeq != 2 || d.ID != id || d.Bytes != len(raw) || d.Reason != archive.ReasonUnprotected || d.Record != nil {
		t.Errorf("dead letter of the raw record = %+v; want seq 2, its id and length, no bytes", d)
	}
	if d := dls[1]; d.StreamSeq != 4 || d.ID != "" || d.Bytes != len(garbage) || d.Reason != archive.ReasonNotJSON || d.Record != nil {
		t.Errorf("dead letter of the garbage = %+v; want seq 4, its length only", d)
	}
	if d := dls[2]; d.StreamSeq != 5 || d.Reason != archive.ReasonInvalid || !bytes.Equal(d.Record, badSector) {
		t.Errorf("dead letter of the bad-sector record = reason %q, record kept %v; want it kept whole", d.Reason, bytes.Equal(d.Record, badSector))
	}
	// The secret is nowhere in the archive, compressed or not.
	filepath.WalkDir(e.fs.Dir(), func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		data, _ := os.ReadFile(path)
		if plain, err := archive.DecodeObject(data); err == nil {
			data = bytes.Join(plain, nil)
		}
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the plaintext of a message without policy", path)
		}
		return nil
	})
	if got := metric(t, e.reg, "mdtap_archive_errors_total", archive.ErrReasonInvalidRecord); got != 3 {
		t.Errorf("errors_total{reason=invalid_record} = %v, want 3", got)
	}
	if got := metric(t, e.reg, "mdtap_archive_records_total"); got != 3 {
		t.Errorf("records_total = %v, want 3", got)
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// When its context ends, Run stores and acknowledges the batch in hand
// before it returns.
func TestShutdownWritesBatchInHand(t *testing.T) {
	e := newEnv(t)
	src := archivetest.NewSource() // blocking fetch
	o := e.options()
	a, err := archive.New(src, e.store, e.heads, o)
	if err != nil {
		t.Fatal(err)
	}
	src.Publish(archivetest.Records(3, t0, 1<<10, nil, nil, nil)...)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(src.FetchMaxes(), archive.DefaultBatchMaxRecords-3) {
		if time.Now().After(deadline) {
			t.Fatal("batch not in hand within 10s")
		}
		time.Sleep(time.Millisecond) // poll pacing
	}
	if src.AckedCount() != 0 {
		t.Fatal("batch written before its age")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if src.AckedCount() != 3 {
		t.Errorf("acked %d at shutdown, want 3", src.AckedCount())
	}
	checkVerified(t, e.fs, e.heads, testChain)
}

// A shutdown while the store is down gives up after the grace period; the
// batch stays unacknowledged, to be delivered again.
func TestShutdownAbandonsWhenStoreDown(t *testing.T) {
	e := newEnv(t)
	src := archivetest.NewSource()
	o := e.options()
	o.ShutdownGrace = 50 * time.Millisecond
	o.Sleep = nil // real backoff waits, bounded by the grace period
	o.BackoffMin = 5 * time.Millisecond
	e.store.SetFail(func(op, key string) error {
		if op == "put" {
			return archivetest.ErrInjected
		}
		return nil
	})
	a, err := archive.New(src, e.store, e.heads, o)
	if err != nil {
		t.Fatal(err)
	}
	src.Publish(archivetest.Records(2, t0, 1<<10, nil, nil, nil)...)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	for !slices.Contains(src.FetchMaxes(), archive.DefaultBatchMaxRecords-2) {
		time.Sleep(time.Millisecond) // poll pacing
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s with the store down")
	}
	if src.AckedCount() != 0 || src.Pending() != 2 {
		t.Errorf("acked %d, pending %d; want 0 acked, 2 pending", src.AckedCount(), src.Pending())
	}
}

// Fetch, ack and head-store failures are retried or ridden out; Run never
// returns on them.
func TestTransientErrors(t *testing.T) {
	e := newEnv(t)
	recs := archivetest.Records(10, t0, 1<<10, nil, nil, nil)
	e.src.Publish(recs...)
	e.src.FailFetch(errBoom, errBoom, errBoom)
	e.src.FailAck(errBoom)
	e.heads.FailGet(errBoom, errBoom)
	e.heads.FailPut(errBoom)
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(10))
	for _, c := range []struct {
		reason string
		want   float64
	}{
		{archive.ErrReasonFetch, 3},
		{archive.ErrReasonAck, 1},
		{archive.ErrReasonHead, 3},
		{archive.ErrReasonStore, 0},
	} {
		if got := metric(t, e.reg, "mdtap_archive_errors_total", c.reason); got != c.want {
			t.Errorf("errors_total{reason=%s} = %v, want %v", c.reason, got, c.want)
		}
	}
	for seq, n := range e.src.Acked() {
		if n != 1 {
			t.Errorf("message %d acknowledged %d times", seq, n)
		}
	}
	// The failed head update of the first batch was made good by the second.
	checkVerified(t, e.fs, e.heads, testChain)
	if got := metric(t, e.reg, "mdtap_archive_lag_records"); got != 0 {
		t.Errorf("lag gauge = %v, want 0", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	e := newEnv(t)
	base := e.options()
	tests := []struct {
		name  string
		edit  func(*archive.Options)
		field string
	}{
		{"no chain", func(o *archive.Options) { o.Chain = "" }, "Chain"},
		{"bad chain", func(o *archive.Options) { o.Chain = "a/b" }, "Chain"},
		{"negative bytes", func(o *archive.Options) { o.BatchMaxBytes = -1 }, "BatchMaxBytes"},
		{"negative records", func(o *archive.Options) { o.BatchMaxRecords = -1 }, "BatchMaxRecords"},
		{"negative age", func(o *archive.Options) { o.BatchMaxAge = -time.Second }, "BatchMaxAge"},
		{"backoff", func(o *archive.Options) { o.BackoffMin = time.Minute; o.BackoffMax = time.Second }, "BackoffMin"},
		{"compression", func(o *archive.Options) { o.Compression = 9 }, "Compression"},
	}
	for _, tt := range tests {
		o := base
		tt.edit(&o)
		o.Registerer = nil
		_, err := archive.New(e.src, e.store, e.heads, o)
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: New error = %v, want one naming %s", tt.name, err, tt.field)
		}
	}
	if err := archive.DefaultOptions().Validate(); err == nil {
		t.Error("DefaultOptions().Validate() without a chain succeeded")
	}
	o := archive.DefaultOptions()
	o.Chain = "c"
	if err := o.Validate(); err != nil {
		t.Errorf("DefaultOptions with a chain: %v", err)
	}
}

// The zero Options but a chain work: defaults, no logger, no registry, the
// real clock.
func TestDefaultOptionsRun(t *testing.T) {
	src := archivetest.NewSource()
	store := newFileStore(t)
	a, err := archive.New(src, store, archivetest.NewHeads(), archive.Options{Chain: "c", BatchMaxRecords: 2})
	if err != nil {
		t.Fatal(err)
	}
	src.Publish(archivetest.Records(4, t0, 512, nil, nil, nil)...)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for src.AckedCount() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // poll pacing
	}
	cancel()
	if err := <-errc; err != nil || src.AckedCount() != 4 {
		t.Fatalf("Run = %v, acked %d; want nil, 4", err, src.AckedCount())
	}
	data, err := store.Get(context.Background(), archive.ManifestKey("c", 1))
	if err != nil {
		t.Fatal(err)
	}
	// Empty sets are [] in the manifest, never null.
	if !bytes.Contains(data, []byte(`"subjects":[]`)) || bytes.Contains(data, []byte("null")) {
		t.Errorf("manifest %s: want \"subjects\":[] and no null", data)
	}
}
