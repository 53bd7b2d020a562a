package archive

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
)

// Archiver moves records from a Source to a Store: it batches messages,
// writes one object per partition the batch touches and a manifest per
// object, chained, and acknowledges the messages only once all of them are
// stored. A crash can therefore store a batch twice (it is delivered again),
// never lose one.
//
//	Source ──Fetch──▶ batch ──(count, bytes or age)──▶ encode: one object per
//	   ▲                                               hour×sector, zstd
//	   │                                                   │
//	   └──Ack◀── head CAS ◀── manifests (PutIfAbsent, ◀── objects (Put,
//	             (HeadStore)   in chain order)             in parallel)
//
// Every failure to fetch, store or acknowledge is retried with backoff; Run
// only returns when its context ends.
type Archiver struct {
	src    Source
	store  Store
	heads  HeadStore
	o      Options
	log    zerolog.Logger
	m      *metrics
	enc    *zstd.Encoder
	writer string // random per process: the last part of object names

	// Chain state, owned by Run.
	tail      Head   // the last manifest this archiver knows of
	headRev   uint64 // the head store's revision of the head it last read or wrote
	synced    bool   // tail has been read from the head store and the store
	headDirty bool   // tail is ahead of what the head store holds
	lastLag   time.Time
}

// New returns an archiver of src into store, keeping its chain head in heads.
// Zero fields of o take their defaults; o.Chain is required.
func New(src Source, store Store, heads HeadStore, o Options) (*Archiver, error) {
	if src == nil || store == nil || heads == nil {
		return nil, errors.New("new archiver: source, store and head store are required")
	}
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new archiver: %w", err)
	}
	enc, err := newEncoder(o.Compression, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, fmt.Errorf("new archiver: zstd: %w", err)
	}
	var w [writerLen / 2]byte
	crand.Read(w[:])
	a := &Archiver{
		src: src, store: store, heads: heads, o: o, m: m, enc: enc,
		writer: hex.EncodeToString(w[:]),
	}
	a.log = o.Logger.With().Str("chain", o.Chain).Str("writer", a.writer).Logger()
	return a, nil
}

// Writer returns the id this archiver puts in its object names and manifests.
func (a *Archiver) Writer() string { return a.writer }

// batch is the messages in hand.
type batch struct {
	msgs  []Message
	bytes int       // uncompressed: the records and their newlines
	start time.Time // when the first message came
	enc   *encodeResult
}

func (b *batch) add(m Message, size int, now time.Time) {
	if b.enc != nil {
		// The encoding covers the messages it was made of: acknowledging
		// a message added since would lose it.
		panic("archive: message added to a batch already encoded")
	}
	if len(b.msgs) == 0 {
		b.start = now
	}
	b.msgs = append(b.msgs, m)
	b.bytes += size
}

func (b *batch) reset() { *b = batch{msgs: b.msgs[:0]} }

