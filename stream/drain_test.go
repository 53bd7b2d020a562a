package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
)

// newSpoolPublisher publishes on nc with s as its spool; its metrics go to
// s's registry. It is closed in cleanup, before the spool.
func newSpoolPublisher(t *testing.T, nc *nats.Conn, s *testSpool, o PublisherOptions) *Publisher {
	t.Helper()
	o.Spool = s.Spool
	o.Registerer = s.reg
	o.Logger = testLogger(t)
	p, err := NewPublisher(nc, o)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func waitDisconnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	waitFor(t, 5*time.Second, "disconnect", func() error {
		if nc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
}

// waitDrained waits until the stream holds want records and the spool is
// empty on disk.
func waitDrained(t *testing.T, js jetstream.JetStream, s *Spool, want uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, "spool drained", func() error {
		st := s.Stats()
		if got := streamMsgs(t, js, DefaultStreamName); got != want || st.Records != 0 || st.Bytes != 0 {
			return fmt.Errorf("stream holds %d of %d records; spool %+v", got, want, st)
		}
		return nil
	})
}

// NATS stops and comes back while records are being published: every
// record ends in the stream exactly once, through the spool for those
// published while it was away.
func TestSpoolNATSDownAndBackUnderLoad(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	s := openTestSpool(t, SpoolOptions{Fsync: FsyncBatch, FsyncInterval: 10 * time.Millisecond})
	nc := srv.Conn(t)
	p := newSpoolPublisher(t, nc, s, PublisherOptions{AckTimeout: 2 * time.Second})

	const n = 3000
	stop, restart := make(chan struct{}), make(chan struct{})
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			switch i {
			case n / 3:
				close(stop)
			case n / 2:
				<-stopped // some records certainly published while NATS is away
			case 2 * n / 3:
				close(restart)
			}
			if err := p.Publish(context.Background(), testRecord(i)); err != nil {
				t.Errorf("Publish(%d): %v", i, err)
				return
			}
		}
	})
	<-stop
	srv.Stop()
	waitDisconnected(t, nc)
	close(stopped)
	<-restart
	srv.Restart()
	wg.Wait()
	flush(t, p)

	waitDrained(t, js, s.Spool, n)
	spooled := s.metric(t, "mdtap_spool_appends_total", "reason", ReasonDisconnected)
	drained := s.metric(t, "mdtap_spool_drained_total", "", "")
	if spooled < n/6 || drained < spooled {
		t.Errorf("spooled %v (disconnected), drained %v: want at least %d spooled, all drained", spooled, drained, n/6)
	}
	t.Logf("%d records: %v spooled while NATS was away, %v drained", n, spooled, drained)
	if got := s.metric(t, "mdtap_spool_dropped_total", "reason", dropSpoolFull); got != 0 {
		t.Errorf("dropped: %v", got)
	}
}

// A full stream (discard new) refuses records: they go to the spool, new
// records queue behind them, and all drain once the archivers make room.
func TestSpoolStreamFullThenRoom(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	str := ensureStream(t, js, StreamConfig{MaxBytes: 16 << 10})
	s := openTestSpool(t, SpoolOptions{})
	p := newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{})

	const n = 60 // about 120 KiB
	for i := range n {
		mustPublish(t, p, testRecord(i))
	}
	flush(t, p)
	stored, spooled := streamMsgs(t, js, DefaultStreamName), s.Stats().Records
	if stored == 0 || spooled == 0 || stored+uint64(spooled) != n {
		t.Fatalf("stored %d, spooled %d: want some of each, %d in all", stored, spooled, n)
	}
	if got := s.metric(t, "mdtap_spool_appends_total", "reason", ReasonStreamFull); got != float64(spooled) {
		t.Errorf("appends{stream_full}: got %v, want %d", got, spooled)
	}
	// The drain finds the stream full: new records go straight to the spool.
	waitFor(t, 5*time.Second, "spool first", func() error {
		if p.spoolReason() != ReasonStreamFull {
			return fmt.Errorf("spool reason %q", p.spoolReason())
		}
		return nil
	})
	errsBefore := metricValue(t, s.reg, "mdtap_publish_errors_total", "reason", ReasonStreamFull)
	mustPublish(t, p, testRecord(n))
	flush(t, p)
	if got := s.Stats().Records; got != spooled+1 {
		t.Errorf("spool after one more record: got %d, want %d", got, spooled+1)
	}
	if got := metricValue(t, s.reg, "mdtap_publish_errors_total", "reason", ReasonStreamFull); got != errsBefore {
		t.Logf("publish errors rose %v → %v: a drain probe", errsBefore, got)
	}

	// An archiver takes and acknowledges records; work-queue retention
	// deletes them, making room.
	cons, err := str.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{
		Durable: "archive", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	waitFor(t, 30*time.Second, "every record archived", func() error {
		batch, err := cons.Fetch(20, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			seen[m.Headers().Get(jetstream.MsgIDHeader)]++
			if err := m.DoubleAck(context.Background()); err != nil {
				return err
			}
		}
		if st := s.Stats(); len(seen) < n+1 || st.Records != 0 || st.Bytes != 0 {
			return fmt.Errorf("archived %d of %d; spool %+v", len(seen), n+1, st)
		}
		return nil
	})
	for i := range n + 1 {
		if c := seen[testID(i)]; c != 1 {
			t.Errorf("record %d archived %d times", i, c)
		}
	}
	if p.spoolReason() != "" {
		t.Errorf("still spooling first (%q) after the drain", p.spoolReason())
	}
}

