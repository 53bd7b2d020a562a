package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdtap/mdtap"
)

type testSpool struct {
	*Spool
	reg *prometheus.Registry
}

// openTestSpool opens a spool in o.Dir (a new temporary directory when
// empty) with metrics in a fresh registry; it is closed in cleanup.
func openTestSpool(t *testing.T, o SpoolOptions) *testSpool {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "spool")
	}
	if o.Fsync == "" {
		// Batch makes a lone appender wait an interval per record; the
		// policies have their own test.
		o.Fsync = FsyncAlways
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	o.Logger = testLogger(t)
	s, err := OpenSpool(o)
	if err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &testSpool{Spool: s, reg: reg}
}

func (s *testSpool) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	return metricValue(t, s.reg, name, label, value)
}

// spoolMsg is a spooled record of about size bytes of data; not a valid
// record, for tests that look only at the spool.
func spoolMsg(n, size int) Message {
	data := fmt.Appendf(nil, `{"id":"%s","n":%d,"pad":"`, testID(n), n)
	data = append(data, bytes.Repeat([]byte("x"), max(size-len(data)-2, 0))...)
	data = append(data, `"}`...)
	return Message{ID: testID(n), Subject: "mdtap.records.bank.TESTBK0001", Data: data}
}

// recordMsg is the publisher's encoding of testRecord(n).
func recordMsg(t *testing.T, n int) Message {
	t.Helper()
	rec := testRecord(n)
	data, err := encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	return Message{ID: rec.ID, Subject: mdtap.RecordSubject(rec.Sector, rec.OrgCode), Data: data}
}

func mustAppend(t *testing.T, s *Spool, m Message, degraded bool) {
	t.Helper()
	if err := s.appendSync(m, degraded, ReasonDisconnected); err != nil {
		t.Fatalf("append %s: %v", m.ID, err)
	}
}

// readAll reads the spool from its start until nothing more is committed.
func readAll(t *testing.T, s *Spool) []readItem {
	t.Helper()
	r := newSpoolReader(s)
	defer r.close()
	var items []readItem
	for {
		it, ok, err := r.next()
		if err != nil {
			t.Fatalf("read spool: %v", err)
		}
		if !ok {
			return items
		}
		items = append(items, it)
	}
}

// ackItems acknowledges items in order, as the drain does.
func ackItems(s *Spool, items []readItem) {
	for _, it := range items {
		n := 0
		if it.corrupt == nil {
			n = 1
		}
		s.ack(it.end, n)
	}
}

func wantRecords(t *testing.T, items []readItem, want ...Message) {
	t.Helper()
	if len(items) != len(want) {
		t.Fatalf("spool holds %d items, want %d", len(items), len(want))
	}
	for i, it := range items {
		if it.corrupt != nil {
			t.Fatalf("item %d: %d damaged bytes, want record %s", i, len(it.corrupt), want[i].ID)
		}
		if it.fr.m.ID != want[i].ID || it.fr.m.Subject != want[i].Subject || !bytes.Equal(it.fr.m.Data, want[i].Data) {
			t.Fatalf("item %d: got record %s (%d bytes), want %s (%d bytes)", i, it.fr.m.ID, len(it.fr.m.Data), want[i].ID, len(want[i].Data))
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestSpoolOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    SpoolOptions
		want string // "" valid
	}{
		{"defaults", SpoolOptions{Dir: "x"}, ""},
		{"no dir", SpoolOptions{}, "dir is required"},
		{"tiny", SpoolOptions{Dir: "x", MaxBytes: 1000}, "max bytes 1000"},
		{"reserved over max", SpoolOptions{Dir: "x", MaxBytes: 1 << 20, ReservedBytes: 1 << 20}, "reserved bytes"},
		{"reserved negative", SpoolOptions{Dir: "x", ReservedBytes: -1}, "reserved bytes"},
		{"segment over max", SpoolOptions{Dir: "x", MaxBytes: 1 << 20, SegmentBytes: 2 << 20}, "segment bytes"},
		{"segment tiny", SpoolOptions{Dir: "x", SegmentBytes: 100}, "segment bytes"},
		{"fsync", SpoolOptions{Dir: "x", Fsync: "sometimes"}, `fsync policy "sometimes"`},
		{"interval", SpoolOptions{Dir: "x", FsyncInterval: -time.Second}, "fsync interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: got %v, want an error with %q", err, tt.want)
			}
		})
	}
	if d := (SpoolOptions{Dir: "x", MaxBytes: 64 << 20}).withDefaults(); d.SegmentBytes != 8<<20 || d.ReservedBytes != 64<<20/20 || d.Fsync != FsyncBatch {
		t.Errorf("defaults for 64 MiB: segment %d, reserved %d, fsync %s", d.SegmentBytes, d.ReservedBytes, d.Fsync)
	}
	for _, s := range []string{"batch", "always", "none"} {
		if p, err := ParseFsyncPolicy(s); err != nil || string(p) != s {
			t.Errorf("ParseFsyncPolicy(%q): got %q, %v", s, p, err)
		}
	}
}

