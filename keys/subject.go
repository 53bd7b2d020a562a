package keys

import (
	"bytes"
	clist "container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/proto"

	"github.com/mdtap/mdtap"
)

// Per-subject keys serve consent withdrawal (crypto-shredding one
// customer's data). A data subject's record values are encrypted and
// tokenized under the subject's own small keyset: one AES256_GCM key and one
// AES256_SIV key, both with Tink's TINK prefix so their ids travel in the
// ciphertexts. The keyset is generated on first use, wrapped by the main
// AEAD keyset (its primary encrypts it, the associated data binds it to the
// subject's blind index) and kept in a SubjectStore — a NATS key-value
// bucket — under a key derived from the blind index (SubjectStoreKey).
// Destroying it (ForgetSubject) shreds the subject's values and nobody
// else's. Hashes stay on the main PRF keyset: blind indexes must be
// computable without the subject's key.
//
// One keyset exists per subject and PRF key: the store key is the blind
// index, and a PRF rotation changes blind indexes, so a subject gets a new
// keyset (and new tokens) after a prf rotation, and forgetting computes the
// index under every enabled PRF key.

// Defaults of SubjectOptions.
const (
	// DefaultSubjectCacheSize is how many subjects' keysets a SubjectKeys
	// holds unwrapped in memory. An entry is a few hundred bytes.
	DefaultSubjectCacheSize = 10000
	// DefaultSubjectTimeout bounds the store round trips of one cache miss.
	DefaultSubjectTimeout = 5 * time.Second
)

// ErrStoreConflict: a compare-and-set write to a SubjectStore lost, because
// the value changed (or, for Create, exists) since it was read. Read again.
var ErrStoreConflict = errors.New("stored value changed concurrently")

// SubjectStore keeps the wrapped per-subject keysets. In production it is a
// NATS key-value bucket (mdtap_subjects) whose history is one revision.
// Implementations are safe for concurrent use.
type SubjectStore interface {
	// Get returns the value under key and its revision. The error matches
	// fs.ErrNotExist when there is none (never created, or erased).
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Create stores value under key only if the key holds no value, and
	// returns the new revision; ErrStoreConflict otherwise. Two proxies
	// creating one subject's keyset at once converge on whichever Create
	// won.
	Create(ctx context.Context, key string, value []byte) (revision uint64, err error)
	// Update replaces the value under key if it is still at revision, and
	// returns the new revision; ErrStoreConflict otherwise.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// SubjectChange is a change to a SubjectStore's value.
type SubjectChange struct {
	Key string
	// Revision is the value's new revision; zero when Removed.
	Revision uint64
	// Removed: the value was erased, purged or deleted.
	Removed bool
}

// SubjectWatcher is implemented by a SubjectStore that reports changes, so
// that SubjectKeys.Watch drops cached keysets that were forgotten or
// replaced.
type SubjectWatcher interface {
	// SubjectChanges returns a channel of the changes made after the call.
	// It is closed when ctx is done or the watch fails.
	SubjectChanges(ctx context.Context) (<-chan SubjectChange, error)
}

// SubjectAdmin is a SubjectStore that can also destroy and list values, for
// forgetting subjects and retiring keys.
type SubjectAdmin interface {
	SubjectStore
	// Erase destroys the value under key so that no revision of it can be
	// read back from the store (NATS: every stored revision is deleted with
	// its bytes overwritten, then the key is purged). It reports whether
	// there was a value.
	Erase(ctx context.Context, key string) (bool, error)
	// Keys lists the keys holding a value that begin with prefix ("" for
	// all). A prefix ends with "." or is empty.
	Keys(ctx context.Context, prefix string) ([]string, error)
}

// subjectKeyPrefix starts every SubjectStoreKey.
const subjectKeyPrefix = "v1."

// SubjectStoreKey returns the store key of a subject's blind index (a hash
// value, mdtap:hash:v1:<prf key id>:<b64url>): v1.<prf key id>.<b64url>. It
// only uses characters NATS key-value keys allow ([-/_=.a-zA-Z0-9]) and maps
// back to the blind index, so a store change names the cached subject.
// Only the canonical form mdtap.HashValue writes is accepted, so that a
// blind index and its store key map one to one.
func SubjectStoreKey(blindIndex string) (string, error) {
	p, err := mdtap.ParseProtected(blindIndex)
	if err != nil || p.Form != mdtap.FormHash || p.Data == "" ||
		blindIndex != "mdtap:hash:v1:"+strconv.FormatUint(uint64(p.KeyID), 10)+":"+p.Data ||
		strings.IndexFunc(p.Data, notBase64URL) >= 0 {
		return "", errors.New("subject store key: not a blind index (hash value)")
	}
	return subjectKeyPrefix + strconv.FormatUint(uint64(p.KeyID), 10) + "." + p.Data, nil
}

// notBase64URL is true for a rune outside the unpadded base64url alphabet
// (Go's decoder skips newlines, so decoding alone does not reject them).
func notBase64URL(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
}

// blindIndexOf reverses SubjectStoreKey.
func blindIndexOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, subjectKeyPrefix)
	if !ok {
		return "", false
	}
	id, sum, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	return "mdtap:hash:v1:" + id + ":" + sum, true
}

