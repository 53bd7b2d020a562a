package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
)

// Publisher defaults.
const (
	// DefaultMaxInFlight bounds the records published and not yet
	// acknowledged. At the ~180k acks/s a local file-store server gives,
	// 4096 is ~20 ms of work: enough to keep the pipe full, small enough
	// that an outage strands few records in flight.
	DefaultMaxInFlight = 4096
	// DefaultAckTimeout is how long a record waits for its ack before it is
	// reported as failed (ErrAckTimeout). A lost connection is noticed at
	// once; this bounds the rarer silent loss of an ack.
	DefaultAckTimeout = 10 * time.Second
)

// Message is a record as published: its id, its subject and its encoded
// JSON. OnFailure receives it so that a spool can keep it and publish it
// again later, unchanged.
type Message struct {
	ID      string
	Subject string
	Data    []byte
}

// PublisherOptions configure a Publisher. Zero values take the defaults.
type PublisherOptions struct {
	// Stream is the stream the records must land in, default
	// DefaultStreamName. Each message carries it as Nats-Expected-Stream,
	// so a record is refused (ErrRejected) rather than stored in another
	// stream that happens to take its subject.
	Stream string
	// MaxInFlight bounds the records published and not yet acknowledged;
	// Publish blocks while it is reached. Default DefaultMaxInFlight.
	MaxInFlight int
	// AckTimeout bounds the wait for each ack; default DefaultAckTimeout.
	AckTimeout time.Duration
	// Logger receives one line per failed record (id, subject, reason; at
	// most 20 a second, the metrics count all) and nothing per success.
	Logger zerolog.Logger
	// Registerer registers the publisher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnFailure receives every record Publish accepted that could not be
	// published: its encoded bytes (the callee may keep them; they are
	// never reused) and a *PublishError whose sentinel says what to do:
	// ErrTooLarge — degrade the record and publish that; anything else —
	// keep the bytes and publish them again later (the Nats-Msg-Id makes a
	// replay harmless within the duplicate window).
	//
	// It is called once per failed record: on the caller's goroutine when
	// the failure is known at once (not connected), otherwise on a nats.go
	// goroutine that also delivers acks, so it must return quickly and must
	// not call Publish or Flush (a full in-flight window would deadlock).
	// Flush and Close wait for it to return. When nil, failed records are
	// counted, logged and dropped.
	OnFailure func(m Message, err error)
}

// Publisher publishes protected records to JetStream asynchronously, with a
// bounded number in flight. It is safe for concurrent use. Every accepted
// record ends acknowledged or passed to OnFailure; see Publish.
type Publisher struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	expect    []string // Nats-Expected-Stream value, shared read-only by all messages
	hdrLen    int      // size of the encoded headers of every message
	ackTime   time.Duration
	onFailure func(Message, error)
	log       zerolog.Logger // sampled
	m         *metrics

	sem  chan struct{} // one token per record in flight
	done chan struct{} // closed by Close

	mu          sync.Mutex
	pending     map[*nats.Msg]inflight
	outstanding int           // accepted and not yet resolved (OnFailure included)
	idle        chan struct{} // closed when outstanding drops to 0; nil unless Flush waits
	closed      bool
}

type inflight struct {
	id    string
	start time.Time
}