// Records come back in the order they were appended, across segments, and
// after the spool is closed and opened again.
func TestSpoolOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	o := SpoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 4 << 10}
	s := openTestSpool(t, o)
	var want []Message
	for i := range 60 {
		m := spoolMsg(i, 300+i*7)
		mustAppend(t, s.Spool, m, i%10 == 0)
		want = append(want, m)
	}
	items := readAll(t, s.Spool)
	wantRecords(t, items, want...)
	for i, it := range items {
		if it.fr.degraded != (i%10 == 0) {
			t.Errorf("item %d: degraded %v", i, it.fr.degraded)
		}
	}
	st := s.Stats()
	if st.Records != 60 || st.Segments < 4 {
		t.Errorf("Stats: got %+v, want 60 records in several segments", st)
	}
	if got := s.metric(t, "mdtap_spool_records", "", ""); got != 60 {
		t.Errorf("mdtap_spool_records: got %v, want 60", got)
	}
	if got := s.metric(t, "mdtap_spool_appends_total", "reason", ReasonDisconnected); got != 60 {
		t.Errorf("mdtap_spool_appends_total{disconnected}: got %v, want 60", got)
	}
	var onDisk int64
	for _, name := range segFiles(t, dir) {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %s, want 0600", name, fi.Mode().Perm())
		}
	}
	if st.Bytes != onDisk {
		t.Errorf("Stats.Bytes %d, segment files hold %d", st.Bytes, onDisk)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool dir: mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openTestSpool(t, o)
	wantRecords(t, readAll(t, s.Spool), want...)
	if st := s.Stats(); st.Records != 60 || st.Bytes != onDisk {
		t.Errorf("Stats after reopening: got %+v, want 60 records, %d bytes", st, onDisk)
	}
	m := spoolMsg(60, 500)
	mustAppend(t, s.Spool, m, false)
	want = append(want, m)
	wantRecords(t, readAll(t, s.Spool), want...)
}

func TestSpoolLocked(t *testing.T) {
	s := openTestSpool(t, SpoolOptions{})
	if _, err := OpenSpool(SpoolOptions{Dir: s.dir}); !errors.Is(err, ErrSpoolLocked) {
		t.Fatalf("second OpenSpool on %s: got %v, want ErrSpoolLocked", s.dir, err)
	}
	s.Close()
	s2, err := OpenSpool(SpoolOptions{Dir: s.dir})
	if err != nil {
		t.Fatalf("OpenSpool after Close: %v", err)
	}
	s2.Close()
}

