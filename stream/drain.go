package stream

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
)

// Reason labels of the spool's own.
const (
	reasonFlush   = "flush"   // spooled at Flush's deadline, ack still outstanding
	reasonCorrupt = "corrupt" // damaged spool bytes, dead-lettered
	// reasonLocal: a replay failed on this side (a dead-letter write), not
	// because JetStream refused.
	reasonLocal = "local"
)

// Drain pacing.
const (
	// drainPoll is how often the drain looks for a connection while NATS
	// is away.
	drainPoll = 100 * time.Millisecond
	// drainBackoffMin and drainBackoffMax bound the pause after a failed
	// replay (doubling, with ±20% jitter so a fleet of sidecars does not
	// retry in step); an acknowledgement resets it.
	drainBackoffMin = 100 * time.Millisecond
	drainBackoffMax = 2 * time.Second
)

// drainer replays the spool into JetStream, in spool order, with a bounded
// window of records in flight: the publisher's drain.
//
// Records are sent in order; acks may come in any order, and the spool's
// acknowledged position advances over the prefix that is wholly acknowledged
// (or dead-lettered). On a failure that may pass (NATS away, stream full,
// timeout) the drainer stops sending, waits for the window to resolve,
// rewinds to the first record not acknowledged, backs off and starts again
// with a window of one that grows by one per ack (doubling each round
// trip), so that a stream that is still full costs one refused record per
// attempt. Records after the failed one that were acknowledged are sent
// again: Nats-Msg-Id makes that harmless. A record that can never be
// published goes to the dead-letter directory and the drain moves on.
type drainer struct {
	p   *Publisher
	s   *Spool
	r   *spoolReader
	max int
	log zerolog.Logger

	mu         sync.Mutex
	items      []*drainItem // sent, in spool order; the front is the oldest not yet done
	unresolved int
	limit      int    // current window
	failed     string // reason of the first failure since the last rewind
	backoff    time.Duration

	kick chan struct{} // cap 1: an item resolved
	stop chan struct{}
	done chan struct{}
}

// drainItem is a record (or damaged bytes) the drain sent on.
type drainItem struct {
	pos, end spoolPos
	record   bool
	state    itemState
}

type itemState uint8

const (
	itemSent itemState = iota
	itemDone
	itemFailed
)

func newDrainer(p *Publisher, maxInFlight int, log zerolog.Logger) *drainer {
	return &drainer{
		p:     p,
		s:     p.spool,
		r:     newSpoolReader(p.spool),
		max:   maxInFlight,
		log:   log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
		limit: 1,
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

func (d *drainer) stopAndWait() {
	close(d.stop)
	<-d.done
}

func (d *drainer) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// wait waits for an item to resolve, for ch, or for timeout (0: none);
// false when the drain is stopping.
func (d *drainer) wait(ch <-chan struct{}, timeout time.Duration) bool {
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-d.stop:
		return false
	case <-d.kick:
	case <-ch:
	case <-tc:
	}
	return true
}

// sleep pauses for t; false when the drain is stopping.
func (d *drainer) sleep(t time.Duration) bool {
	timer := time.NewTimer(t)
	defer timer.Stop()
	select {
	case <-d.stop:
		return false
	case <-timer.C:
		return true
	}
}

func (d *drainer) run() {
	defer close(d.done)
	defer d.r.close()
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		d.mu.Lock()
		if d.failed != "" {
			if d.unresolved > 0 {
				d.mu.Unlock()
				if !d.wait(nil, 0) {
					return
				}
				continue
			}
			pos := d.r.pos
			if len(d.items) > 0 {
				pos = d.items[0].pos
			}
			clear(d.items)
			d.items = d.items[:0]
			d.failed = ""
			d.limit = 1
			d.backoff = min(max(2*d.backoff, drainBackoffMin), drainBackoffMax)
			pause := time.Duration(float64(d.backoff) * (0.8 + 0.4*rand.Float64()))
			d.mu.Unlock()
			d.r.seek(pos)
			if !d.sleep(pause) {
				return
			}
			continue
		}
		full := d.unresolved >= d.limit
		d.mu.Unlock()
		if full {
			if !d.wait(nil, 0) {
				return
			}
			continue
		}
		if !d.p.nc.IsConnected() {
			if !d.sleep(drainPoll) {
				return
			}
			continue
		}
		it, ok, err := d.r.next()
		if err != nil {
			d.log.Error().Err(err).Msg("spool: read failed; retrying")
			if !d.sleep(drainBackoffMax) {
				return
			}
			continue
		}
		if !ok {
			if !d.wait(d.s.notify, 0) {
				return
			}
			continue
		}
		item := &drainItem{pos: it.pos, end: it.end, record: it.corrupt == nil}
		d.mu.Lock()
		d.items = append(d.items, item)
		d.unresolved++
		d.mu.Unlock()
		if it.corrupt != nil {
			d.log.Warn().Str("segment", segName(it.pos.seq)).Int64("offset", it.pos.off).Int("bytes", len(it.corrupt)).
				Msg("spool: damaged bytes; moving them to the dead-letter directory")
			j := &job{kind: jobCorrupt, raw: it.corrupt, at: it.pos, reason: reasonCorrupt, done: d.deadLettered(item)}
			if err := d.s.put(j); err != nil {
				d.fail(item, reasonLocal)
			}
			continue
		}
		if !d.send(item, it.fr) {
			return
		}
	}
}