// Run archives until ctx ends, then writes and acknowledges the batch in
// hand if it can within ShutdownGrace (else leaves it to be delivered again)
// and returns nil. It never returns on a transient error. Call it once.
func (a *Archiver) Run(ctx context.Context) error {
	a.log.Info().Int("batch_max_records", a.o.BatchMaxRecords).Int("batch_max_bytes", a.o.BatchMaxBytes).
		Dur("batch_max_age", a.o.BatchMaxAge).Msg("archiver started")
	var b batch
	var fails int // consecutive failures of fetch or chain sync
	for {
		if ctx.Err() != nil {
			a.shutdown(ctx, &b)
			return nil
		}
		if !a.synced {
			if err := a.syncTail(ctx); err != nil {
				if ctx.Err() == nil {
					fails++
					a.log.Error().Err(err).Int("attempt", fails).Msg("read chain head failed; retrying")
					a.o.Sleep(ctx, a.backoff(fails))
				}
				continue
			}
			fails = 0
		}
		now := a.o.Now()
		wait := a.o.BatchMaxAge
		if len(b.msgs) > 0 {
			if wait -= now.Sub(b.start); wait <= 0 {
				a.flush(ctx, &b)
				continue
			}
		}
		msgs, err := a.src.Fetch(ctx, a.o.BatchMaxRecords-len(b.msgs), wait)
		if err != nil {
			if ctx.Err() == nil {
				fails++
				a.m.errors.WithLabelValues(ErrReasonFetch).Inc()
				a.log.Error().Err(err).Int("attempt", fails).Msg("fetch failed; retrying")
				a.o.Sleep(ctx, a.backoff(fails))
			}
			continue
		}
		fails = 0
		for _, msg := range msgs {
			size := len(msg.Data()) + 1
			if len(b.msgs) > 0 && b.bytes+size > a.o.BatchMaxBytes {
				if a.flush(ctx, &b) != nil {
					// ctx ended with the batch unwritten: the shutdown makes
					// a last attempt at it; the rest of this fetch stays
					// unacknowledged, to be delivered again.
					break
				}
			}
			b.add(msg, size, a.o.Now())
		}
		if ctx.Err() != nil {
			continue
		}
		if len(b.msgs) >= a.o.BatchMaxRecords || b.bytes >= a.o.BatchMaxBytes ||
			len(b.msgs) > 0 && a.o.Now().Sub(b.start) >= a.o.BatchMaxAge {
			a.flush(ctx, &b)
		}
		a.updateLag(ctx)
	}
}

// shutdown makes a last attempt, bounded by ShutdownGrace, to store and
// acknowledge the batch in hand once Run's context has ended.
func (a *Archiver) shutdown(ctx context.Context, b *batch) {
	if len(b.msgs) == 0 {
		a.log.Info().Msg("archiver stopped")
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.o.ShutdownGrace)
	defer cancel()
	if !a.synced {
		if err := a.syncTail(gctx); err != nil {
			a.log.Warn().Err(err).Int("records", len(b.msgs)).Msg("archiver stopped; batch in hand abandoned, it will be delivered again")
			return
		}
	}
	if err := a.flush(gctx, b); err != nil {
		a.log.Warn().Err(err).Int("records", len(b.msgs)).Msg("archiver stopped; batch in hand abandoned, it will be delivered again")
		return
	}
	a.log.Info().Msg("archiver stopped")
}

// maxInvalidLogs bounds the dead-letter log lines per batch.
const maxInvalidLogs = 10

// errChainConflict: another writer stored the manifest at the position this
// archiver was writing; the tail has been read again.
var errChainConflict = errors.New("chain position taken by another writer")

// flush writes the batch, retrying until it is stored or ctx ends, then
// acknowledges it. It returns ctx's error, the batch kept, if ctx ended first.
func (a *Archiver) flush(ctx context.Context, b *batch) error {
	start := a.o.Now()
	if b.enc == nil {
		r := encodeBatch(b.msgs, start, a.enc)
		b.enc = &r
	}
	var fails int
	for {
		err := a.write(ctx, b.enc)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fails++
		if errors.Is(err, errChainConflict) {
			a.m.errors.WithLabelValues(ErrReasonChainConflict).Inc()
			a.log.Warn().Int("attempt", fails).Uint64("tail", a.tail.Seq).
				Msg("another writer extended this chain (two archivers with one chain id?); continuing after its manifests")
			if fails == 1 {
				continue // the tail is fresh: retry at once
			}
		} else {
			a.m.errors.WithLabelValues(ErrReasonStore).Inc()
			a.log.Error().Err(err).Int("attempt", fails).Int("records", len(b.msgs)).Msg("store batch failed; retrying")
		}
		if a.o.Sleep(ctx, a.backoff(fails)) != nil {
			return ctx.Err()
		}
	}
	a.updateHead(ctx)
	a.ack(ctx, b.msgs)

	var size int64
	for _, o := range b.enc.objects {
		size += int64(len(o.data))
	}
	a.m.records.Add(float64(b.enc.records))
	a.m.objects.Add(float64(len(b.enc.objects)))
	a.m.bytes.Add(float64(size))
	a.m.batch.Observe(a.o.Now().Sub(start).Seconds())
	if n := len(b.enc.invalid); n > 0 {
		a.m.errors.WithLabelValues(ErrReasonInvalidRecord).Add(float64(n))
		for i, bad := range b.enc.invalid {
			if i == maxInvalidLogs {
				a.log.Warn().Int("more", n-i).Msg("more messages of this batch stored as dead letters")
				break
			}
			a.log.Warn().Str("id", bad.id).Str("reason", bad.reason).Str("detail", bad.detail).
				Bool("kept", bad.protected).Msg("message is not an archivable record; stored as a dead letter")
		}
	}
	a.log.Debug().Int("records", b.enc.records).Int("dead_letters", len(b.enc.invalid)).
		Int("objects", len(b.enc.objects)).Int64("bytes", size).Uint64("tail", a.tail.Seq).Msg("batch archived")
	b.reset()
	return nil
}