// Acknowledged segments are removed; when everything is acknowledged the
// spool is empty on disk; the acknowledgement cursor survives a restart.
func TestSpoolAckRemovesSegmentsAndCursor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	o := SpoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 4 << 10}
	s := openTestSpool(t, o)
	var want []Message
	for i := range 40 {
		m := spoolMsg(i, 500)
		mustAppend(t, s.Spool, m, false)
		want = append(want, m)
	}
	items := readAll(t, s.Spool)
	before := s.Stats()
	ackItems(s.Spool, items[:25])
	waitFor(t, 5*time.Second, "acknowledged segments removed", func() error {
		st := s.Stats()
		if st.Segments >= before.Segments || st.Records != 15 {
			return fmt.Errorf("stats %+v, before %+v", st, before)
		}
		if n := len(segFiles(t, dir)); n != st.Segments {
			return fmt.Errorf("%d segment files, Stats says %d", n, st.Segments)
		}
		return nil
	})
	s.Close()

	// Reopened, it replays from the cursor: record 25 on.
	s = openTestSpool(t, o)
	if st := s.Stats(); st.Records != 15 {
		t.Errorf("records after reopening: got %d, want 15", st.Records)
	}
	items = readAll(t, s.Spool)
	wantRecords(t, items, want[25:]...)

	ackItems(s.Spool, items)
	waitFor(t, 5*time.Second, "empty spool", func() error {
		if st := s.Stats(); st.Bytes != 0 || st.Segments != 0 || st.Records != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		if n := len(segFiles(t, dir)); n != 0 {
			return fmt.Errorf("%d segment files left in an empty spool", n)
		}
		return nil
	})
	// It works on after being emptied.
	m := spoolMsg(99, 500)
	mustAppend(t, s.Spool, m, false)
	s.Close()
	s = openTestSpool(t, o)
	wantRecords(t, readAll(t, s.Spool), m)
}

// A crash that tears the last write leaves a partial frame (or garbage) at
// the end of the last segment: recovery cuts it off and counts it.
func TestSpoolRecoversTornTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"cut mid-record", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-100); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeros after the last record", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 4096))
			f.Close()
		}},
		{"header only", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(appendFrame(nil, spoolMsg(77, 300), false)[:frameHeaderLen])
			f.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			o := SpoolOptions{Dir: dir, MaxBytes: 1 << 20}
			s := openTestSpool(t, o)
			var want []Message
			for i := range 10 {
				m := spoolMsg(i, 400)
				mustAppend(t, s.Spool, m, false)
				want = append(want, m)
			}
			s.Close()
			segs := segFiles(t, dir)
			last := segs[len(segs)-1]
			tt.damage(t, last)
			if tt.name == "cut mid-record" {
				want = want[:9]
			}

			s = openTestSpool(t, o)
			wantRecords(t, readAll(t, s.Spool), want...)
			if got := s.metric(t, "mdtap_spool_dropped_total", "reason", dropTorn); got != 1 {
				t.Errorf("mdtap_spool_dropped_total{torn}: got %v, want 1", got)
			}
			fi, err := os.Stat(last)
			if err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Bytes != fi.Size() || st.Records != int64(len(want)) {
				t.Errorf("Stats %+v; segment %d bytes, %d records", st, fi.Size(), len(want))
			}
			// Appending goes on cleanly after the cut.
			m := spoolMsg(10, 400)
			mustAppend(t, s.Spool, m, false)
			s.Close()
			s = openTestSpool(t, o)
			wantRecords(t, readAll(t, s.Spool), append(want, m)...)
			if got := s.metric(t, "mdtap_spool_dropped_total", "reason", dropTorn); got != 0 {
				t.Errorf("torn count after a clean reopen: got %v, want 0", got)
			}
		})
	}
}

// A damaged byte inside a record in the middle of a segment is found by its
// CRC; the reader hands the damaged bytes over (for the dead-letter
// directory) and finds the next record.
func TestSpoolCorruptRecordInTheMiddle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	o := SpoolOptions{Dir: dir, MaxBytes: 1 << 20}
	s := openTestSpool(t, o)
	var want []Message
	var ends []spoolPos
	for i := range 10 {
		m := spoolMsg(i, 400)
		end, err := s.appendAt(m, false, ReasonDisconnected)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m)
		ends = append(ends, end)
	}
	s.Close()
	path := filepath.Join(dir, segName(ends[4].seq))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[ends[4].off+100] ^= 0x20 // inside record 5's data
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openTestSpool(t, o)
	items := readAll(t, s.Spool)
	if len(items) != 10 {
		t.Fatalf("got %d items, want 9 records and 1 damaged", len(items))
	}
	wantRecords(t, items[:5], want[:5]...)
	if c := items[5].corrupt; c == nil || int64(len(c)) != ends[5].off-ends[4].off {
		t.Fatalf("item 5: got %d damaged bytes, want %d", len(items[5].corrupt), ends[5].off-ends[4].off)
	}
	wantRecords(t, items[6:], want[6:]...)
	if st := s.Stats(); st.Records != 9 {
		t.Errorf("records: got %d, want 9", st.Records)
	}
}