// send publishes a spooled record; false when the drain is stopping.
func (d *drainer) send(item *drainItem, fr frame) bool {
	p := d.p
	m := fr.m
	if max := p.nc.MaxPayload(); max > 0 && int64(len(m.Data)) > max-int64(p.hdrLen) {
		// The server's limit shrank since the record was spooled.
		p.m.fail(ReasonTooLarge)
		p.keep(m, fr.degraded, ReasonTooLarge, true, d.deadLettered(item))
		return true
	}
	select {
	case p.sem <- struct{}{}:
	case <-d.stop:
		d.fail(item, ReasonClosed)
		return false
	}
	msg := p.natsMsg(m)
	p.mu.Lock()
	p.pending[msg] = inflight{id: m.ID, start: time.Now(), degraded: fr.degraded, drain: item}
	p.mu.Unlock()
	for {
		_, err := p.js.PublishMsgAsync(msg)
		if err == nil {
			return true
		}
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			select {
			case <-d.stop:
				p.resolve(msg, jetstream.ErrJetStreamPublisherClosed)
				return false
			default:
				continue
			}
		}
		p.resolve(msg, err)
		return true
	}
}

// resolved takes the outcome of a replayed record, on a nats.go goroutine.
func (d *drainer) resolved(f inflight, msg *nats.Msg, err error) {
	if err == nil {
		d.p.m.acked(time.Since(f.start))
		d.finish(f.drain, true)
		return
	}
	pe := newPublishError(f.id, msg.Subject, err)
	d.p.m.fail(pe.Reason)
	d.log.Warn().Str("id", f.id).Str("subject", msg.Subject).Str("reason", pe.Reason).Err(err).Msg("spool replay failed")
	if permanent(pe) {
		d.p.keep(Message{ID: f.id, Subject: msg.Subject, Data: msg.Data}, f.degraded, pe.Reason, true, d.deadLettered(f.drain))
		return
	}
	d.fail(f.drain, pe.Reason)
}

// deadLettered returns the completion of an item moved to the dead-letter
// directory: done, or failed (to try again) if that write failed.
func (d *drainer) deadLettered(item *drainItem) func(error) {
	return func(err error) {
		if err != nil {
			d.fail(item, reasonLocal)
			return
		}
		d.finish(item, false)
	}
}