// write stores the objects of a batch and their manifests, in chain order.
// Objects already in the chain (after an earlier attempt) are skipped.
func (a *Archiver) write(ctx context.Context, r *encodeResult) error {
	next := a.tail.Seq + 1
	var todo []*pendingObject
	for _, o := range r.objects {
		if o.done {
			continue
		}
		if o.seq != next {
			o.seq, o.stored, o.manifest = next, false, nil
			o.key = a.objectKey(o)
		}
		todo = append(todo, o)
		next++
	}
	if err := a.upload(ctx, todo); err != nil {
		return err
	}
	for _, o := range todo {
		if err := a.appendManifest(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (a *Archiver) objectKey(o *pendingObject) string {
	return ObjectKey{
		Kind: o.kind, Partition: o.part, Day: o.day,
		Chain: a.o.Chain, Seq: o.seq, Writer: a.writer,
	}.String()
}

// upload puts the objects not yet stored, Uploads at a time. Object keys
// are this process's alone (they hold its writer id and a position it has
// not written before), so a plain Put never replaces another's object.
func (a *Archiver) upload(ctx context.Context, objs []*pendingObject) error {
	sem := make(chan struct{}, a.o.Uploads)
	errs := make(chan error, len(objs))
	for _, o := range objs {
		if o.stored {
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := a.store.Put(ctx, o.key, o.data); err != nil {
				errs <- err
				return
			}
			o.stored = true
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	return <-errs // the first error, or nil
}

// appendManifest stores o's manifest at the chain position after the tail.
// The manifest key is written only if absent, so two writers of one chain
// can never both take a position: the loser finds another manifest there,
// reads the tail again and returns errChainConflict.
func (a *Archiver) appendManifest(ctx context.Context, o *pendingObject) error {
	if o.manifest == nil || o.seq != a.tail.Seq+1 {
		m := &Manifest{
			V: ManifestVersion, Chain: a.o.Chain, Seq: o.seq, Prev: a.tail.Hash,
			Kind: o.kind, Object: o.key, Bytes: int64(len(o.data)), SHA256: o.sum,
			Encoding: ObjectEncoding, RawBytes: o.rawBytes,
			Records: o.lines, ChainRecords: a.tail.Records + uint64(o.lines),
			IDs: o.ids, StreamSeq: o.seqs, Time: o.times,
			Sectors: o.sectors, Orgs: o.orgs, Subjects: o.subjects, Reasons: o.reasons,
			Writer: a.writer,
		}
		m.Created.Time = a.o.Now().UTC()
		data, err := encodeManifest(m)
		if err != nil {
			return err
		}
		o.manifest, o.hash = data, ManifestHash(data)
	}
	key := ManifestKey(a.o.Chain, o.seq)
	err := a.store.PutIfAbsent(ctx, key, o.manifest)
	if errors.Is(err, ErrExists) {
		// Ours, if an earlier attempt stored it and its answer was lost.
		got, gerr := a.store.Get(ctx, key)
		if gerr != nil {
			return gerr
		}
		if string(got) != string(o.manifest) {
			a.synced = false
			if err := a.syncTail(ctx); err != nil {
				return err
			}
			return errChainConflict
		}
		err = nil
	}
	if err != nil {
		return err
	}
	o.done = true
	a.tail = Head{Hash: o.hash, Seq: o.seq, Records: a.tail.Records + uint64(o.lines)}
	a.headDirty = true
	return nil
}

// headAttempts bounds the compare-and-set rounds of one head update.
const headAttempts = 5

// updateHead moves the chain head in the head store to the tail. The head
// only moves forward: when another writer has moved it past the tail, it
// stays. A failure is logged and counted, not retried: the next batch moves
// the head again, and the records are stored whatever happens to it.
func (a *Archiver) updateHead(ctx context.Context) {
	if !a.headDirty {
		return
	}
	var err error
	for range headAttempts {
		var rev uint64
		rev, err = a.heads.Put(ctx, a.o.Chain, a.tail, a.headRev)
		if err == nil {
			a.headRev, a.headDirty = rev, false
			return
		}
		if !errors.Is(err, ErrHeadConflict) {
			break
		}
		var h Head
		h, rev, err = a.heads.Get(ctx, a.o.Chain)
		if errors.Is(err, ErrNoHead) {
			h, rev, err = Head{}, 0, nil
		}
		if err != nil {
			break
		}
		a.headRev = rev
		if h.Seq >= a.tail.Seq {
			a.headDirty = false
			if h.Seq > a.tail.Seq {
				a.synced = false // another writer went on: read the tail again
			}
			return
		}
	}
	a.m.errors.WithLabelValues(ErrReasonHead).Inc()
	a.log.Error().Err(err).Uint64("seq", a.tail.Seq).Msg("store chain head failed; the next batch tries again")
}

// ack acknowledges the stored messages, retrying AckAttempts times. If it
// cannot, the messages are delivered again and archived a second time.
func (a *Archiver) ack(ctx context.Context, msgs []Message) {
	for attempt := 1; ; attempt++ {
		err := a.src.Ack(ctx, msgs)
		if err == nil {
			return
		}
		a.m.errors.WithLabelValues(ErrReasonAck).Inc()
		if attempt >= a.o.AckAttempts || ctx.Err() != nil {
			a.log.Error().Err(err).Int("records", len(msgs)).
				Msg("acknowledge failed; the records are stored and will be delivered and stored again")
			return
		}
		a.log.Warn().Err(err).Int("attempt", attempt).Msg("acknowledge failed; retrying")
		if a.o.Sleep(ctx, a.backoff(attempt)) != nil {
			return
		}
	}
}

// updateLag refreshes the lag gauge, at most every LagInterval.
func (a *Archiver) updateLag(ctx context.Context) {
	now := a.o.Now()
	if !a.lastLag.IsZero() && now.Sub(a.lastLag) < a.o.LagInterval {
		return
	}
	a.lastLag = now
	n, err := a.src.Lag(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.m.errors.WithLabelValues(ErrReasonLag).Inc()
			a.log.Warn().Err(err).Msg("read consumer lag failed")
		}
		return
	}
	a.m.lag.Set(float64(n))
}

// backoff returns the wait before retry number n (from 1): BackoffMin
// doubled per failure up to BackoffMax, the upper half jittered.
func (a *Archiver) backoff(n int) time.Duration {
	d := a.o.BackoffMin
	for i := 1; i < n && d < a.o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, a.o.BackoffMax)
	return d/2 + rand.N(d/2+1)
}