// Fail-open with NATS away: full records fill the regular part, then
// Publish refuses them with ErrSpoolFull and the caller's degraded records
// fill the reserved part, and then those are dropped, counted. Raw records
// never reach the spool. When NATS returns, everything kept drains and the
// spool accepts again.
func TestSpoolFullFailOpen(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	nc := srv.Conn(t)
	srv.Stop()
	waitDisconnected(t, nc)
	s := openTestSpool(t, SpoolOptions{MaxBytes: 64 << 10, ReservedBytes: 16 << 10})
	p := newSpoolPublisher(t, nc, s, PublisherOptions{})
	ctx := context.Background()

	raw := testRecord(0)
	raw.Policy = ""
	if err := p.Publish(ctx, raw); !errors.Is(err, ErrUnprotected) {
		t.Fatalf("Publish(raw): got %v, want ErrUnprotected", err)
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("a raw record reached the spool: %+v", st)
	}

	kept, i := 0, 1
	for ; ; i++ {
		err := p.Publish(ctx, testRecord(i))
		if errors.Is(err, ErrSpoolFull) {
			if Reason(err) != ReasonSpoolFull {
				t.Errorf("reason: got %q, want %q", Reason(err), ReasonSpoolFull)
			}
			break
		}
		if err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
		kept++
	}
	if s.Accepting() {
		t.Error("Accepting with the regular part full")
	}
	full := kept
	// What the capture queue does on ErrSpoolFull: degrade, publish that.
	for ; ; i++ {
		rec := testRecord(i)
		rec.Degrade(mdtap.DegradeSpoolFull)
		err := p.Publish(ctx, rec)
		if errors.Is(err, ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatalf("Publish(degraded %d): %v", i, err)
		}
		kept++
	}
	if kept-full < 10 {
		t.Errorf("the reserved part took %d degraded records, want more", kept-full)
	}
	if got := s.metric(t, "mdtap_spool_dropped_total", "reason", dropSpoolFull); got != 1 {
		t.Errorf("dropped{spool_full}: got %v, want 1", got)
	}
	if got := metricValue(t, s.reg, "mdtap_publish_errors_total", "reason", ReasonSpoolFull); got != 2 {
		t.Errorf("publish errors{spool_full}: got %v, want 2", got)
	}
	t.Logf("kept %d full and %d degraded records in a 64 KiB spool", full, kept-full)

	srv.Restart()
	waitDrained(t, js, s.Spool, uint64(kept))
	if !s.Accepting() {
		t.Error("not Accepting once the spool drained")
	}
}