// subjectPRFPrefix is the prefix of the store keys of blind indexes under
// one PRF key.
func subjectPRFPrefix(prfKeyID uint32) string {
	return subjectKeyPrefix + strconv.FormatUint(uint64(prfKeyID), 10) + "."
}

// subjectValue is what the store holds for a subject: its two Tink keysets,
// each a Tink EncryptedKeyset (binary protobuf) encrypted by the main AEAD
// keyset with subjectAD as associated data.
type subjectValue struct {
	V     int    `json:"v"`
	AEAD  []byte `json:"aead"`
	DAEAD []byte `json:"daead"`
}

const subjectValueVersion = 1

// subjectAD binds a wrapped subject keyset to its purpose and blind index: a
// value copied to another subject's key does not unwrap.
func subjectAD(p Purpose, blindIndex string) []byte {
	return []byte("mdtap:subject-keyset:v1:" + string(p) + "\x00" + blindIndex)
}

// subjectKeyset is one subject's keys, unwrapped.
type subjectKeyset struct {
	aeadID, daeadID uint32
	aead            tink.AEAD
	daead           tink.DeterministicAEAD
}

// wrapper adapts a Set to the tink.AEAD Tink wraps keysets with, keeping the
// Set's classified error (shredded, unavailable) that Tink flattens to text.
type wrapper struct {
	s   *Set
	err error
}

func (w *wrapper) Encrypt(pt, ad []byte) ([]byte, error) {
	ct, err := w.s.Encrypt(pt, ad)
	w.err = err
	return ct, err
}

func (w *wrapper) Decrypt(ct, ad []byte) ([]byte, error) {
	pt, err := w.s.Decrypt(ct, ad)
	w.err = err
	return pt, err
}

// newSubjectHandles generates a subject's two keysets. Their key ids avoid
// the main keysets' known ids, so a key id names one key in `keys list`,
// records and logs (a later main key may still collide: readers never rely
// on ids being distinct across keysets).
func newSubjectHandles(main *Set) (a, d *keyset.Handle, err error) {
	taken := main.knownIDs()
	for _, p := range []Purpose{PurposeAEAD, PurposeDAEAD} {
		mgr := keyset.NewManager()
		id, err := addKey(mgr, p, taken)
		if err != nil {
			return nil, nil, err
		}
		if err := mgr.SetPrimary(id); err != nil {
			return nil, nil, err
		}
		h, err := mgr.Handle()
		if err != nil {
			return nil, nil, err
		}
		if p == PurposeAEAD {
			a = h
		} else {
			d = h
		}
	}
	return a, d, nil
}

// wrapSubject encodes a subject's keysets for the store, wrapped by the
// main set's primary AEAD key.
func wrapSubject(main *Set, blindIndex string, a, d *keyset.Handle) ([]byte, error) {
	v := subjectValue{V: subjectValueVersion}
	for _, k := range []struct {
		p   Purpose
		h   *keyset.Handle
		out *[]byte
	}{{PurposeAEAD, a, &v.AEAD}, {PurposeDAEAD, d, &v.DAEAD}} {
		var buf bytes.Buffer
		w := &wrapper{s: main}
		if err := k.h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), w, subjectAD(k.p, blindIndex)); err != nil {
			if w.err != nil {
				err = w.err
			}
			return nil, fmt.Errorf("wrap subject %s keyset: %w", k.p, err)
		}
		*k.out = buf.Bytes()
	}
	return json.Marshal(v)
}

