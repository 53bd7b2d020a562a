// Package archivetest holds in-memory fakes of the archiver's collaborators
// for unit tests and benchmarks: a Source, a HeadStore, a fake clock, a
// Store wrapper that injects failures, and a generator of protected records.
// The real Source and HeadStore (JetStream, NATS KV) live in the stream
// package and are tested against real servers there.
package archivetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/mdtap/mdtap/archive"
)

// Clock is a fake clock: it moves only when told to.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Sleep advances the clock by d instead of waiting (archive.Options.Sleep).
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// Message is a fake archive.Message.
type Message struct {
	data []byte
	seq  uint64
}

func (m *Message) Data() []byte { return m.data }
func (m *Message) Seq() uint64  { return m.seq }

// Source is an in-memory archive.Source with work-queue semantics: a message
// is delivered once, and again only after Redeliver, until acknowledged.
//
// When it has nothing to deliver, Fetch waits until messages are published,
// the wait passes or ctx ends; with a Clock set, it instead advances the
// clock by the wait and returns nothing at once, so batching by age runs
// without sleeping.
type Source struct {
	Clock *Clock // optional

	mu        sync.Mutex
	cond      chan struct{} // closed and replaced on Publish
	seq       uint64
	queue     []*Message          // not yet delivered (or redelivered)
	inflight  map[uint64]*Message // delivered, not acknowledged
	acked     map[uint64]int      // acknowledgements per sequence
	fetchErrs []error             // returned by the next Fetch calls
	ackErrs   []error             // returned by the next Ack calls
	onAck     func([]archive.Message) error
	fetches   int
	maxSeen   []int // the max argument of each Fetch
}

var _ archive.Source = (*Source)(nil)

// NewSource returns an empty source.
func NewSource() *Source {
	return &Source{cond: make(chan struct{}), inflight: map[uint64]*Message{}, acked: map[uint64]int{}}
}

// Publish appends records to the stream and returns their sequences.
func (s *Source) Publish(records ...[]byte) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := make([]uint64, len(records))
	for i, r := range records {
		s.seq++
		s.queue = append(s.queue, &Message{data: r, seq: s.seq})
		seqs[i] = s.seq
	}
	close(s.cond)
	s.cond = make(chan struct{})
	return seqs
}

// FailFetch makes the next Fetch calls return errs, one each.
func (s *Source) FailFetch(errs ...error) {
	s.mu.Lock()
	s.fetchErrs = append(s.fetchErrs, errs...)
	s.mu.Unlock()
}

// FailAck makes the next Ack calls return errs, one each, acknowledging
// nothing.
func (s *Source) FailAck(errs ...error) {
	s.mu.Lock()
	s.ackErrs = append(s.ackErrs, errs...)
	s.mu.Unlock()
}

// OnAck sets a hook run at the start of each Ack; if it returns an error,
// Ack returns it and acknowledges nothing (a crash before the ack).
func (s *Source) OnAck(f func([]archive.Message) error) {
	s.mu.Lock()
	s.onAck = f
	s.mu.Unlock()
}

// Fetch implements archive.Source.
func (s *Source) Fetch(ctx context.Context, max int, wait time.Duration) ([]archive.Message, error) {
	for {
		s.mu.Lock()
		s.fetches++
		s.maxSeen = append(s.maxSeen, max)
		if len(s.fetchErrs) > 0 {
			err := s.fetchErrs[0]
			s.fetchErrs = s.fetchErrs[1:]
			s.mu.Unlock()
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if len(s.queue) > 0 {
			n := min(max, len(s.queue))
			out := make([]archive.Message, n)
			for i, m := range s.queue[:n] {
				out[i] = m
				s.inflight[m.seq] = m
			}
			s.queue = s.queue[n:]
			s.mu.Unlock()
			return out, nil
		}
		cond := s.cond
		s.mu.Unlock()
		if s.Clock != nil {
			s.Clock.Advance(wait)
			return nil, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-cond:
			timer.Stop()
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
	}
}

// Ack implements archive.Source.
func (s *Source) Ack(ctx context.Context, msgs []archive.Message) error {
	s.mu.Lock()
	hook := s.onAck
	if len(s.ackErrs) > 0 {
		err := s.ackErrs[0]
		s.ackErrs = s.ackErrs[1:]
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if hook != nil {
		if err := hook(msgs); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.acked[m.Seq()]++
		delete(s.inflight, m.Seq())
	}
	return nil
}

// Lag implements archive.Source: messages queued or in flight.
func (s *Source) Lag(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.queue) + len(s.inflight)), nil
}

// Redeliver puts every delivered, unacknowledged message back in the queue,
// as JetStream does when their ack wait expires.
func (s *Source) Redeliver() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := make([]uint64, 0, len(s.inflight))
	for seq := range s.inflight {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	var back []*Message
	for _, seq := range seqs {
		back = append(back, s.inflight[seq])
		delete(s.inflight, seq)
	}
	s.queue = append(back, s.queue...)
	close(s.cond)
	s.cond = make(chan struct{})
	return len(back)
}

// Acked returns how often each sequence was acknowledged.
func (s *Source) Acked() map[uint64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]int, len(s.acked))
	for k, v := range s.acked {
		out[k] = v
	}
	return out
}

