package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
)

func TestPublishSubjectHeaderAndEncoding(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	s := ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})
	ctx := context.Background()

	tests := []struct {
		name    string
		sector  mdtap.Sector
		org     string
		subject string
	}{
		{"plain", mdtap.SectorBank, "TESTBK0001", "mdtap.records.bank.TESTBK0001"},
		{"hostile org", mdtap.SectorCard, "A.B*>", "mdtap.records.card.A_B__"},
		{"no org", mdtap.SectorInsu, "", "mdtap.records.insu._"},
		{"unknown sector", mdtap.Sector("nonsense.>"), "X", "mdtap.records.unknown.X"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := testRecord(i)
			rec.Sector, rec.OrgCode = tt.sector, tt.org
			rec.API = "/v1/bank/accounts?a=1&b=<2>" // must stay unescaped
			mustPublish(t, p.Publisher, rec)
			flush(t, p.Publisher)

			m, err := s.GetLastMsgForSubject(ctx, tt.subject)
			if err != nil {
				t.Fatalf("GetLastMsgForSubject(%s): %v", tt.subject, err)
			}
			if got := m.Header.Get(jetstream.MsgIDHeader); got != rec.ID {
				t.Errorf("Nats-Msg-Id: got %q, want %q", got, rec.ID)
			}
			want, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			want = bytes.ReplaceAll(want, []byte(`\u0026`), []byte("&"))
			want = bytes.ReplaceAll(want, []byte(`\u003c`), []byte("<"))
			want = bytes.ReplaceAll(want, []byte(`\u003e`), []byte(">"))
			if !bytes.Equal(m.Data, want) {
				t.Errorf("data:\ngot  %s\nwant %s", m.Data, want)
			}
			if !bytes.Contains(m.Data, []byte(`"api":"/v1/bank/accounts?a=1&b=<2>"`)) {
				t.Errorf("data escapes HTML characters: %s", m.Data)
			}
		})
	}
}

func TestPublishDeduplicates(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})

	rec := testRecord(1)
	mustPublish(t, p.Publisher, rec)
	mustPublish(t, p.Publisher, rec)
	flush(t, p.Publisher)
	mustPublish(t, p.Publisher, rec) // after the first ack too
	flush(t, p.Publisher)
	if got := streamMsgs(t, js, DefaultStreamName); got != 1 {
		t.Fatalf("stream after publishing one record three times: got %d messages, want 1", got)
	}
	if n := p.fail.len(); n != 0 {
		t.Fatalf("OnFailure called %d times for duplicates, want 0", n)
	}
}

func TestPublishRefusesUnprotectedRecord(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})

	rec := testRecord(1)
	rec.Policy = ""
	err := p.Publish(context.Background(), rec)
	if !errors.Is(err, ErrUnprotected) || Reason(err) != ReasonUnprotected {
		t.Fatalf("Publish(raw record): got %v (reason %q), want ErrUnprotected", err, Reason(err))
	}
	if strings.Contains(err.Error(), "TESTBK0001") || strings.Contains(err.Error(), "mdtap:enc") {
		t.Errorf("error carries record data: %v", err)
	}
	flush(t, p.Publisher)
	if got := streamMsgs(t, js, DefaultStreamName); got != 0 {
		t.Errorf("stream: got %d messages, want 0", got)
	}
	if got := p.errorCount(t, ReasonUnprotected); got != 1 {
		t.Errorf("mdtap_publish_errors_total{reason=unprotected}: got %v, want 1", got)
	}
	if n := p.fail.len(); n != 0 {
		t.Errorf("OnFailure called %d times for a refused record, want 0", n)
	}
}

func TestPublishRefusesInvalidID(t *testing.T) {
	srv := natstest.Start(t)
	ensureStream(t, srv.JetStream(t), StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})
	for _, id := range []string{"", "not-a-ulid", "01JQ8ZZZZZZZZZZZ000000000\r\n"} {
		rec := testRecord(1)
		rec.ID = id
		if err := p.Publish(context.Background(), rec); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Publish(id %q): got %v, want ErrInvalidID", id, err)
		}
	}
}