// unwrapSubject decodes a stored value into the subject's keyset handles.
func unwrapSubject(main *Set, blindIndex string, b []byte) (a, d *keyset.Handle, err error) {
	var v subjectValue
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, nil, errors.New("unwrap subject keyset: not a subject keyset value")
	}
	if v.V != subjectValueVersion {
		return nil, nil, fmt.Errorf("unwrap subject keyset: unsupported version %d", v.V)
	}
	for _, k := range []struct {
		p   Purpose
		in  []byte
		out **keyset.Handle
	}{{PurposeAEAD, v.AEAD, &a}, {PurposeDAEAD, v.DAEAD, &d}} {
		w := &wrapper{s: main}
		h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(k.in)), w, subjectAD(k.p, blindIndex))
		if err != nil {
			if w.err != nil {
				err = w.err
			}
			return nil, nil, fmt.Errorf("unwrap subject %s keyset: %w", k.p, err)
		}
		*k.out = h
	}
	return a, d, nil
}

// wrappedBy returns the main AEAD key ids that wrap a stored value.
func wrappedBy(b []byte) ([]uint32, error) {
	var v subjectValue
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, errors.New("not a subject keyset value")
	}
	var ids []uint32
	for _, w := range [][]byte{v.AEAD, v.DAEAD} {
		var ek tinkpb.EncryptedKeyset
		if err := proto.Unmarshal(w, &ek); err != nil {
			return nil, errors.New("not a Tink encrypted keyset")
		}
		id, ok := mdtap.TinkKeyID(ek.GetEncryptedKeyset())
		if !ok {
			return nil, errNoPrefix
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func subjectPrimitives(a, d *keyset.Handle) (*subjectKeyset, error) {
	ks := &subjectKeyset{}
	pa, err := a.Primary()
	if err != nil {
		return nil, fmt.Errorf("subject aead keyset: %w", err)
	}
	pd, err := d.Primary()
	if err != nil {
		return nil, fmt.Errorf("subject daead keyset: %w", err)
	}
	ks.aeadID, ks.daeadID = pa.KeyID(), pd.KeyID()
	if ks.aead, err = aead.New(a); err != nil {
		return nil, fmt.Errorf("subject aead keyset: %w", err)
	}
	if ks.daead, err = daead.New(d); err != nil {
		return nil, fmt.Errorf("subject daead keyset: %w", err)
	}
	return ks, nil
}

// SubjectSealer protects the values of one subject's records: Encrypt and
// Tokenize use the subject's own keys; Hash uses the main PRF keyset, since
// blind indexes must be computable without the subject's key. It satisfies
// redact.Sealer and is safe for concurrent use.
type SubjectSealer struct {
	ks   *subjectKeyset
	main *Set
}

// Encrypt encrypts under the subject's AES256_GCM key.
func (s *SubjectSealer) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	ct, err := s.ks.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("encrypt under subject key: %w", err)
	}
	return ct, nil
}

// Tokenize encrypts deterministically under the subject's AES256_SIV key:
// equal values of one subject give equal tokens, other subjects' differ.
func (s *SubjectSealer) Tokenize(plaintext, associatedData []byte) ([]byte, error) {
	ct, err := s.ks.daead.EncryptDeterministically(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("tokenize under subject key: %w", err)
	}
	return ct, nil
}

// Hash is the main set's Hash.
func (s *SubjectSealer) Hash(input []byte) (uint32, []byte, error) { return s.main.Hash(input) }

// Primary names the keys new values of the subject are protected under: the
// subject's aead and daead keys, the main prf key.
func (s *SubjectSealer) Primary() mdtap.KeyIDs {
	return mdtap.KeyIDs{AEAD: s.ks.aeadID, DAEAD: s.ks.daeadID, PRF: s.main.Primary().PRF}
}