// Full records may fill only the regular part; degraded ones the reserved
// part too; and Accepting follows with hysteresis.
func TestSpoolSizeCapReservedPartAndAccepting(t *testing.T) {
	const maxBytes, reserved = 128 << 10, 28 << 10 // regular part: 100 KiB
	o := SpoolOptions{MaxBytes: maxBytes, ReservedBytes: reserved, SegmentBytes: 4 << 10}
	s := openTestSpool(t, o)
	regular := int64(maxBytes - reserved)

	n := 0
	for ; ; n++ {
		err := s.appendSync(spoolMsg(n, 1000), false, ReasonDisconnected)
		if errors.Is(err, ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !s.Accepting() && s.Stats().Bytes < regular {
			t.Fatalf("Accepting false at %d of %d bytes", s.Stats().Bytes, regular)
		}
	}
	st := s.Stats()
	if st.Bytes > regular || st.Bytes < regular-2*1100 {
		t.Errorf("full records stopped at %d bytes, want just under %d", st.Bytes, regular)
	}
	if s.Accepting() {
		t.Error("Accepting with the regular part full")
	}
	if got := s.metric(t, "mdtap_spool_accepting", "", ""); got != 0 {
		t.Errorf("mdtap_spool_accepting: got %v, want 0", got)
	}
	full := n

	// Degraded records fill the reserved part.
	for ; ; n++ {
		err := s.appendSync(spoolMsg(n, 300), true, ReasonDisconnected)
		if errors.Is(err, ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Bytes > maxBytes || st.Bytes < maxBytes-2*400 || n-full < 50 {
		t.Errorf("degraded records: %d, stopped at %d bytes, want just under %d", n-full, st.Bytes, maxBytes)
	}

	// Free segment by segment: Accepting stays false until use is back
	// under 90% of the regular part.
	items := readAll(t, s.Spool)
	sawFalseBelowFull, i := false, 0
	for s.Stats().Bytes > 0 {
		seq := items[i].pos.seq
		var seg []readItem
		for i < len(items) && items[i].pos.seq == seq {
			seg = append(seg, items[i])
			i++
		}
		before := s.Stats().Segments
		ackItems(s.Spool, seg)
		waitFor(t, 5*time.Second, "segment removed", func() error {
			if st := s.Stats(); st.Segments >= before && st.Bytes > 0 {
				return fmt.Errorf("stats %+v", st)
			}
			return nil
		})
		used, acc := s.Stats().Bytes, s.Accepting()
		switch {
		case used > regular*resumePercent/100 && acc:
			t.Fatalf("Accepting at %d bytes, above 90%% of %d", used, regular)
		case used <= regular*resumePercent/100 && !acc:
			t.Fatalf("not Accepting at %d bytes, at most 90%% of %d", used, regular)
		case used < regular && !acc:
			sawFalseBelowFull = true
		}
	}
	if !sawFalseBelowFull {
		t.Error("no step between 90% and 100%: hysteresis not exercised")
	}
}

// The writer places a failed record it was handed without room taken (the
// ack path): when the regular part is full it keeps the record's metadata
// only, in the reserved part, and when that is full too it drops it,
// counted.
func TestSpoolDegradesWhenFull(t *testing.T) {
	o := SpoolOptions{MaxBytes: 64 << 10, ReservedBytes: 16 << 10}
	s := openTestSpool(t, o)
	for n := 0; ; n++ {
		if err := s.appendSync(recordMsg(t, n), false, ReasonDisconnected); errors.Is(err, ErrSpoolFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	put := func(m Message) error {
		ch := make(chan error, 1)
		if err := s.put(&job{kind: jobRecord, m: m, reason: ReasonStreamFull, done: func(err error) { ch <- err }}); err != nil {
			return err
		}
		return <-ch
	}
	m := recordMsg(t, 1000)
	if err := put(m); err != nil {
		t.Fatalf("put with the regular part full: %v", err)
	}
	items := readAll(t, s.Spool)
	last := items[len(items)-1]
	if last.fr.m.ID != m.ID || !last.fr.degraded {
		t.Fatalf("last record: %s degraded %v, want %s degraded", last.fr.m.ID, last.fr.degraded, m.ID)
	}
	var rec mdtap.Record
	if err := json.Unmarshal(last.fr.m.Data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Degraded != mdtap.DegradeSpoolFull || rec.Response.Body != nil || rec.Request.Headers != nil || rec.Policy == "" {
		t.Errorf("degraded record: %s", last.fr.m.Data)
	}
	if got := s.metric(t, "mdtap_spool_degraded_total", "reason", mdtap.DegradeSpoolFull); got != 1 {
		t.Errorf("mdtap_spool_degraded_total{spool_full}: got %v, want 1", got)
	}
	for n := 1001; ; n++ {
		if err := put(recordMsg(t, n)); errors.Is(err, ErrSpoolFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if n > 1200 {
			t.Fatal("the reserved part never filled")
		}
	}
	if got := s.metric(t, "mdtap_spool_dropped_total", "reason", dropSpoolFull); got != 1 {
		t.Errorf("mdtap_spool_dropped_total{spool_full}: got %v, want 1", got)
	}
}

// syncRecorder stands in for fsync: it notes, per file, how many bytes the
// file had at each fsync, and when each fsync started.
type syncRecorder struct {
	mu     sync.Mutex
	synced map[string]int64
	times  []time.Time // fsyncs of segment files
}

func newSyncRecorder() *syncRecorder { return &syncRecorder{synced: map[string]int64{}} }

func (r *syncRecorder) sync(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasSuffix(f.Name(), segSuffix) {
		r.synced[filepath.Base(f.Name())] = max(r.synced[filepath.Base(f.Name())], fi.Size())
		r.times = append(r.times, time.Now())
	}
	return nil
}

// covered says whether an fsync covered the record ending at end.
func (r *syncRecorder) covered(end spoolPos) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced[segName(end.seq)] >= end.off
}

func (r *syncRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

// appendConcurrently appends workers×each records and checks, as each append
// returns, whether an fsync already covered it.
func appendConcurrently(t *testing.T, s *Spool, rec *syncRecorder, workers, each int) (uncovered int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				end, err := s.appendAt(spoolMsg(w*each+i, 200), false, ReasonDisconnected)
				if err != nil {
					t.Error(err)
					return
				}
				if !rec.covered(end) {
					mu.Lock()
					uncovered++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return uncovered
}

func TestSpoolFsyncPolicies(t *testing.T) {
	const workers, each = 16, 20
	t.Run("always", func(t *testing.T) {
		rec := newSyncRecorder()
		s := openTestSpool(t, SpoolOptions{Fsync: FsyncAlways, syncFile: rec.sync})
		if n := appendConcurrently(t, s.Spool, rec, workers, each); n != 0 {
			t.Errorf("%d appends returned before an fsync covered them", n)
		}
		if n := rec.count(); n == 0 || n > workers*each {
			t.Errorf("%d fsyncs for %d appends", n, workers*each)
		}
		t.Logf("always: %d fsyncs for %d appends from %d goroutines", rec.count(), workers*each, workers)
	})
	t.Run("batch", func(t *testing.T) {
		const interval = 20 * time.Millisecond
		rec := newSyncRecorder()
		s := openTestSpool(t, SpoolOptions{Fsync: FsyncBatch, FsyncInterval: interval, syncFile: rec.sync})
		start := time.Now()
		if n := appendConcurrently(t, s.Spool, rec, workers, each); n != 0 {
			t.Errorf("%d appends returned before an fsync covered them", n)
		}
		elapsed := time.Since(start)
		rec.mu.Lock()
		times := append([]time.Time(nil), rec.times...)
		rec.mu.Unlock()
		// Group commit: one fsync per interval at most, each shared by
		// many appends.
		if max := int(elapsed/interval) + 2; len(times) > max {
			t.Errorf("%d fsyncs in %s, want at most %d (one per %s)", len(times), elapsed, max, interval)
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < interval {
				t.Errorf("fsyncs %d and %d only %s apart, want at least %s", i-1, i, gap, interval)
			}
		}
		if len(times) == 0 || workers*each/len(times) < 4 {
			t.Errorf("%d fsyncs for %d appends: not batched", len(times), workers*each)
		}
		t.Logf("batch: %d fsyncs for %d appends in %s", len(times), workers*each, elapsed)
	})
	t.Run("none", func(t *testing.T) {
		rec := newSyncRecorder()
		s := openTestSpool(t, SpoolOptions{Fsync: FsyncNone, syncFile: rec.sync})
		uncovered := appendConcurrently(t, s.Spool, rec, 4, 10)
		if n := rec.count(); n != 0 || uncovered != 40 {
			t.Errorf("policy none: %d fsyncs, %d of 40 appends uncovered; want none and all", n, uncovered)
		}
		if err := s.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if rec.count() != 1 {
			t.Errorf("Sync: %d fsyncs of the segment, want 1", rec.count())
		}
		items := readAll(t, s.Spool)
		if !rec.covered(items[len(items)-1].end) {
			t.Error("Sync did not cover the last record")
		}
	})
}

func TestFrameResync(t *testing.T) {
	var b []byte
	for i := range 3 {
		b = appendFrame(b, spoolMsg(i, 100+i), i == 1)
	}
	fr, n, err := parseFrame(b)
	if err != nil || fr.m.ID != testID(0) || fr.degraded {
		t.Fatalf("parseFrame: %+v %v", fr, err)
	}
	second := n
	if _, _, err := parseFrame(b[:n-1]); !errors.Is(err, errShortFrame) {
		t.Errorf("parseFrame(cut): got %v, want errShortFrame", err)
	}
	bad := bytes.Clone(b)
	bad[10] ^= 1 // the length
	if _, _, err := parseFrame(bad); !errors.Is(err, errBadFrame) && !errors.Is(err, errShortFrame) {
		t.Errorf("parseFrame(damaged length): got %v", err)
	}
	if k := resync(bad); k != second {
		t.Errorf("resync: got %d, want %d", k, second)
	}
	if k := resync(b[:second]); k != second {
		t.Errorf("resync with no frame after: got %d, want %d", k, second)
	}
}

// FuzzSpoolSegment feeds arbitrary bytes to the frame decoder, and as a
// segment to recovery's scan and to the drain's reader: nothing panics, a
// decoded frame encodes back to the same bytes, and the reader tiles what
// recovery keeps — good frames and damaged runs back to back, as many frames
// as recovery counts. (In memory: a body that touches files runs too slowly
// for the fuzzer to get anywhere in CI's few seconds.)
func FuzzSpoolSegment(f *testing.F) {
	var good []byte
	for i := range 3 {
		good = appendFrame(good, spoolMsg(i, 40+i), i == 1)
	}
	f.Add(good)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	f.Add(flipped)
	f.Add(good[:len(good)-7])
	f.Add(append(bytes.Clone(good[:30]), good...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if fr, n, err := parseFrame(data); err == nil {
			if got := appendFrame(nil, fr.m, fr.degraded); !bytes.Equal(got, data[:n]) {
				t.Fatalf("frame does not encode back to its bytes")
			}
		}
		if k := resync(data); k < 0 || k > len(data) || len(data) > 0 && k < 1 {
			t.Fatalf("resync: %d of %d", k, len(data))
		}

		seg := append(bytes.Clone(segMagic), data...)
		sc := scanSegment(seg, segHeaderLen, -1)
		if sc.end < segHeaderLen || sc.end > int64(len(seg)) || sc.torn != (sc.end < int64(len(seg))) {
			t.Fatalf("scan: end %d of %d, torn %v", sc.end, len(seg), sc.torn)
		}
		r := &spoolReader{src: bytes.NewReader(seg[:sc.end]), pos: spoolPos{1, segHeaderLen}}
		var records int64
		for r.pos.off < sc.end {
			it, err := r.read(sc.end)
			if err != nil {
				t.Fatalf("read at %d: %v", r.pos.off, err)
			}
			if !r.pos.less(it.end) || it.end.off > sc.end {
				t.Fatalf("item at %v ends at %v (segment %d)", r.pos, it.end, sc.end)
			}
			if it.corrupt == nil {
				records++
			} else if int64(len(it.corrupt)) != it.end.off-r.pos.off {
				t.Fatalf("damaged run of %d bytes at %v–%v", len(it.corrupt), r.pos, it.end)
			}
			r.pos = it.end
		}
		if records != sc.records {
			t.Fatalf("recovery counts %d records, the reader found %d", sc.records, records)
		}
	})
}
