package stream

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// counted, logged and dropped. Not with Spool, which takes them.
	OnFailure func(m Message, err error)

	// Spool, when set, keeps every accepted record that is not
	// acknowledged, and the publisher replays it in order once JetStream
	// takes records again (the drain). See Publish, Flush and Close; the
	// spool serves this publisher only. Close the publisher before the
	// spool.
	Spool *Spool
	// DrainMaxInFlight bounds the spooled records replayed and not yet
	// acknowledged. They share MaxInFlight with new records, which keep
	// the rest. Default MaxInFlight/4.
	DrainMaxInFlight int
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

	sem  chan struct{} // one token per record in flight (or being spooled, or replayed)
	done chan struct{} // closed by Close

	spool *Spool
	drain *drainer // nil without a spool
	// spoolFirst, when set, is why new records go straight to the spool
	// while NATS is connected: the drain found JetStream refusing
	// (stream_full, …), so new records queue behind the spooled ones
	// rather than race them for room. The drain clears it on its first
	// acknowledgement.
	spoolFirst atomic.Pointer[string]

	mu          sync.Mutex
	pending     map[*nats.Msg]inflight
	outstanding int           // accepted and not yet resolved (OnFailure included)
	idle        chan struct{} // closed when outstanding drops to 0; nil unless Flush waits
	closed      bool
}

type inflight struct {
	id       string
	start    time.Time
	degraded bool
	drain    *drainItem // a spooled record being replayed; nil for a new one
}

// NewPublisher returns a publisher on nc. It needs no server yet: records
// published while nc is not connected fail at once with ErrDisconnected
// (to OnFailure), or go to the spool, so a sidecar can start before NATS.
// With a spool it starts the drain, which Close stops.
func NewPublisher(nc *nats.Conn, o PublisherOptions) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("new publisher: nil connection")
	}
	if o.Spool != nil && o.OnFailure != nil {
		return nil, errors.New("new publisher: a spool and OnFailure exclude each other")
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
	if o.DrainMaxInFlight == 0 {
		o.DrainMaxInFlight = max(o.MaxInFlight/4, 1)
	}
	if o.DrainMaxInFlight < 0 || o.DrainMaxInFlight > o.MaxInFlight {
		return nil, fmt.Errorf("new publisher: drain max in flight %d: want 1 to max in flight %d", o.DrainMaxInFlight, o.MaxInFlight)
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
		spool:     o.Spool,
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
	if p.spool != nil {
		if err := p.spool.attach(); err != nil {
			return nil, fmt.Errorf("new publisher: %w", err)
		}
		p.drain = newDrainer(p, o.DrainMaxInFlight, o.Logger)
		go p.drain.run()
	}
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
// ErrSpoolFull (see below), ErrClosed, an encoding error, or ctx's error.
// Otherwise it returns nil and the record's outcome comes later:
// acknowledged, or passed to OnFailure, counted in
// mdtap_publish_errors_total and logged.
//
// With a spool, a record that is not acknowledged goes to the spool
// instead of OnFailure (one that can never be published, to its
// dead-letter directory). While NATS is not connected, or while the drain
// finds JetStream refusing records, Publish writes the record to the spool
// without trying NATS; if the spool has no room it returns ErrSpoolFull:
// degrade the record (mdtap.DegradeSpoolFull) and publish that, since
// degraded records may use the spool's reserved part. Only when nothing can
// take a degraded record is it dropped (mdtap_spool_dropped_total) and
// ErrSpoolFull returned for it too.
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
	return p.publish(ctx, Message{ID: rec.ID, Subject: subject, Data: data}, rec.Degraded != "")
}

// publish publishes an encoded record.
func (p *Publisher) publish(ctx context.Context, m Message, degraded bool) error {
	// The server refuses a message over its max payload, headers included;
	// nats.go reports 0 until the first connection.
	if max := p.nc.MaxPayload(); max > 0 && int64(len(m.Data)) > max-int64(p.hdrLen) {
		return p.refuse(refusal(m.ID, m.Subject, ReasonTooLarge, ErrTooLarge,
			fmt.Errorf("%d bytes with headers, server max payload %d", len(m.Data)+p.hdrLen, max)))
	}
	msg := p.natsMsg(m)

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
	spoolReason := ""
	if p.spool != nil {
		spoolReason = p.spoolReason()
	}
	f := inflight{id: m.ID, start: start, degraded: degraded}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return p.refuse(refusal(m.ID, m.Subject, ReasonClosed, ErrClosed, nil))
	}
	p.outstanding++
	if spoolReason == "" {
		// Registered before publishing: the ack may come before
		// PublishMsgAsync returns.
		p.pending[msg] = f
	}
	p.mu.Unlock()

	if spoolReason != "" {
		err := p.spool.put(&job{kind: jobRecord, m: m, degraded: degraded, reason: spoolReason, reserve: true, done: p.spooled})
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrSpoolFull) || !degraded || !p.nc.IsConnected() {
			p.release()
			return p.spoolRefusal(m, degraded, err)
		}
		// A degraded record the spool has no room for, while NATS is
		// connected and only the stream refused lately: try NATS.
		p.mu.Lock()
		p.pending[msg] = f
		p.mu.Unlock()
	}

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

// natsMsg is the message that carries m.
func (p *Publisher) natsMsg(m Message) *nats.Msg {
	return &nats.Msg{
		Subject: m.Subject,
		Data:    m.Data,
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{m.ID},
			jetstream.ExpectedStreamHeader: p.expect,
		},
	}
}

