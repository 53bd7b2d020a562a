package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
)

// The access log in the archive store: one object per entry,
//
//	access-log/<seq:012d>.json
//
// holding the entry as one line of compact JSON (mdtap.AccessEntry) and a
// newline. Entries form one hash chain: an entry's prev is the hex SHA-256
// of the previous entry's line, without its newline (AccessEntryHash), ""
// for seq 1 — the same rule as the local file log, so the objects
// concatenated in key order make a file that VerifyAccessLog accepts.
//
// Positions are taken by a conditional create (Store.PutIfAbsent), so of two
// writers only one can store entry n; the other reads the entries after its
// tail and tries the next position: the chain never forks. Its head (the
// last entry's seq and hash) is also kept in a HeadStore (NATS KV, key
// AccessLogHead) when one is given, so that deleting entries from the end
// is detectable.
const (
	AccessLogDir = "access-log"
	// AccessLogHead is the name under which the access log's head is kept
	// in its HeadStore. It is not a valid chain id, so it can share a store
	// with the manifest chains' heads without colliding.
	AccessLogHead = "_accesslog"
)

// AccessLogKey returns the key of access-log entry number seq (from 1).
func AccessLogKey(seq uint64) string {
	return fmt.Sprintf("%s/%0*d%s", AccessLogDir, seqDigits, seq, ManifestExt)
}

// ParseAccessLogKey returns the sequence number of an access-log entry key.
func ParseAccessLogKey(key string) (uint64, error) {
	rest, ok := strings.CutPrefix(key, AccessLogDir+"/")
	num, ok2 := strings.CutSuffix(rest, ManifestExt)
	if !ok || !ok2 || len(num) != seqDigits {
		return 0, fmt.Errorf("access log key %q: want %s/<seq>%s", key, AccessLogDir, ManifestExt)
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("access log key %q: bad sequence", key)
	}
	return seq, nil
}

// AccessEntryHash is the hash by which the next entry links to this one:
// the hex SHA-256 of the entry's stored bytes without their final newline.
func AccessEntryHash(data []byte) string {
	sum := sha256.Sum256(bytes.TrimSuffix(data, []byte{'\n'}))
	return hex.EncodeToString(sum[:])
}

// Defaults of StoreAccessLog.
const (
	// DefaultAccessLogAttempts bounds the tries of one Append: positions
	// lost to other writers and transient store errors both count.
	DefaultAccessLogAttempts = 50
	// DefaultAccessLogBackoff is the first wait after a failed try; it
	// doubles, with jitter, up to a second.
	DefaultAccessLogBackoff = 5 * time.Millisecond
)

// StoreAccessLog appends entries to the access log in an archive store. It
// is safe for concurrent use, and any number of processes may append to one
// store at once. Append returns only once the entry is stored: an access
// that is not logged must not happen.
type StoreAccessLog struct {
	store Store
	heads HeadStore
	log   zerolog.Logger

	// Attempts and Backoff tune Append's retries; zero takes the default.
	Attempts int
	Backoff  time.Duration

	mu    sync.Mutex
	tail  Head // the last entry this log knows of
	known bool // tail has been read from the store
}

// NewStoreAccessLog returns the access log of store. heads, if not nil,
// keeps the log's head (under AccessLogHead); a failure to move it is
// logged to log, not returned, since the entry is stored by then.
func NewStoreAccessLog(store Store, heads HeadStore, log zerolog.Logger) *StoreAccessLog {
	return &StoreAccessLog{store: store, heads: heads, log: log}
}

// Append stores e as the next entry of the chain, with V and Prev set, and
// returns its sequence number.
func (l *StoreAccessLog) Append(ctx context.Context, e mdtap.AccessEntry) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	attempts, wait := l.Attempts, l.Backoff
	if attempts <= 0 {
		attempts = DefaultAccessLogAttempts
	}
	if wait <= 0 {
		wait = DefaultAccessLogBackoff
	}
	e.V = 1
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			d := min(wait<<min(attempt-2, 8), time.Second)
			d = d/2 + rand.N(d/2+1)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("append access log: %w", ctx.Err())
			case <-t.C:
			}
		}
		if !l.known {
			if err := l.sync(ctx); err != nil {
				lastErr = err
				if ctx.Err() != nil {
					break
				}
				continue
			}
		}
		e.Prev = l.tail.Hash
		line, err := encodeAccessEntry(&e)
		if err != nil {
			return 0, err
		}
		seq := l.tail.Seq + 1
		data := append(line, '\n')
		err = l.store.PutIfAbsent(ctx, AccessLogKey(seq), data)
		if errors.Is(err, ErrExists) {
			// Ours, if an earlier try stored it and its answer was lost;
			// else another writer took the position: read on and retry.
			got, gerr := l.store.Get(ctx, AccessLogKey(seq))
			if gerr == nil && bytes.Equal(got, data) {
				err = nil
			} else {
				l.known = false
				lastErr = fmt.Errorf("position %d taken by another writer", seq)
				continue
			}
		}
		if err != nil {
			// Maybe stored, maybe not: the next try writes the same bytes
			// at the same position, and finds them there if they were.
			lastErr = err
			if ctx.Err() != nil || errors.Is(err, ErrInvalidKey) {
				break
			}
			continue
		}
		l.tail = Head{Seq: seq, Hash: AccessEntryHash(data), Records: seq}
		l.moveHead(ctx)
		return seq, nil
	}
	return 0, fmt.Errorf("append access log: %w", lastErr)
}