func TestPublishTooLarge(t *testing.T) {
	const maxPayload = 4096
	srv := natstest.Start(t, natstest.WithMaxPayload(maxPayload))
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})

	small := testRecord(1) // about 2 KiB
	mustPublish(t, p.Publisher, small)

	big := testRecord(2)
	big.Response.Body = json.RawMessage(`"` + strings.Repeat("x", maxPayload) + `"`)
	err := p.Publish(context.Background(), big)
	if !errors.Is(err, ErrTooLarge) || Reason(err) != ReasonTooLarge {
		t.Fatalf("Publish(%d-byte body): got %v, want ErrTooLarge", maxPayload, err)
	}

	// Exactly at the limit, headers included, passes; one byte more does not.
	edge := testRecord(3)
	edge.Response.Body = json.RawMessage(`""`)
	data, _ := encode(edge)
	room := maxPayload - p.hdrLen - len(data)
	edge.Response.Body = json.RawMessage(`"` + strings.Repeat("y", room) + `"`)
	mustPublish(t, p.Publisher, edge)
	over := testRecord(4)
	over.Response.Body = json.RawMessage(`"` + strings.Repeat("y", room+1) + `"`)
	if err := p.Publish(context.Background(), over); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Publish(one byte over): got %v, want ErrTooLarge", err)
	}

	flush(t, p.Publisher)
	if got := streamMsgs(t, js, DefaultStreamName); got != 2 {
		t.Errorf("stream: got %d messages, want 2", got)
	}
	if n := p.fail.len(); n != 0 {
		_, errs := p.fail.snapshot()
		t.Errorf("OnFailure called %d times (%v), want 0: too-large records are refused synchronously", n, errs)
	}
	if got := p.errorCount(t, ReasonTooLarge); got != 2 {
		t.Errorf("too_large count: got %v, want 2", got)
	}
}

// A stream at its byte limit refuses new records (discard new): each refused
// record reaches OnFailure with its bytes and ErrStreamFull.
func TestPublishStreamFull(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{MaxBytes: 16 << 10})
	p := newTestPublisher(t, srv, PublisherOptions{})

	const n = 20 // about 40 KiB
	for i := range n {
		mustPublish(t, p.Publisher, testRecord(i))
	}
	flush(t, p.Publisher)

	stored := streamMsgs(t, js, DefaultStreamName)
	msgs, errs := p.fail.snapshot()
	if stored == 0 || len(msgs) == 0 || stored+uint64(len(msgs)) != n {
		t.Fatalf("stored %d, failed %d: want some of each, %d in all", stored, len(msgs), n)
	}
	for i, m := range msgs {
		if !errors.Is(errs[i], ErrStreamFull) || Reason(errs[i]) != ReasonStreamFull {
			t.Errorf("OnFailure(%s): got %v, want ErrStreamFull", m.ID, errs[i])
		}
		var rec mdtap.Record
		if err := json.Unmarshal(m.Data, &rec); err != nil || rec.ID != m.ID {
			t.Errorf("OnFailure(%s): data is not the record: %v", m.ID, err)
		}
		if m.Subject != "mdtap.records.bank.TESTBK0001" {
			t.Errorf("OnFailure(%s): subject %q", m.ID, m.Subject)
		}
	}
	if got := p.errorCount(t, ReasonStreamFull); got != float64(len(msgs)) {
		t.Errorf("stream_full count: got %v, want %d", got, len(msgs))
	}
}

func TestPublishNoStream(t *testing.T) {
	srv := natstest.Start(t) // no stream takes mdtap.records.>
	p := newTestPublisher(t, srv, PublisherOptions{})
	mustPublish(t, p.Publisher, testRecord(1))
	flush(t, p.Publisher)
	_, errs := p.fail.snapshot()
	if len(errs) != 1 || !errors.Is(errs[0], ErrNoStream) || Reason(errs[0]) != ReasonNoStream {
		t.Fatalf("OnFailure: got %v, want one ErrNoStream", errs)
	}
}

// An ack that never comes fails at the ack timeout: here a plain subscriber,
// not a stream, takes the subject and never answers.
func TestPublishAckTimeout(t *testing.T) {
	srv := natstest.Start(t)
	sub, err := srv.Conn(t).SubscribeSync(mdtap.StreamSubjects)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p := newTestPublisher(t, srv, PublisherOptions{AckTimeout: 200 * time.Millisecond})

	start := time.Now()
	mustPublish(t, p.Publisher, testRecord(1))
	flush(t, p.Publisher)
	_, errs := p.fail.snapshot()
	if len(errs) != 1 || !errors.Is(errs[0], ErrAckTimeout) || Reason(errs[0]) != ReasonTimeout {
		t.Fatalf("OnFailure: got %v, want one ErrAckTimeout", errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}
}

// Records whose subject another stream takes are refused, not stored there.
func TestPublishExpectedStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{Name: "OTHER"})
	p := newTestPublisher(t, srv, PublisherOptions{}) // expects MDTAP
	mustPublish(t, p.Publisher, testRecord(1))
	flush(t, p.Publisher)
	_, errs := p.fail.snapshot()
	if len(errs) != 1 || !errors.Is(errs[0], ErrRejected) {
		t.Fatalf("OnFailure: got %v, want one ErrRejected", errs)
	}
	if got := streamMsgs(t, js, "OTHER"); got != 0 {
		t.Errorf("stream OTHER: got %d messages, want 0", got)
	}
}