// spoolReason says why a new record should go straight to the spool, or ""
// to publish it.
func (p *Publisher) spoolReason() string {
	if !p.nc.IsConnected() {
		return ReasonDisconnected
	}
	if r := p.spoolFirst.Load(); r != nil {
		return *r
	}
	return ""
}

// spoolRefusal counts and reports a record neither NATS nor the spool took
// at Publish. A full record is refused with ErrSpoolFull for the caller to
// degrade; a degraded one is dropped.
func (p *Publisher) spoolRefusal(m Message, degraded bool, err error) error {
	switch {
	case errors.Is(err, ErrSpoolFull) && degraded:
		p.spool.m.drop(dropSpoolFull)
		p.log.Error().Str("id", m.ID).Str("subject", m.Subject).
			Msg("record dropped: neither NATS nor the spool can take even its metadata")
	case errors.Is(err, ErrSpoolClosed):
		p.spool.m.drop(dropClosed)
		return p.refuse(refusal(m.ID, m.Subject, ReasonClosed, ErrClosed, err))
	case !errors.Is(err, ErrSpoolFull):
		return p.refuse(refusal(m.ID, m.Subject, ReasonError, errUnclassified, err))
	}
	return p.refuse(refusal(m.ID, m.Subject, ReasonSpoolFull, ErrSpoolFull, nil))
}

// spooled completes a record the spool took (or failed to: it counted
// that), freeing its slot.
func (p *Publisher) spooled(error) { p.release() }

// release frees the slot of an accepted record and settles it.
func (p *Publisher) release() {
	<-p.sem
	p.mu.Lock()
	p.settleLocked()
	p.mu.Unlock()
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
	if f.drain != nil {
		p.mu.Unlock()
		<-p.sem
		p.drain.resolved(f, msg, err)
		return
	}
	if err == nil {
		// Free the slot before settling, so that InFlight is 0 when Flush
		// returns. We hold a token: the receive never blocks.
		<-p.sem
		p.m.acked(time.Since(f.start))
		p.settleLocked()
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()

	pe := newPublishError(f.id, msg.Subject, err)
	p.m.fail(pe.Reason)
	p.log.Warn().Str("id", f.id).Str("subject", msg.Subject).Str("reason", pe.Reason).Err(err).Msg("publish failed")
	if p.spool != nil {
		// The record keeps its slot until the spool has it.
		p.keep(Message{ID: f.id, Subject: msg.Subject, Data: msg.Data}, f.degraded, pe.Reason, permanent(pe), p.spooled)
		return
	}
	<-p.sem
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
//
// With a spool, Flush ends with every accepted record acknowledged or in the
// spool, fsynced whatever the policy: records whose ack has not come when
// ctx ends are written to the spool then (mdtap_spool_appends_total
// {reason="flush"}; they may also have been stored, and replay as
// duplicates that Nats-Msg-Id and the audit remove). It returns an error
// only when the spool could not take them all. Spooled records drain on
// their own; Flush does not wait for that.
func (p *Publisher) Flush(ctx context.Context) error {
	err := p.waitIdle(ctx)
	if p.spool == nil {
		return err
	}
	if err != nil {
		n := p.spoolPending(reasonFlush)
		// The spool's disk, not NATS, bounds this wait.
		sctx, cancel := context.WithTimeout(context.Background(), spoolFlushTimeout)
		defer cancel()
		if err := p.waitIdle(sctx); err != nil {
			return fmt.Errorf("flush: records neither acknowledged nor spooled: %w", err)
		}
		if n > 0 {
			p.log.Info().Int("records", n).Msg("flush: records still waiting for their ack were spooled")
		}
	}
	if err := p.spool.Sync(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// spoolFlushTimeout bounds Flush's wait for the spool once ctx has ended.
const spoolFlushTimeout = 10 * time.Second

// waitIdle waits until no accepted record is outstanding, or ctx ends.
func (p *Publisher) waitIdle(ctx context.Context) error {
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
// records still in flight fail with ErrClosed (to OnFailure, or to the
// spool). Flush first to wait for their acks. Close returns once every
// accepted record is resolved; with a spool, once it is acknowledged or in
// the spool, fsynced. It stops the drain (spooled records stay in the spool
// for the next run) and closes neither the connection nor the spool.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()

	if p.drain != nil {
		p.drain.stopAndWait()
		defer p.spool.detach()
	}

	// Fails what nats.go holds, through our error handler.
	p.js.CleanupPublisher()
	// A Publish that registered just before Close may still be sending;
	// its ack or its ack timeout resolves it.
	wait := p.ackTime + time.Second
	if p.spool != nil {
		wait = time.Second // then into the spool: no need to wait for the ack
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := p.Flush(ctx)
	p.js.CleanupPublisher() // drop the reply subscription such a Publish re-created
	if err != nil {
		return fmt.Errorf("close publisher: %w", err)
	}
	return nil
}

// encodeOptions give encoding/json's output (v1 semantics: omitempty,
// sorted map keys) without its HTML escaping. The v2 encoder takes the
// record's already-valid bodies at about twice the speed of encoding/json,
// which re-compacts every json.RawMessage.
var encodeOptions = jsonv2.JoinOptions(jsonv1.DefaultOptionsV1(), jsontext.EscapeForHTML(false))

// encode returns rec's JSON, as json.Marshal would but without escaping
// HTML characters. The bytes are fresh: nats.go keeps a message until its
// ack (to retry it on no responders, and for the handlers).
func encode(rec *mdtap.Record) ([]byte, error) {
	return jsonv2.Marshal(rec, encodeOptions)
}
