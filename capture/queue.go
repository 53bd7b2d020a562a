// Package capture is the bounded queue between the proxy and the stream. It
// runs after the client has its response: it finishes raw records (decoding
// bodies, finding org and result codes), protects them with the policy, and
// hands only protected records to the publisher. A record whose encoding is
// too large for the stream is degraded to metadata, never retried whole.
//
// The queue is the only holder of both the redacting stage and the
// publisher, so the proxy, which holds only the queue, cannot publish a raw
// record.
package capture

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
)

// Protector turns raw records into protected ones (redact.Redactor).
type Protector interface {
	Protect(raw *mdtap.Record) (*mdtap.Record, error)
	// Degrade returns the metadata-only form of a record; prot may be nil
	// when protection failed.
	Degrade(raw, prot *mdtap.Record, reason string) (*mdtap.Record, error)
}

// Publisher sends protected records on (stream.Publisher). Publish may return
// before the record is durable; it returns mdtap.ErrTooLarge synchronously
// for a record the stream cannot take in one message.
type Publisher interface {
	Publish(ctx context.Context, rec *mdtap.Record) error
}

// Defaults.
const (
	DefaultSize = 10000 // records waiting; the only in-memory loss window at a hard kill
	// DefaultMaxBytes bounds the captured bytes waiting: with large bodies
	// a count alone would let the queue hold gigabytes before it pushes back.
	DefaultMaxBytes = 256 << 20
)

// Options configure a Queue.
type Options struct {
	// Size bounds records waiting (DefaultSize). Submit blocks when full.
	Size int
	// MaxBytes bounds the captured body bytes waiting (DefaultMaxBytes);
	// Submit blocks past it too. One record larger than it still passes
	// when the queue is empty.
	MaxBytes int64
	// Workers protect and publish in parallel (default GOMAXPROCS).
	Workers int
	// Prepare finishes a raw record before protection (proxy.Completer).
	Prepare    func(*mdtap.Record)
	Logger     zerolog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Queue is the capture queue.
type Queue struct {
	ch      chan item
	p       Protector
	pub     Publisher
	prepare func(*mdtap.Record)
	log     zerolog.Logger
	now     func() time.Time
	m       *metrics

	mu     sync.RWMutex
	closed bool

	bmu      sync.Mutex
	room     *sync.Cond
	bytes    int64 // captured body bytes waiting or being handled
	maxBytes int64
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

type item struct {
	raw  *mdtap.Record
	at   time.Time
	size int64
}

// New starts a queue with its workers.
func New(p Protector, pub Publisher, o Options) (*Queue, error) {
	if p == nil || pub == nil {
		return nil, errors.New("capture: a protector and a publisher are required")
	}
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{ch: make(chan item, o.Size), p: p, pub: pub, prepare: o.Prepare, log: o.Logger, now: o.Now, m: m, ctx: ctx, cancel: cancel,
		maxBytes: o.MaxBytes}
	q.room = sync.NewCond(&q.bmu)
	if m != nil {
		m.depthFn = func() float64 { return float64(len(q.ch)) }
	}
	for range o.Workers {
		q.wg.Add(1)
		go q.work()
	}
	return q, nil
}

// ErrClosed is why a record submitted after Close is not kept.
var ErrClosed = errors.New("capture queue closed")

// Submit queues a raw record. It blocks while the queue is full — the client
// already has its response, so waiting delays only that connection's next
// request, while dropping would lose a record. After Close it counts the
// record as dropped (the proxy stops before the queue closes, so this does
// not happen in an orderly shutdown).
func (q *Queue) Submit(raw *mdtap.Record) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		q.m.dropped("queue_closed")
		q.log.Error().Str("record", raw.ID).Msg("record submitted after the capture queue closed; not kept")
		return
	}
	it := item{raw: raw, at: q.now(), size: int64(len(raw.Request.Body)) + 1024}
	if raw.Response != nil {
		it.size += int64(len(raw.Response.Body))
	}
	q.bmu.Lock()
	if q.bytes > 0 && q.bytes+it.size > q.maxBytes {
		q.m.full()
		for q.bytes > 0 && q.bytes+it.size > q.maxBytes {
			q.room.Wait()
		}
	}
	q.bytes += it.size
	q.bmu.Unlock()
	select {
	case q.ch <- it:
		return
	default:
	}
	q.m.full()
	q.ch <- it
}

// Close stops accepting records, finishes the ones queued and returns when
// the workers are done or ctx ends (then the rest is counted as dropped).
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		q.cancel()
		<-done
		return fmt.Errorf("capture queue: drain: %w", ctx.Err())
	}
}

// Len reports the records waiting.
func (q *Queue) Len() int { return len(q.ch) }

func (q *Queue) work() {
	defer q.wg.Done()
	for it := range q.ch {
		if q.ctx.Err() != nil {
			q.m.dropped("shutdown_timeout")
		} else {
			q.handle(it)
		}
		q.bmu.Lock()
		q.bytes -= it.size
		q.room.Broadcast()
		q.bmu.Unlock()
	}
}

// handle protects one record and publishes it, degrading it when it cannot
// be protected or is too large for the stream.
func (q *Queue) handle(it item) {
	raw := it.raw
	if q.prepare != nil {
		q.prepare(raw)
	}
	prot, err := q.p.Protect(raw)
	if err != nil {
		q.log.Error().Str("record", raw.ID).Str("sector", string(raw.Sector)).Str("cause", err.Error()).
			Msg("policy could not be applied; publishing metadata only")
		prot, err = q.p.Degrade(raw, nil, mdtap.DegradeProtectError)
		if err != nil {
			q.log.Error().Str("record", raw.ID).Str("cause", err.Error()).Msg("degraded record is incomplete")
		}
		q.m.degraded(mdtap.DegradeProtectError)
	}
	err = q.pub.Publish(q.ctx, prot)
	// Too large for the stream, or no room anywhere now (fail-open): keep
	// the record's metadata, with keyed digests computed from the raw bodies.
	for _, c := range []struct {
		err    error
		reason string
	}{{mdtap.ErrTooLarge, mdtap.DegradeTooLarge}, {mdtap.ErrSpoolFull, mdtap.DegradeSpoolFull}} {
		if !errors.Is(err, c.err) || prot.Degraded != "" && prot.Degraded != mdtap.DegradeProtectError {
			continue
		}
		q.m.degraded(c.reason)
		small, derr := q.p.Degrade(raw, prot, c.reason)
		if derr != nil {
			q.log.Error().Str("record", raw.ID).Str("cause", derr.Error()).Msg("degraded record is incomplete")
		}
		err = q.pub.Publish(q.ctx, small)
		prot = small
	}
	if errors.Is(err, mdtap.ErrSpoolFull) {
		q.m.dropped(mdtap.DegradeSpoolFull)
		q.log.Error().Str("record", raw.ID).Str("sector", string(prot.Sector)).Msg("neither NATS nor the spool can take even the record's metadata; record lost")
		return
	}
	if err != nil {
		q.m.outcome(prot, "failed")
		q.log.Error().Str("record", raw.ID).Str("sector", string(prot.Sector)).Str("cause", err.Error()).Msg("publish failed")
		return
	}
	q.m.outcome(prot, outcomeOf(prot))
	q.m.latency(q.now().Sub(it.at))
}

func outcomeOf(rec *mdtap.Record) string {
	if rec.Degraded != "" {
		return "degraded"
	}
	return "published"
}