// NATS going away fails records quickly (never hangs), each to OnFailure;
// after the server returns the client reconnects and publishing works.
func TestPublishNATSDownAndBack(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{AckTimeout: 2 * time.Second})
	ctx := context.Background()

	// Publish continuously while the server stops under us.
	const n = 3000
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if i == n/3 {
				close(stopped)
			}
			if err := p.Publish(ctx, testRecord(i)); err != nil {
				t.Errorf("Publish(%d): %v", i, err)
				return
			}
		}
	})
	<-stopped
	srv.Stop()
	wg.Wait()
	flush(t, p.Publisher) // bounded: nothing waits beyond the ack timeout

	msgs, errs := p.fail.snapshot()
	if len(msgs) == 0 {
		t.Fatal("no failures reported while NATS was down")
	}
	for i, err := range errs {
		if !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrAckTimeout) && !errors.Is(err, ErrNoStream) {
			t.Errorf("OnFailure(%s): got %v, want disconnected or timeout", msgs[i].ID, err)
		}
	}
	if got := p.errorCount(t, ReasonDisconnected); got == 0 {
		t.Errorf("disconnected count: got 0")
	}
	t.Logf("while stopping: %d failed (disconnected %v, timeout %v)", len(msgs),
		p.errorCount(t, ReasonDisconnected), p.errorCount(t, ReasonTimeout))

	// While down, a publish fails at once.
	before := p.fail.len()
	start := time.Now()
	mustPublish(t, p.Publisher, testRecord(n))
	if p.fail.len() != before+1 || time.Since(start) > time.Second {
		t.Errorf("Publish while down: failures %d → %d in %s, want one more at once", before, p.fail.len(), time.Since(start))
	}

	srv.Restart()
	waitFor(t, 10*time.Second, "reconnect", func() error {
		if !p.nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	before = p.fail.len()
	mustPublish(t, p.Publisher, testRecord(n+1))
	flush(t, p.Publisher)
	if p.fail.len() != before {
		_, errs := p.fail.snapshot()
		t.Fatalf("Publish after restart failed: %v", errs[before:])
	}

	// Every record is accounted for: in the stream, or handed to OnFailure
	// (some both: stored, but the ack was lost with the connection).
	s, err := js.Stream(ctx, DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	msgs, _ = p.fail.snapshot()
	for _, m := range msgs {
		failed[m.ID] = true
	}
	stored := s.CachedInfo().State.Msgs
	if stored+uint64(len(failed)) < n+2 {
		t.Errorf("records unaccounted for: %d stored + %d failed < %d published", stored, len(failed), n+2)
	}
}

// Flush returns once every ack is in: the stream holds every record.
func TestFlushWaitsForAcks(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{})

	const n = 2000
	for i := range n {
		mustPublish(t, p.Publisher, testRecord(i))
	}
	flush(t, p.Publisher)
	if got := p.InFlight(); got != 0 {
		t.Errorf("InFlight after Flush: got %d, want 0", got)
	}
	if got := streamMsgs(t, js, DefaultStreamName); got != n {
		t.Errorf("stream after Flush: got %d messages, want %d", got, n)
	}
	if got := metricValue(t, p.reg, "mdtap_publish_latency_seconds", "", ""); got != n {
		t.Errorf("latency observations: got %v, want %d", got, n)
	}
	if got := metricValue(t, p.reg, "mdtap_publish_in_flight", "", ""); got != 0 {
		t.Errorf("in-flight gauge: got %v, want 0", got)
	}
}

func TestPublishConcurrent(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{})
	p := newTestPublisher(t, srv, PublisherOptions{MaxInFlight: 32})

	const workers, each = 8, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := p.Publish(context.Background(), testRecord(w*each+i)); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				if got := p.InFlight(); got > 32 {
					t.Errorf("InFlight: got %d, want at most 32", got)
				}
			}
		})
	}
	wg.Wait()
	flush(t, p.Publisher)
	if got := streamMsgs(t, js, DefaultStreamName); got != workers*each {
		t.Errorf("stream: got %d messages, want %d", got, workers*each)
	}
	if n := p.fail.len(); n != 0 {
		_, errs := p.fail.snapshot()
		t.Errorf("failures: %v", errs)
	}
}