func encodeAccessEntry(e *mdtap.AccessEntry) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode access entry: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// sync finds the chain's last entry: from the tail already known, else from
// the head store's head, else from the start, it lists the entries after it.
// A head ahead of the store (entries deleted from the end) leaves the tail
// at the head, so the gap stays visible to verification.
func (l *StoreAccessLog) sync(ctx context.Context) error {
	start := l.tail
	if !l.known && l.heads != nil {
		h, _, err := l.heads.Get(ctx, AccessLogHead)
		switch {
		case errors.Is(err, ErrNoHead):
		case err != nil:
			l.log.Warn().Err(err).Msg("read access log head failed; reading the log from the store alone")
		case h.Seq > start.Seq:
			start = h
		}
	}
	after := ""
	if start.Seq > 0 {
		after = AccessLogKey(start.Seq)
	}
	var last uint64
	var lastKey string
	for o, err := range Walk(ctx, l.store, AccessLogDir+"/", after) {
		if err != nil {
			return fmt.Errorf("list access log: %w", err)
		}
		if seq, err := ParseAccessLogKey(o.Key); err == nil {
			last, lastKey = seq, o.Key
		}
	}
	tail := start
	if last > start.Seq {
		data, err := l.store.Get(ctx, lastKey)
		if err != nil {
			return fmt.Errorf("read access log entry %d: %w", last, err)
		}
		tail = Head{Seq: last, Hash: AccessEntryHash(data), Records: last}
	}
	l.tail, l.known = tail, true
	return nil
}

// moveHead moves the head store's head forward to the tail; it never moves
// it back.
func (l *StoreAccessLog) moveHead(ctx context.Context) {
	if l.heads == nil {
		return
	}
	var err error
	for range headAttempts * 4 {
		var h Head
		var rev uint64
		h, rev, err = l.heads.Get(ctx, AccessLogHead)
		if errors.Is(err, ErrNoHead) {
			h, rev, err = Head{}, 0, nil
		}
		if err != nil {
			break
		}
		if h.Seq >= l.tail.Seq {
			return
		}
		if _, err = l.heads.Put(ctx, AccessLogHead, l.tail, rev); err == nil {
			return
		}
		if !errors.Is(err, ErrHeadConflict) {
			break
		}
	}
	l.log.Warn().Err(err).Uint64("seq", l.tail.Seq).Msg("moving the access log head failed; the entry is stored, the next one moves it")
}

// AccessItem is one entry of the access log as read from the store.
type AccessItem struct {
	Seq   uint64
	Key   string
	Data  []byte // the stored bytes
	Hash  string // AccessEntryHash(Data)
	Entry mdtap.AccessEntry
	// Err is set when Data does not decode as an entry.
	Err error
}

// accessReaders is how many entries ReadAccessLog fetches at once.
const accessReaders = 8

// ReadAccessLog reads every entry of the access log, in chain order.
// Entries that are listed but gone by the time they are read are left out
// (a verification sees the gap).
func ReadAccessLog(ctx context.Context, s Store) ([]AccessItem, error) {
	var items []AccessItem
	for o, err := range Walk(ctx, s, AccessLogDir+"/", "") {
		if err != nil {
			return nil, fmt.Errorf("list access log: %w", err)
		}
		seq, err := ParseAccessLogKey(o.Key)
		if err != nil {
			continue
		}
		items = append(items, AccessItem{Seq: seq, Key: o.Key})
	}
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	sem := make(chan struct{}, accessReaders)
	for i := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			it := &items[i]
			data, err := s.Get(ctx, it.Key)
			if err != nil {
				errs[i] = err
				return
			}
			it.Data, it.Hash = data, AccessEntryHash(data)
			if err := json.Unmarshal(data, &it.Entry); err != nil {
				it.Err = errors.New("not an access-log entry")
			}
		})
	}
	wg.Wait()
	out := items[:0]
	for i, it := range items {
		switch {
		case errors.Is(errs[i], ErrNotFound):
			continue
		case errs[i] != nil:
			return nil, fmt.Errorf("read access log entry %d: %w", it.Seq, errs[i])
		}
		out = append(out, it)
	}
	return out, nil
}