// SIGTERM: Flush and Close leave every accepted record acknowledged or in the
// spool, fsynced — also records whose ack is still outstanding.
func TestSpoolFlushAndCloseKeepEverything(t *testing.T) {
	t.Run("nats away", func(t *testing.T) {
		srv := natstest.Start(t)
		ensureStream(t, srv.JetStream(t), StreamConfig{})
		nc := srv.Conn(t)
		srv.Stop()
		waitDisconnected(t, nc)
		dir := filepath.Join(t.TempDir(), "spool")
		rec := newSyncRecorder()
		s := openTestSpool(t, SpoolOptions{Dir: dir, Fsync: FsyncNone, syncFile: rec.sync})
		p := newSpoolPublisher(t, nc, s, PublisherOptions{})
		const n = 500
		for i := range n {
			mustPublish(t, p, testRecord(i))
		}
		flush(t, p)
		// Even with policy none, Flush fsyncs.
		if items := readAll(t, s.Spool); len(items) != n || !rec.covered(items[n-1].end) {
			t.Fatalf("after Flush: %d records in the spool, last fsynced %v", len(items), len(items) == n && rec.covered(items[n-1].end))
		}
		closeAndReopen(t, p, s, n)
	})
	t.Run("acks outstanding", func(t *testing.T) {
		srv := natstest.Start(t)
		// A plain subscriber takes the records and never answers: every
		// ack stays outstanding.
		sub, err := srv.Conn(t).SubscribeSync(mdtap.StreamSubjects)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		s := openTestSpool(t, SpoolOptions{})
		p := newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{AckTimeout: time.Minute})
		const n = 200
		for i := range n / 2 {
			mustPublish(t, p, testRecord(i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := p.Flush(ctx); err != nil {
			t.Fatalf("Flush at its deadline: got %v, want nil (records spooled)", err)
		}
		if got := s.metric(t, "mdtap_spool_appends_total", "reason", reasonFlush); got != n/2 {
			t.Errorf("appends{flush}: got %v, want %d", got, n/2)
		}
		// These are in flight when Close comes.
		for i := n / 2; i < n; i++ {
			mustPublish(t, p, testRecord(i))
		}
		closeAndReopen(t, p, s, n)
		if got := s.metric(t, "mdtap_spool_appends_total", "reason", ReasonClosed); got != n/2 {
			t.Errorf("appends{closed}: got %v, want %d", got, n/2)
		}
	})
}

// closeAndReopen closes p and s, opens the spool again and checks it holds
// records 0 … n-1, once each.
func closeAndReopen(t *testing.T, p *Publisher, s *testSpool, n int) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("Close publisher: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close spool: %v", err)
	}
	s2 := openTestSpool(t, SpoolOptions{Dir: s.dir})
	items := readAll(t, s2.Spool)
	seen := map[string]bool{}
	for _, it := range items {
		if it.corrupt != nil || seen[it.fr.m.ID] {
			t.Fatalf("reopened spool: damaged or repeated item %s", it.fr.m.ID)
		}
		seen[it.fr.m.ID] = true
	}
	for i := range n {
		if !seen[testID(i)] {
			t.Errorf("record %d not in the spool after Close", i)
		}
	}
	if len(items) != n {
		t.Errorf("reopened spool: %d records, want %d", len(items), n)
	}
}