// NewPublisher returns a publisher on nc. It needs no server yet: records
// published while nc is not connected fail at once with ErrDisconnected
// (to OnFailure), so a sidecar can start before NATS.
func NewPublisher(nc *nats.Conn, o PublisherOptions) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("new publisher: nil connection")
	}
	if o.Stream == "" {
		o.Stream = DefaultStreamName
	}
	if err := validName(o.Stream); err != nil {
		return nil, fmt.Errorf("new publisher: stream: %w", err)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxInFlight < 0 {
		return nil, fmt.Errorf("new publisher: max in flight %d is negative", o.MaxInFlight)
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.AckTimeout < 0 {
		return nil, fmt.Errorf("new publisher: ack timeout %s is negative", o.AckTimeout)
	}
	p := &Publisher{
		nc:        nc,
		expect:    []string{o.Stream},
		hdrLen:    headerLen(o.Stream),
		ackTime:   o.AckTimeout,
		onFailure: o.OnFailure,
		log:       o.Logger.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
		sem:       make(chan struct{}, o.MaxInFlight),
		done:      make(chan struct{}),
		pending:   make(map[*nats.Msg]inflight, o.MaxInFlight),
	}
	js, err := jetstream.New(nc,
		// Our semaphore is the real bound and blocks honouring ctx;
		// nats.go's own stall (WithStallWait, 200 ms, then
		// ErrTooManyStalledMsgs) would ignore it. nats.go forgets a
		// message before calling our handlers, so it never holds more
		// than we do, but for a no-responders retry that fails; the
		// headroom keeps its stall out of reach even then.
		jetstream.WithPublishAsyncMaxPending(2*o.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			p.resolve(m, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			p.resolve(m, err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p.js = js
	m, err := newMetrics(o.Registerer, func() float64 { return float64(len(p.sem)) })
	if err != nil {
		return nil, fmt.Errorf("new publisher: metrics: %w", err)
	}
	p.m = m
	return p, nil
}

// headerLen is the size nats.go encodes the headers of every message to:
// "NATS/1.0\r\n", one "Key: value\r\n" line each, a final "\r\n". Record ids
// are ULIDs, 26 characters.
func headerLen(stream string) int {
	line := func(k, v string) int { return len(k) + 2 + len(v) + 2 }
	return len("NATS/1.0\r\n") + line(jetstream.MsgIDHeader, "01ARZ3NDEKTSV4RRFFQ69G5FAV") +
		line(jetstream.ExpectedStreamHeader, stream) + 2
}

// Publish encodes rec as JSON and publishes it on
// mdtap.RecordSubject(rec.Sector, rec.OrgCode) with Nats-Msg-Id = rec.ID,
// without waiting for the ack. It blocks, honouring ctx, while MaxInFlight
// records are in flight.
//
// It returns an error, and keeps nothing, when it does not take the record:
// ErrUnprotected (empty Policy: never published), ErrInvalidID, ErrTooLarge
// (over the server's max payload: degrade the record and publish that),
// ErrClosed, an encoding error, or ctx's error. Otherwise it returns nil and
// the record's outcome comes later: acknowledged, or passed to OnFailure,
// counted in mdtap_publish_errors_total and logged.
func (p *Publisher) Publish(ctx context.Context, rec *mdtap.Record) error {
	// An id that is not a ULID is not quoted in errors and logs: it is not
	// a trusted value.
	validID := mdtap.ValidRecordID(rec.ID)
	if rec.Policy == "" {
		id := ""
		if validID {
			id = rec.ID
		}
		return p.refuse(refusal(id, "", ReasonUnprotected, ErrUnprotected, nil))
	}
	if !validID {
		return p.refuse(refusal("", "", ReasonInvalidID, ErrInvalidID, nil))
	}
	subject := mdtap.RecordSubject(rec.Sector, rec.OrgCode)
	data, err := encode(rec)
	if err != nil {
		return p.refuse(refusal(rec.ID, subject, ReasonEncode, errEncode, err))
	}
	return p.publish(ctx, Message{ID: rec.ID, Subject: subject, Data: data})
}

// publish publishes an encoded record: a new one from Publish, or one kept
// by a spool.
func (p *Publisher) publish(ctx context.Context, m Message) error {
	// The server refuses a message over its max payload, headers included;
	// nats.go reports 0 until the first connection.
	if max := p.nc.MaxPayload(); max > 0 && int64(len(m.Data)) > max-int64(p.hdrLen) {
		return p.refuse(refusal(m.ID, m.Subject, ReasonTooLarge, ErrTooLarge,
			fmt.Errorf("%d bytes with headers, server max payload %d", len(m.Data)+p.hdrLen, max)))
	}
	msg := &nats.Msg{
		Subject: m.Subject,
		Data:    m.Data,
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{m.ID},
			jetstream.ExpectedStreamHeader: p.expect,
		},
	}

	// Take a slot.
	select {
	case p.sem <- struct{}{}:
	default:
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("publish record %s: waiting for a free slot: %w", m.ID, ctx.Err())
		case <-p.done:
			return p.refuse(refusal(m.ID, m.Subject, ReasonClosed, ErrClosed, nil))
		}
	}
	start := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return p.refuse(refusal(m.ID, m.Subject, ReasonClosed, ErrClosed, nil))
	}
	// Registered before publishing: the ack may come before
	// PublishMsgAsync returns.
	p.pending[msg] = inflight{id: m.ID, start: start}
	p.outstanding++
	p.mu.Unlock()

	if !p.nc.IsConnected() {
		// Fail now rather than queue in nats.go's reconnect buffer and hold
		// a slot until the ack timeout: the spool is the place to wait.
		p.resolve(msg, ErrDisconnected)
		return nil
	}
	for {
		_, err := p.js.PublishMsgAsync(msg)
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// Not reachable while our semaphore holds (see NewPublisher);
			// nats.go registered nothing, so trying again is safe.
			if ctx.Err() == nil {
				continue
			}
			p.forget(msg)
			return fmt.Errorf("publish record %s: %w", m.ID, ctx.Err())
		}
		// nats.go forgot the message and calls no handler.
		p.resolve(msg, err)
		return nil
	}
}

// refuse counts and logs a record Publish does not take, and returns err.
func (p *Publisher) refuse(err *PublishError) error {
	p.m.fail(err.Reason)
	ev := p.log.Warn()
	if err.Reason == ReasonUnprotected {
		ev = p.log.Error() // a bug upstream: a raw record reached the publisher
	}
	ev.Str("id", err.ID).Str("subject", err.Subject).Str("reason", err.Reason).Err(err.Err).Msg("record not published")
	return err
}

// resolve ends a record's flight: err nil means acknowledged. nats.go may
// report one message twice (a failed no-responders retry, then its ack
// timeout); the second report finds nothing and is ignored.
func (p *Publisher) resolve(msg *nats.Msg, err error) {
	p.mu.Lock()
	f, ok := p.pending[msg]
	if !ok {
		p.mu.Unlock()
		return
	}
	delete(p.pending, msg)
	// Free the slot before settling, so that InFlight is 0 when Flush
	// returns. We hold a token: the receive never blocks.
	<-p.sem
	if err == nil {
		p.m.acked(time.Since(f.start))
		p.settleLocked()
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()

	pe := newPublishError(f.id, msg.Subject, err)
	p.m.fail(pe.Reason)
	p.log.Warn().Str("id", f.id).Str("subject", msg.Subject).Str("reason", pe.Reason).Err(err).Msg("publish failed")
	if p.onFailure != nil {
		p.onFailure(Message{ID: f.id, Subject: msg.Subject, Data: msg.Data}, pe)
	}
	p.mu.Lock()
	p.settleLocked()
	p.mu.Unlock()
}

// forget drops a registered record that was never sent.
func (p *Publisher) forget(msg *nats.Msg) {
	p.mu.Lock()
	if _, ok := p.pending[msg]; ok {
		delete(p.pending, msg)
		<-p.sem
		p.settleLocked()
	}
	p.mu.Unlock()
}

func (p *Publisher) settleLocked() {
	p.outstanding--
	if p.outstanding == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// InFlight returns the number of records published and not yet
// acknowledged or failed.
func (p *Publisher) InFlight() int { return len(p.sem) }

// Flush waits until no record is in flight: each acknowledged, or failed
// and returned from OnFailure. With Publish still being called it returns
// at the first moment nothing is in flight; stop publishing first to drain.
// It returns ctx's error if ctx ends first.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	if p.outstanding == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush: %d records in flight: %w", p.InFlight(), ctx.Err())
	}
}

// Close stops the publisher: Publish returns ErrClosed from now on, and
// records still in flight fail with ErrClosed (to OnFailure). Flush first to
// wait for their acks. Close returns once every accepted record is resolved;
// it does not close the connection.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()

	// Fails what nats.go holds, through our error handler.
	p.js.CleanupPublisher()
	// A Publish that registered just before Close may still be sending;
	// its ack or its ack timeout resolves it.
	ctx, cancel := context.WithTimeout(context.Background(), p.ackTime+time.Second)
	defer cancel()
	err := p.Flush(ctx)
	p.js.CleanupPublisher() // drop the reply subscription such a Publish re-created
	if err != nil {
		return fmt.Errorf("close publisher: %w", err)
	}
	return nil
}

// encoder is a reusable JSON encoder. Only its scratch buffer is reused: the
// bytes handed to nats.go are a fresh copy, since nats.go keeps a message
// until its ack (to retry it on no responders, and for the handlers).
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxPooledBuffer keeps a rare huge record from pinning its buffer.
const maxPooledBuffer = 64 << 10

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false) // records carry URLs and messages with & < >
	return e
}}

// encode returns rec's JSON, as json.Marshal would but without escaping
// HTML characters and without the encoder's trailing newline.
func encode(rec *mdtap.Record) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.buf.Reset()
	err := e.enc.Encode(rec)
	var out []byte
	if err == nil {
		b := e.buf.Bytes()
		out = bytes.Clone(b[:len(b)-1])
	}
	if e.buf.Cap() <= maxPooledBuffer {
		encoders.Put(e)
	}
	return out, err
}