// AckedCount returns how many distinct messages were acknowledged.
func (s *Source) AckedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// Pending returns how many messages are queued or in flight.
func (s *Source) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) + len(s.inflight)
}

// FetchMaxes returns the max argument of every Fetch so far.
func (s *Source) FetchMaxes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.maxSeen)
}

// Heads is an in-memory archive.HeadStore.
type Heads struct {
	mu    sync.Mutex
	rev   uint64
	heads map[string]headRev
	// getErrs and putErrs are returned by the next calls.
	getErrs, putErrs []error
}

type headRev struct {
	h   archive.Head
	rev uint64
}

var _ archive.HeadStore = (*Heads)(nil)

// NewHeads returns an empty head store.
func NewHeads() *Heads { return &Heads{heads: map[string]headRev{}} }

// Get implements archive.HeadStore.
func (h *Heads) Get(ctx context.Context, chain string) (archive.Head, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.getErrs) > 0 {
		err := h.getErrs[0]
		h.getErrs = h.getErrs[1:]
		return archive.Head{}, 0, err
	}
	if err := ctx.Err(); err != nil {
		return archive.Head{}, 0, err
	}
	hr, ok := h.heads[chain]
	if !ok {
		return archive.Head{}, 0, archive.ErrNoHead
	}
	return hr.h, hr.rev, nil
}

// Put implements archive.HeadStore.
func (h *Heads) Put(ctx context.Context, chain string, head archive.Head, rev uint64) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.putErrs) > 0 {
		err := h.putErrs[0]
		h.putErrs = h.putErrs[1:]
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if h.heads[chain].rev != rev {
		return 0, archive.ErrHeadConflict
	}
	h.rev++
	h.heads[chain] = headRev{h: head, rev: h.rev}
	return h.rev, nil
}

// Set stores a head regardless of revision (a test rewinding or advancing it).
func (h *Heads) Set(chain string, head archive.Head) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev++
	h.heads[chain] = headRev{h: head, rev: h.rev}
}

// Chains implements archive.HeadLister.
func (h *Heads) Chains(ctx context.Context) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	chains := make([]string, 0, len(h.heads))
	for c := range h.heads {
		chains = append(chains, c)
	}
	slices.Sort(chains)
	return chains, nil
}

// Delete removes a chain's head (a lost head store).
func (h *Heads) Delete(chain string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.heads, chain)
}

// FailGet and FailPut make the next calls return errs, one each.
func (h *Heads) FailGet(errs ...error) {
	h.mu.Lock()
	h.getErrs = append(h.getErrs, errs...)
	h.mu.Unlock()
}

func (h *Heads) FailPut(errs ...error) {
	h.mu.Lock()
	h.putErrs = append(h.putErrs, errs...)
	h.mu.Unlock()
}

// FaultStore wraps a Store and fails chosen calls.
type FaultStore struct {
	archive.Store

	mu sync.Mutex
	// fail decides, per call, whether it fails and with what; nil passes.
	fail  func(op, key string) error
	calls map[string]int
}

var _ archive.Store = (*FaultStore)(nil)

// ErrInjected is the error a FaultStore returns by default.
var ErrInjected = errors.New("injected store failure")

// NewFaultStore wraps s.
func NewFaultStore(s archive.Store) *FaultStore {
	return &FaultStore{Store: s, calls: map[string]int{}}
}

// SetFail installs the failure rule: f is called with the operation ("put",
// "put_if_absent", "get", "stat", "list") and key (the prefix for list).
func (f *FaultStore) SetFail(fn func(op, key string) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// FailNext makes the next n write calls (Put and PutIfAbsent) fail.
func (f *FaultStore) FailNext(n int) {
	f.SetFail(func(op, key string) error {
		if (op == "put" || op == "put_if_absent") && n > 0 {
			n--
			return ErrInjected
		}
		return nil
	})
}

// Calls returns how many calls of op were made.
func (f *FaultStore) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *FaultStore) check(op, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fail == nil {
		return nil
	}
	return f.fail(op, key)
}

func (f *FaultStore) Put(ctx context.Context, key string, data []byte) error {
	if err := f.check("put", key); err != nil {
		return err
	}
	return f.Store.Put(ctx, key, data)
}

func (f *FaultStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := f.check("put_if_absent", key); err != nil {
		return err
	}
	return f.Store.PutIfAbsent(ctx, key, data)
}

func (f *FaultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.check("get", key); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, key)
}

func (f *FaultStore) Stat(ctx context.Context, key string) (archive.ObjectInfo, error) {
	if err := f.check("stat", key); err != nil {
		return archive.ObjectInfo{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *FaultStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]archive.ObjectInfo, error) {
	if err := f.check("list", prefix); err != nil {
		return nil, err
	}
	return f.Store.List(ctx, prefix, startAfter, limit)
}