// SubjectOpener reverses the values of one subject's records. A value under
// the subject's key decrypts with it; a value under a main key (a record
// protected before per-subject keys were used) with the main set. A value
// under any other key reads as shredded (mdtap.ErrShredded): the subject's
// keyset that protected it was destroyed — forgotten, or wrapped by a main
// key that was destroyed — or replaced since. It satisfies redact.Opener.
type SubjectOpener struct {
	ks   *subjectKeyset // nil: the subject has no readable keyset
	main *Set
	// gone is why ks is nil: mdtap.ErrShredded (no keyset, or its wrapping
	// key was destroyed) or mdtap.ErrKeyUnavailable (its wrapping key is
	// disabled or not held).
	gone error
}

// Forgotten reports whether the subject has no keyset that could be read.
func (o *SubjectOpener) Forgotten() bool { return o.ks == nil && errors.Is(o.gone, mdtap.ErrShredded) }

// Decrypt decrypts an Encrypt ciphertext of the subject's records.
func (o *SubjectOpener) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	id, ok := mdtap.TinkKeyID(ciphertext)
	if !ok {
		return nil, fmt.Errorf("decrypt: %w", errNoPrefix)
	}
	if o.ks != nil && id == o.ks.aeadID {
		pt, err := o.ks.aead.Decrypt(ciphertext, associatedData)
		if err != nil {
			return nil, fmt.Errorf("decrypt under subject key: %w", err)
		}
		return pt, nil
	}
	if err := o.other(PurposeAEAD, id); err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return o.main.Decrypt(ciphertext, associatedData)
}

// Detokenize reverses a Tokenize token of the subject's records.
func (o *SubjectOpener) Detokenize(ciphertext, associatedData []byte) ([]byte, error) {
	id, ok := mdtap.TinkKeyID(ciphertext)
	if !ok {
		return nil, fmt.Errorf("detokenize: %w", errNoPrefix)
	}
	if o.ks != nil && id == o.ks.daeadID {
		pt, err := o.ks.daead.DecryptDeterministically(ciphertext, associatedData)
		if err != nil {
			return nil, fmt.Errorf("detokenize under subject key: %w", err)
		}
		return pt, nil
	}
	if err := o.other(PurposeDAEAD, id); err != nil {
		return nil, fmt.Errorf("detokenize: %w", err)
	}
	return o.main.Detokenize(ciphertext, associatedData)
}

// other classifies a key id that is not the subject's: nil when the main
// set should answer (it knows the key, or does not hold the purpose at all
// and will say so).
func (o *SubjectOpener) other(p Purpose, id uint32) error {
	loaded, known := o.main.knows(p, id)
	if !loaded || known {
		return nil
	}
	if o.ks == nil {
		return fmt.Errorf("key %d: the subject's keyset is not readable: %w", id, o.gone)
	}
	return fmt.Errorf("key %d: neither the subject's current key nor a main key (an earlier keyset of the subject was destroyed): %w", id, mdtap.ErrShredded)
}

// SubjectOptions tune a SubjectKeys. Zero values take the defaults.
type SubjectOptions struct {
	// CacheSize bounds the subjects whose keysets are held in memory, least
	// recently used first out; default DefaultSubjectCacheSize.
	CacheSize int
	// Timeout bounds the store round trips of one cache miss; default
	// DefaultSubjectTimeout.
	Timeout time.Duration
}

// SubjectKeys hands out the sealers and openers of subjects, reading and
// creating their keysets in a SubjectStore and caching them unwrapped in a
// bounded LRU. It is safe for concurrent use. A cache hit is a map lookup
// under a mutex; a miss is one store Get (and, for a new subject, one Create;
// on a lost race, one more Get), shared by concurrent callers of the same
// subject.
type SubjectKeys struct {
	main    *Set
	store   SubjectStore
	size    int
	timeout time.Duration

	mu     sync.Mutex
	lru    *clist.List               // of *subjectEntry, most recent first
	byBI   map[string]*clist.Element // blind index → element of lru
	flight map[flightKey]*subjectFlight
}

// subjectEntry is what a lookup found. For a subject without a readable
// keyset (read-only lookups only) sealer is nil and the entry is not cached.
type subjectEntry struct {
	bi     string
	rev    uint64 // the stored value's revision
	sealer *SubjectSealer
	opener *SubjectOpener
}