func readDeadLetterIndex(t *testing.T, dir string) []deadLetterEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, deadLetterDir, deadLetterIndex))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadLetterEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e deadLetterEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("index line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// A record damaged on disk goes to the dead-letter directory; the records
// behind it drain.
func TestDrainDeadLettersDamagedRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, SpoolOptions{Dir: dir})
	var ends []spoolPos
	for i := range 10 {
		end, err := s.appendAt(recordMsg(t, i), false, ReasonDisconnected)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, end)
	}
	s.Close()
	path := filepath.Join(dir, segName(ends[4].seq))
	b, _ := os.ReadFile(path)
	b[ends[4].off+frameHeaderLen+50] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	s = openTestSpool(t, SpoolOptions{Dir: dir})
	newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{})
	waitDrained(t, js, s.Spool, 9)
	if got := s.metric(t, "mdtap_spool_deadletter_total", "reason", reasonCorrupt); got != 1 {
		t.Errorf("deadletter{corrupt}: got %v, want 1", got)
	}
	idx := readDeadLetterIndex(t, dir)
	if len(idx) != 1 || idx[0].Reason != reasonCorrupt || idx[0].Bytes != ends[5].off-ends[4].off || idx[0].Segment != segName(ends[4].seq) {
		t.Fatalf("dead-letter index: %+v", idx)
	}
	got, err := os.ReadFile(filepath.Join(dir, deadLetterDir, idx[0].File))
	if err != nil || string(got) != string(b[ends[4].off:ends[5].off]) {
		t.Errorf("dead-letter file %s does not hold the damaged bytes (%v)", idx[0].File, err)
	}
	for _, name := range []string{idx[0].File, deadLetterIndex} {
		if fi, err := os.Stat(filepath.Join(dir, deadLetterDir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", name, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, deadLetterDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dead-letter dir: mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

// A spooled record the server will no longer take (its max payload shrank)
// goes to the dead-letter directory whole, its metadata-only form to the
// stream, and the records behind it drain.
func TestDrainDeadLettersTooLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openTestSpool(t, SpoolOptions{Dir: dir})
	big := testRecord(1)
	big.Response.Body = json.RawMessage(`"` + strings.Repeat("x", 8<<10) + `"`)
	data, _ := encode(big)
	bigMsg := Message{ID: big.ID, Subject: mdtap.RecordSubject(big.Sector, big.OrgCode), Data: data}
	mustAppend(t, s.Spool, recordMsg(t, 0), false)
	mustAppend(t, s.Spool, bigMsg, false)
	mustAppend(t, s.Spool, recordMsg(t, 2), false)
	s.Close()

	srv := natstest.Start(t, natstest.WithMaxPayload(4096))
	js := srv.JetStream(t)
	str := ensureStream(t, js, StreamConfig{})
	s = openTestSpool(t, SpoolOptions{Dir: dir})
	newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{})
	waitDrained(t, js, s.Spool, 3)

	var degraded *mdtap.Record
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := str.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) == big.ID {
			degraded = new(mdtap.Record)
			if err := json.Unmarshal(m.Data, degraded); err != nil {
				t.Fatal(err)
			}
		}
	}
	if degraded == nil || degraded.Degraded != mdtap.DegradeTooLarge || degraded.Response.Body != nil {
		t.Fatalf("stream: record %s not there in its degraded form: %+v", big.ID, degraded)
	}
	idx := readDeadLetterIndex(t, dir)
	if len(idx) != 1 || idx[0].Reason != ReasonTooLarge || idx[0].ID != big.ID {
		t.Fatalf("dead-letter index: %+v", idx)
	}
	b, err := os.ReadFile(filepath.Join(dir, deadLetterDir, idx[0].File))
	if err != nil {
		t.Fatal(err)
	}
	fr, _, err := parseFrame(b[idx[0].Offset:])
	if err != nil || fr.m.ID != big.ID || string(fr.m.Data) != string(data) {
		t.Errorf("dead-letter file does not hold the whole record: %v", err)
	}
	if got := s.metric(t, "mdtap_spool_deadletter_total", "reason", ReasonTooLarge); got != 1 {
		t.Errorf("deadletter{too_large}: got %v, want 1", got)
	}
}

// A record the stream refuses for good (another stream holds the subjects:
// Nats-Expected-Stream fails, a 4xx) goes to the dead-letter directory
// rather than round the spool for ever.
func TestSpoolRejectedToDeadLetter(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{Name: "OTHER"})
	s := openTestSpool(t, SpoolOptions{})
	p := newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{}) // expects MDTAP
	mustPublish(t, p, testRecord(1))
	flush(t, p)
	if got := s.metric(t, "mdtap_spool_deadletter_total", "reason", ReasonRejected); got != 1 {
		t.Errorf("deadletter{rejected}: got %v, want 1", got)
	}
	if st := s.Stats(); st.Records != 0 {
		t.Errorf("spool: %+v, want empty", st)
	}
	if idx := readDeadLetterIndex(t, s.dir); len(idx) != 1 || idx[0].ID != testID(1) {
		t.Errorf("dead-letter index: %+v", idx)
	}
}

func TestPublisherSpoolOptions(t *testing.T) {
	srv := natstest.Start(t)
	s := openTestSpool(t, SpoolOptions{})
	if _, err := NewPublisher(srv.Conn(t), PublisherOptions{Spool: s.Spool, OnFailure: func(Message, error) {}}); err == nil {
		t.Error("NewPublisher with a spool and OnFailure: got nil error")
	}
	p := newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{})
	if _, err := NewPublisher(srv.Conn(t), PublisherOptions{Spool: s.Spool}); err == nil {
		t.Error("a second publisher on one spool: got nil error")
	}
	p.Close()
	p2, err := NewPublisher(srv.Conn(t), PublisherOptions{Spool: s.Spool, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewPublisher once the first publisher closed: %v", err)
	}
	p2.Close()
}