// finish marks item done (acked: by JetStream) and hands the acknowledged
// prefix to the spool.
func (d *drainer) finish(item *drainItem, acked bool) {
	d.mu.Lock()
	item.state = itemDone
	d.unresolved--
	var end spoolPos
	popped, n := false, 0
	for len(d.items) > 0 && d.items[0].state == itemDone {
		h := d.items[0]
		d.items[0] = nil
		d.items = d.items[1:]
		end, popped = h.end, true
		if h.record {
			n++
		}
	}
	if acked {
		d.limit = min(d.limit+1, d.max)
		d.backoff = 0
	}
	d.mu.Unlock()
	if acked {
		d.p.spoolFirst.Store(nil)
		d.s.m.drain(1)
	}
	if popped {
		d.s.ack(end, n)
	}
	d.poke()
}

// fail marks item failed for reason: the drain rewinds to it.
func (d *drainer) fail(item *drainItem, reason string) {
	d.mu.Lock()
	item.state = itemFailed
	d.unresolved--
	if d.failed == "" {
		d.failed = reason
	}
	d.mu.Unlock()
	if reason != ReasonClosed && reason != reasonLocal {
		// JetStream refuses: new records queue behind the spooled ones.
		d.p.spoolFirst.Store(&reason)
	}
	d.poke()
}

// permanent says whether a failed record can never be published as it is:
// too large for the stream, or refused by it for a reason that is about
// the record or the configuration (a 4xx, such as Nats-Expected-Stream not
// matching). A 5xx refusal may pass, and is retried.
func permanent(pe *PublishError) bool {
	switch pe.Reason {
	case ReasonTooLarge:
		return true
	case ReasonRejected:
		var api *jetstream.APIError
		return !errors.As(pe.Err, &api) || api.Code < 500
	}
	return false
}

// keep puts a record that was not acknowledged in the spool, or one that can
// never be published (deadLetter) in the dead-letter directory; of a
// too-large record the metadata-only form goes to the spool as well, so the
// archive still learns of the exchange. done reports once all that is
// written (an error: the dead-letter write failed, or the spool was closed;
// a record the spool had no room for is counted and logged by the spool).
func (p *Publisher) keep(m Message, degraded bool, reason string, deadLetter bool, done func(error)) {
	s := p.spool
	if !deadLetter {
		if err := s.put(&job{kind: jobRecord, m: m, degraded: degraded, reason: reason, done: done}); err != nil {
			s.m.drop(dropClosed)
			p.log.Error().Str("id", m.ID).Str("subject", m.Subject).Err(err).Msg("record dropped: the spool is closed")
			done(err)
		}
		return
	}
	jobs := []*job{{kind: jobDeadLetter, m: m, degraded: degraded, reason: reason}}
	if reason == ReasonTooLarge && !degraded {
		if dm, err := degradeMessage(m, mdtap.DegradeTooLarge); err == nil {
			s.m.degrade(mdtap.DegradeTooLarge)
			jobs = append(jobs, &job{kind: jobRecord, m: dm, degraded: true, reason: ReasonTooLarge})
		}
	}
	var left atomic.Int32
	left.Store(int32(len(jobs)))
	var dlErr atomic.Pointer[error]
	for i, j := range jobs {
		j.done = func(err error) {
			if i == 0 && err != nil {
				dlErr.Store(&err)
			}
			if left.Add(-1) == 0 {
				var err error
				if e := dlErr.Load(); e != nil {
					err = *e
				}
				done(err)
			}
		}
	}
	for _, j := range jobs {
		if err := s.put(j); err != nil {
			j.done(err)
		}
	}
}

// spoolPending moves every new record still waiting for its ack into the
// spool, oldest first, and returns how many. Their acks, should they come,
// are ignored.
func (p *Publisher) spoolPending(reason string) int {
	type entry struct {
		msg *nats.Msg
		f   inflight
	}
	var moved []entry
	p.mu.Lock()
	for msg, f := range p.pending {
		if f.drain == nil {
			delete(p.pending, msg)
			moved = append(moved, entry{msg, f})
		}
	}
	p.mu.Unlock()
	slices.SortFunc(moved, func(a, b entry) int { return a.f.start.Compare(b.f.start) })
	for _, e := range moved {
		p.keep(Message{ID: e.f.id, Subject: e.msg.Subject, Data: e.msg.Data}, e.f.degraded, reason, false, p.spooled)
	}
	return len(moved)
}