type flightKey struct {
	bi     string
	create bool
}

type subjectFlight struct {
	done chan struct{}
	ent  *subjectEntry
	err  error
	// stale is set (under SubjectKeys.mu) when the subject's stored value
	// changed while the miss was under way: what it read may be what was
	// just forgotten, so it is returned to the callers but not cached.
	stale bool
}

// NewSubjectKeys returns a SubjectKeys whose keysets are wrapped by main
// (which must hold the aead purpose) and kept in store.
func NewSubjectKeys(main *Set, store SubjectStore, o SubjectOptions) *SubjectKeys {
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultSubjectCacheSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultSubjectTimeout
	}
	return &SubjectKeys{
		main: main, store: store, size: o.CacheSize, timeout: o.Timeout,
		lru: clist.New(), byBI: map[string]*clist.Element{}, flight: map[flightKey]*subjectFlight{},
	}
}

// Sealer returns the sealer of the subject with this blind index (the
// record's subject value), creating the subject's keyset on first use. A
// stored keyset whose wrapping key was destroyed is replaced by a new one
// (what it protected is shredded already). It never falls back to the main
// keys: a value under them could not be forgotten with the subject.
func (k *SubjectKeys) Sealer(ctx context.Context, blindIndex string) (*SubjectSealer, error) {
	e, err := k.get(ctx, blindIndex, true)
	if err != nil {
		return nil, err
	}
	return e.sealer, nil
}

// Opener returns the opener of the subject with this blind index. It never
// creates a keyset: for a subject without a readable one it returns an
// opener under which the subject's values read as shredded (or unavailable,
// when the keyset's wrapping key is disabled), and main-key values still
// open. An error means the store could not be asked.
func (k *SubjectKeys) Opener(ctx context.Context, blindIndex string) (*SubjectOpener, error) {
	e, err := k.get(ctx, blindIndex, false)
	if err != nil {
		return nil, err
	}
	return e.opener, nil
}

func (k *SubjectKeys) get(ctx context.Context, bi string, create bool) (*subjectEntry, error) {
	k.mu.Lock()
	if el := k.byBI[bi]; el != nil {
		k.lru.MoveToFront(el)
		e := el.Value.(*subjectEntry)
		k.mu.Unlock()
		return e, nil
	}
	fk := flightKey{bi, create}
	if f := k.flight[fk]; f != nil {
		k.mu.Unlock()
		select {
		case <-f.done:
			return f.ent, f.err
		case <-ctx.Done():
			return nil, fmt.Errorf("subject keyset: %w", ctx.Err())
		}
	}
	f := &subjectFlight{done: make(chan struct{})}
	k.flight[fk] = f
	k.mu.Unlock()

	// The miss serves every caller waiting on it: one caller giving up must
	// not fail the others, so it runs to its own deadline.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
	f.ent, f.err = k.fetch(fctx, bi, create)
	cancel()

	k.mu.Lock()
	delete(k.flight, fk)
	if f.err == nil && f.ent.sealer != nil && !f.stale {
		k.insert(f.ent)
	}
	k.mu.Unlock()
	close(f.done)
	return f.ent, f.err
}

// insert adds an entry, evicting the least recently used beyond the size.
// k.mu is held.
func (k *SubjectKeys) insert(e *subjectEntry) {
	if el := k.byBI[e.bi]; el != nil {
		el.Value = e
		k.lru.MoveToFront(el)
		return
	}
	k.byBI[e.bi] = k.lru.PushFront(e)
	for k.lru.Len() > k.size {
		last := k.lru.Back()
		k.lru.Remove(last)
		delete(k.byBI, last.Value.(*subjectEntry).bi)
	}
}

// maxStoreRaces bounds how often a miss re-reads after losing a
// compare-and-set race; each loss means another writer succeeded.
const maxStoreRaces = 4