// Problem kinds of the access log's verification, besides ProblemOutOfChain,
// ProblemTailDeleted, ProblemHeadMismatch and ProblemNoHead.
const (
	// ProblemMissingEntry: positions Seq…Last of the access log have no
	// entry (deleted), with later entries present.
	ProblemMissingEntry = "missing_entry"
	// ProblemBadEntry: an entry that does not decode.
	ProblemBadEntry = "bad_entry"
)

// AccessLogReport is the result of VerifyAccessLogStore.
type AccessLogReport struct {
	Entries  int       `json:"entries"`  // entries read
	LastSeq  uint64    `json:"last_seq"` // the store's last entry
	Head     *Head     `json:"head,omitempty"`
	Problems []Problem `json:"problems"`
}

// OK reports whether the access log verified without problems.
func (r *AccessLogReport) OK() bool { return len(r.Problems) == 0 }

// VerifyAccessLogStore walks the access log's chain in the store: every
// position from 1 to the last is there, every entry decodes and links to the
// one before, and, with heads (nil skips it), the log reaches its head. The
// error is for a verification that could not run.
func VerifyAccessLogStore(ctx context.Context, s Store, heads HeadStore) (AccessLogReport, error) {
	r := AccessLogReport{Problems: []Problem{}}
	items, err := ReadAccessLog(ctx, s)
	if err != nil {
		return r, fmt.Errorf("verify access log: %w", err)
	}
	add := func(p Problem) { r.Problems = append(r.Problems, p) }
	var prevSeq uint64
	prevHash, prevOK := "", true
	hashes := map[uint64]string{}
	for _, it := range items {
		r.Entries++
		hashes[it.Seq] = it.Hash
		if it.Seq > prevSeq+1 {
			add(Problem{Kind: ProblemMissingEntry, Seq: prevSeq + 1, Last: it.Seq - 1,
				Detail: fmt.Sprintf("%d entries missing before seq %d", it.Seq-prevSeq-1, it.Seq)})
			prevOK = false
		}
		switch {
		case it.Err != nil:
			add(Problem{Kind: ProblemBadEntry, Seq: it.Seq, Key: it.Key, Detail: it.Err.Error()})
			prevSeq, prevHash, prevOK = it.Seq, it.Hash, false
			continue
		case it.Seq == 1 && it.Entry.Prev != "":
			add(Problem{Kind: ProblemOutOfChain, Seq: it.Seq, Key: it.Key, Detail: "first entry has a prev hash"})
		case it.Seq > 1 && prevOK && it.Entry.Prev != prevHash:
			add(Problem{Kind: ProblemOutOfChain, Seq: it.Seq, Key: it.Key,
				Detail: fmt.Sprintf("prev is not the hash of entry %d", it.Seq-1)})
		}
		prevSeq, prevHash, prevOK = it.Seq, it.Hash, true
	}
	r.LastSeq = prevSeq
	if heads == nil {
		return r, nil
	}
	h, _, err := heads.Get(ctx, AccessLogHead)
	if errors.Is(err, ErrNoHead) {
		if r.LastSeq > 0 {
			add(Problem{Kind: ProblemNoHead, Detail: "the head store has no head for the access log; a deleted tail would go unseen"})
		}
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("verify access log: read head: %w", err)
	}
	r.Head = &h
	switch {
	case h.Seq > r.LastSeq:
		add(Problem{Kind: ProblemTailDeleted, Seq: r.LastSeq + 1, Last: h.Seq,
			Detail: fmt.Sprintf("head is at seq %d, the store's last entry at %d", h.Seq, r.LastSeq)})
	case hashes[h.Seq] != "" && hashes[h.Seq] != h.Hash:
		add(Problem{Kind: ProblemHeadMismatch, Seq: h.Seq, Key: AccessLogKey(h.Seq), Detail: "entry hash differs from the head's"})
	}
	return r, nil
}