// With MaxInFlight records unacknowledged, Publish blocks until ctx ends;
// Close then fails the records in flight to OnFailure.
func TestPublishBlocksAtMaxInFlightAndClose(t *testing.T) {
	srv := natstest.Start(t)
	sub, err := srv.Conn(t).SubscribeSync(mdtap.StreamSubjects) // takes the records, never acks
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p := newTestPublisher(t, srv, PublisherOptions{MaxInFlight: 2, AckTimeout: time.Minute})

	mustPublish(t, p.Publisher, testRecord(1))
	mustPublish(t, p.Publisher, testRecord(2))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Publish(ctx, testRecord(3)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with %d in flight: got %v, want context.DeadlineExceeded", p.InFlight(), err)
	}
	if got := p.InFlight(); got != 2 {
		t.Errorf("InFlight: got %d, want 2", got)
	}

	// A Publish blocked on a slot returns ErrClosed when Close comes.
	blocked := make(chan error, 1)
	go func() { blocked <- p.Publish(context.Background(), testRecord(4)) }()

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Errorf("blocked Publish after Close: got %v, want ErrClosed", err)
	}
	msgs, errs := p.fail.snapshot()
	if len(msgs) != 2 {
		t.Fatalf("OnFailure after Close: got %d calls, want 2", len(msgs))
	}
	for i, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("OnFailure(%s): got %v, want ErrClosed", msgs[i].ID, err)
		}
	}
	if err := p.Publish(context.Background(), testRecord(5)); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: got %v, want ErrClosed", err)
	}
	if got := p.InFlight(); got != 0 {
		t.Errorf("InFlight after Close: got %d, want 0", got)
	}
}

// A publisher can start before NATS: records fail at once to OnFailure, and
// publishing works once the connection comes up.
func TestPublisherStartsBeforeNATS(t *testing.T) {
	srv := natstest.Start(t)
	ensureStream(t, srv.JetStream(t), StreamConfig{})
	url := srv.URL()
	srv.Stop()

	nc, err := Connect(ConnOptions{URL: url, ReconnectWait: 20 * time.Millisecond, ReconnectJitter: time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatalf("Connect before the server: %v", err)
	}
	defer nc.Close()
	f := &failures{}
	p, err := NewPublisher(nc, PublisherOptions{OnFailure: f.add, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mustPublish(t, p, testRecord(1))
	if _, errs := f.snapshot(); len(errs) != 1 || !errors.Is(errs[0], ErrDisconnected) {
		t.Fatalf("OnFailure before NATS: got %v, want one ErrDisconnected", errs)
	}

	srv.Restart()
	waitFor(t, 10*time.Second, "connect", func() error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	mustPublish(t, p, testRecord(2))
	flush(t, p)
	if n := f.len(); n != 1 {
		_, errs := f.snapshot()
		t.Fatalf("failures after connecting: %v", errs)
	}
}

func TestReasonOfForeignErrors(t *testing.T) {
	tests := []struct {
		err  error
		want string
		is   error
	}{
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, ReasonStreamFull, ErrStreamFull},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, ReasonStreamFull, ErrStreamFull},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages per subject exceeded"}, ReasonStreamFull, ErrStreamFull},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "message too large"}, ReasonTooLarge, ErrTooLarge},
		{&jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}, ReasonStorageFull, ErrStreamFull},
		{&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, ReasonTooLarge, ErrTooLarge},
		{&jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, ReasonRejected, ErrRejected},
		{jetstream.ErrAsyncPublishTimeout, ReasonTimeout, ErrAckTimeout},
		{jetstream.ErrNoStreamResponse, ReasonNoStream, ErrNoStream},
		{nats.ErrDisconnected, ReasonDisconnected, ErrDisconnected},
		{nats.ErrReconnectBufExceeded, ReasonDisconnected, ErrDisconnected},
		{nats.ErrConnectionClosed, ReasonDisconnected, ErrDisconnected},
		{jetstream.ErrJetStreamPublisherClosed, ReasonClosed, ErrClosed},
		{nats.ErrMaxPayload, ReasonTooLarge, ErrTooLarge},
		{&net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, ReasonDisconnected, ErrDisconnected},
		{&net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}, ReasonDisconnected, ErrDisconnected},
		{errors.New("something else"), ReasonError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			pe := newPublishError(testID(1), "mdtap.records.bank._", tt.err)
			if pe.Reason != tt.want || Reason(pe) != tt.want {
				t.Errorf("reason: got %q, want %q", pe.Reason, tt.want)
			}
			if tt.is != nil && !errors.Is(pe, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", pe, tt.is)
			}
			if !errors.Is(pe, tt.err) {
				t.Errorf("the cause is not wrapped: %v", pe)
			}
			if err := contains(pe.Error(), testID(1), "mdtap.records.bank._"); err != nil {
				t.Error(err)
			}
		})
	}
	if Reason(nil) != "" || Reason(fmt.Errorf("x")) != ReasonError {
		t.Errorf("Reason(nil), Reason(other): got %q, %q", Reason(nil), Reason(fmt.Errorf("x")))
	}
}