func (k *SubjectKeys) fetch(ctx context.Context, bi string, create bool) (*subjectEntry, error) {
	key, err := SubjectStoreKey(bi)
	if err != nil {
		return nil, err
	}
	for range maxStoreRaces {
		v, rev, err := k.store.Get(ctx, key)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !create {
				return k.gone(bi, fmt.Errorf("no keyset for the subject: %w", mdtap.ErrShredded)), nil
			}
			e, v, err := k.generate(bi)
			if err != nil {
				return nil, err
			}
			e.rev, err = k.store.Create(ctx, key, v)
			if errors.Is(err, ErrStoreConflict) {
				continue // another proxy created it first: use theirs
			}
			if err != nil {
				return nil, fmt.Errorf("store subject keyset: %w", err)
			}
			return e, nil
		case err != nil:
			return nil, fmt.Errorf("read subject keyset: %w", err)
		}
		a, d, err := unwrapSubject(k.main, bi, v)
		if err != nil {
			switch {
			case errors.Is(err, mdtap.ErrShredded) && create:
				// Its wrapping key was destroyed (retired without
				// re-wrapping): what it protected is shredded already.
				e, v, gerr := k.generate(bi)
				if gerr != nil {
					return nil, gerr
				}
				var uerr error
				e.rev, uerr = k.store.Update(ctx, key, v, rev)
				if errors.Is(uerr, ErrStoreConflict) {
					continue
				}
				if uerr != nil {
					return nil, fmt.Errorf("replace subject keyset: %w", uerr)
				}
				return e, nil
			case !create && (errors.Is(err, mdtap.ErrShredded) || errors.Is(err, mdtap.ErrKeyUnavailable)):
				return k.gone(bi, err), nil
			}
			return nil, err
		}
		ks, err := subjectPrimitives(a, d)
		if err != nil {
			return nil, err
		}
		e := k.entry(bi, ks)
		e.rev = rev
		return e, nil
	}
	return nil, errors.New("subject keyset: the store kept changing under concurrent writers")
}

// gone is the entry of a subject without a readable keyset.
func (k *SubjectKeys) gone(bi string, why error) *subjectEntry {
	return &subjectEntry{bi: bi, opener: &SubjectOpener{main: k.main, gone: why}}
}

// generate makes a new keyset for a subject and its stored form.
func (k *SubjectKeys) generate(bi string) (*subjectEntry, []byte, error) {
	a, d, err := newSubjectHandles(k.main)
	if err != nil {
		return nil, nil, fmt.Errorf("new subject keyset: %w", err)
	}
	v, err := wrapSubject(k.main, bi, a, d)
	if err != nil {
		return nil, nil, err
	}
	ks, err := subjectPrimitives(a, d)
	if err != nil {
		return nil, nil, err
	}
	return k.entry(bi, ks), v, nil
}

func (k *SubjectKeys) entry(bi string, ks *subjectKeyset) *subjectEntry {
	return &subjectEntry{bi: bi, sealer: &SubjectSealer{ks: ks, main: k.main}, opener: &SubjectOpener{ks: ks, main: k.main}}
}

// Changed drops the cached keyset of a subject whose stored value changed
// (to a revision other than the cached one) or was removed. A miss under
// way for the subject does not cache what it read.
func (k *SubjectKeys) Changed(c SubjectChange) {
	bi, ok := blindIndexOf(c.Key)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, create := range []bool{true, false} {
		if f := k.flight[flightKey{bi, create}]; f != nil {
			f.stale = true
		}
	}
	if el := k.byBI[bi]; el != nil {
		if e := el.Value.(*subjectEntry); c.Removed || e.rev != c.Revision {
			k.lru.Remove(el)
			delete(k.byBI, bi)
		}
	}
}

// evictAll empties the cache.
func (k *SubjectKeys) evictAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range k.flight {
		f.stale = true
	}
	k.lru.Init()
	clear(k.byBI)
}

// Len is the number of cached subjects.
func (k *SubjectKeys) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lru.Len()
}

// subjectRewatch paces Watch's new subscriptions after the store's change
// feed stopped.
const subjectRewatch = 2 * time.Second

// Watch follows the store's changes (when it is a SubjectWatcher) and drops
// the cached keyset of every subject whose stored value changed or was
// erased, so a forgotten subject's keys stop being used within moments of
// `mdtap keys forget`. If the change feed stops, the whole cache is dropped
// (changes may have been missed) and the feed is opened again. Watch returns
// when ctx is done, at once when the store reports no changes.
func (k *SubjectKeys) Watch(ctx context.Context, log zerolog.Logger) {
	w, ok := k.store.(SubjectWatcher)
	if !ok {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ch, err := w.SubjectChanges(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Msg("keys: cannot watch the subject keysets; retrying")
			k.evictAll()
			t.Reset(subjectRewatch)
			continue
		}
		// The feed starts after the subscription: anything cached before
		// may be stale.
		k.evictAll()
		for c := range ch {
			k.Changed(c)
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn().Msg("keys: the subject keyset change feed stopped; dropping the cache and watching again")
		k.evictAll()
		t.Reset(subjectRewatch)
	}
}

// ForgetSubject destroys the keysets stored under a subject's blind indexes
// (one per PRF key; see redact.SubjectIndexes), crypto-shredding every value
// of the subject protected under them. It returns how many keysets there
// were. Readers then render the subject's values as shredded; the records'
// metadata and every other subject's values are untouched. Running sidecars
// drop their cached copy when their SubjectKeys.Watch sees the erasure.
func ForgetSubject(ctx context.Context, store SubjectAdmin, blindIndexes []string) (int, error) {
	n := 0
	for _, bi := range blindIndexes {
		key, err := SubjectStoreKey(bi)
		if err != nil {
			return n, fmt.Errorf("forget subject: %w", err)
		}
		ok, err := store.Erase(ctx, key)
		if err != nil {
			return n, fmt.Errorf("forget subject: erase %s: %w", key, err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// EraseSubjectsUnderPRF destroys every subject keyset stored under a blind
// index of the PRF key prfKeyID, and returns how many there were. Retiring a
// PRF key calls it: without the key nobody could compute those indexes to
// forget the subjects any more, and the records indexed under it are as old
// as the key's period.
func EraseSubjectsUnderPRF(ctx context.Context, store SubjectAdmin, prfKeyID uint32) (int, error) {
	ks, err := store.Keys(ctx, subjectPRFPrefix(prfKeyID))
	if err != nil {
		return 0, fmt.Errorf("list subject keysets of prf key %d: %w", prfKeyID, err)
	}
	n := 0
	for _, key := range ks {
		ok, err := store.Erase(ctx, key)
		if err != nil {
			return n, fmt.Errorf("erase subject keyset %s: %w", key, err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// RewrapSubjects wraps again, under main's primary AEAD key, every subject
// keyset wrapped by a main AEAD key for which from returns true, and returns
// how many it rewrapped. Retiring AEAD keys calls it before destroying them,
// so the subjects' keysets (and their data of later periods) survive. main
// must hold those keys. The store's compare-and-set keeps a concurrent
// writer's change; a subject erased meanwhile is skipped.
func RewrapSubjects(ctx context.Context, main *Set, store SubjectAdmin, from func(keyID uint32) bool) (int, error) {
	ks, err := store.Keys(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("list subject keysets: %w", err)
	}
	n := 0
	for _, key := range ks {
		bi, ok := blindIndexOf(key)
		if !ok {
			continue
		}
		done, err := rewrapOne(ctx, main, store, key, bi, from)
		if err != nil {
			return n, fmt.Errorf("rewrap subject keyset %s: %w", key, err)
		}
		if done {
			n++
		}
	}
	return n, nil
}

func rewrapOne(ctx context.Context, main *Set, store SubjectStore, key, bi string, from func(uint32) bool) (bool, error) {
	for range maxStoreRaces {
		v, rev, err := store.Get(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ids, err := wrappedBy(v)
		if err != nil {
			return false, err
		}
		stale := false
		for _, id := range ids {
			stale = stale || from(id)
		}
		if !stale {
			return false, nil
		}
		a, d, err := unwrapSubject(main, bi, v)
		if err != nil {
			return false, err
		}
		nv, err := wrapSubject(main, bi, a, d)
		if err != nil {
			return false, err
		}
		_, err = store.Update(ctx, key, nv, rev)
		if errors.Is(err, ErrStoreConflict) {
			continue
		}
		return err == nil, err
	}
	return false, errors.New("the store kept changing under concurrent writers")
}
