package keys

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mdtap/mdtap"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Set is the runtime view of a key directory: the keysets of the purposes it
// was loaded with, turned into Tink primitives once per load. It is safe for
// concurrent use. Reload (and Watch) swap in a new state atomically; calls in
// flight finish on the state they started with.
//
// Errors from Decrypt and Detokenize: errors.Is(err, mdtap.ErrShredded) when
// the value's key was destroyed; errors.Is(err, mdtap.ErrKeyUnavailable)
// when the purpose was not loaded or the key is disabled or unknown; any
// other error (wrong associated data, a damaged value) never contains the
// plaintext.
type Set struct {
	src      KeysetSource
	dir      string // the key directory of Load; "" for LoadFrom
	kekURI   string // LoadFrom's KEK URI; "" to use each metadata file's
	purposes []Purpose

	mu   sync.Mutex // serialises loads; guards keks
	keks map[string]tink.AEADWithContext

	st atomic.Pointer[state]
}

// KeyedHash is a PRF output under one key.
type KeyedHash struct {
	KeyID uint32
	Sum   []byte
}

// state is one loaded generation of the keysets. It is never modified after
// it is published.
type state struct {
	aead  *cipherState[tink.AEAD]
	daead *cipherState[tink.DeterministicAEAD]
	prf   *prfState
	// version digests the bytes of every file it was built from: Watch
	// reloads when the files on disk digest differently.
	version [sha256.Size]byte
}

// cipherState is a loaded AEAD or DAEAD keyset.
type cipherState[P any] struct {
	primaryID uint32
	prim      P // Tink's keyset primitive: primary for new values, prefix lookup for old
	// status answers for each known key id whether Decrypt may try it.
	status map[uint32]keyState
}

type keyState uint8

const (
	keyUnknown keyState = iota
	keyEnabled
	keyDisabled
	keyDestroyed
)

type prfState struct {
	primaryID uint32
	primary   prf.PRF
	// enabled is every enabled PRF, primary first, then by key id.
	enabled []keyedPRF
}

type keyedPRF struct {
	id  uint32
	prf prf.PRF
}

// Load reads the keysets of the given purposes from dir (all three when none
// is given) and builds their primitives. Roles can be split: a reader that
// only searches blind indexes loads PurposePRF alone and never holds the
// keys that decrypt. LoadFrom does the same from another KeysetSource.
func Load(ctx context.Context, dir string, purposes ...Purpose) (*Set, error) {
	return loadSet(ctx, dirSource(dir), dir, "", purposes)
}

// Dir returns the directory the set was loaded from; "" for a set loaded
// with LoadFrom.
func (s *Set) Dir() string { return s.dir }

// Source names where the set is loaded from: the directory, or the
// KeysetSource of LoadFrom.
func (s *Set) Source() string { return s.src.String() }

// Purposes returns the purposes the set was loaded with.
func (s *Set) Purposes() []Purpose { return slices.Clone(s.purposes) }

// Reload reads the keysets again and swaps them in. On error the set keeps
// its current state.
func (s *Set) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("load keys from %s: %w", s.src, err)
	}
	s.st.Store(st)
	return nil
}

func (s *Set) load(ctx context.Context) (*state, error) {
	fs, err := readSource(ctx, s.src, s.purposes)
	if err != nil {
		return nil, err
	}
	st := &state{version: digest(s.purposes, fs)}
	for i, p := range s.purposes {
		f := fs[i]
		kek, err := s.kek(ctx, s.kekFor(f.meta))
		if err != nil {
			return nil, err
		}
		h, err := openKeyset(ctx, location(s.src, p.keysetFile()), p, f.keyset, kek, s.kekFor(f.meta))
		if err != nil {
			return nil, err
		}
		primary, err := h.Primary()
		if err != nil {
			return nil, fmt.Errorf("%s keyset: %w", p, err)
		}
		switch p {
		case PurposeAEAD:
			a, err := aead.New(h)
			if err != nil {
				return nil, fmt.Errorf("aead keyset: %w", err)
			}
			st.aead = &cipherState[tink.AEAD]{primaryID: primary.KeyID(), prim: a, status: statuses(h, f.meta)}
		case PurposeDAEAD:
			d, err := daead.New(h)
			if err != nil {
				return nil, fmt.Errorf("daead keyset: %w", err)
			}
			st.daead = &cipherState[tink.DeterministicAEAD]{primaryID: primary.KeyID(), prim: d, status: statuses(h, f.meta)}
		case PurposePRF:
			ps, err := prf.NewPRFSet(h)
			if err != nil {
				return nil, fmt.Errorf("prf keyset: %w", err)
			}
			st.prf = newPRFState(ps)
		}
	}
	return st, nil
}

func digest(purposes []Purpose, fs []*files) [sha256.Size]byte {
	h := sha256.New()
	for i, p := range purposes {
		fmt.Fprintf(h, "%s %d %d\n", p, len(fs[i].keyset), len(fs[i].metaB))
		h.Write(fs[i].keyset)
		h.Write(fs[i].metaB)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// kekFor is the KEK URI a purpose's keyset is unwrapped with: LoadFrom's,
// else the one its metadata records.
func (s *Set) kekFor(m *meta) string {
	if s.kekURI != "" {
		return s.kekURI
	}
	return m.KEKURI
}

func (s *Set) kek(ctx context.Context, uri string) (tink.AEADWithContext, error) {
	if k, ok := s.keks[uri]; ok {
		return k, nil
	}
	k, err := openKEK(ctx, s.dir, uri, false)
	if err != nil {
		return nil, err
	}
	s.keks[uri] = k
	return k, nil
}

func statuses(h *keyset.Handle, m *meta) map[uint32]keyState {
	st := map[uint32]keyState{}
	for e := range entries(h) {
		if e.KeyStatus() == keyset.Enabled {
			st[e.KeyID()] = keyEnabled
		} else {
			st[e.KeyID()] = keyDisabled
		}
	}
	// The tombstone wins: a key destroyed in the metadata reads as shredded
	// even while (for a moment, or after a crash) the keyset still holds it.
	for id, km := range m.Keys {
		if !km.Destroyed.IsZero() {
			st[id] = keyDestroyed
		}
	}
	return st
}

func newPRFState(ps *prf.Set) *prfState {
	st := &prfState{primaryID: ps.PrimaryID, primary: ps.PRFs[ps.PrimaryID]}
	for id, p := range ps.PRFs {
		st.enabled = append(st.enabled, keyedPRF{id, p})
	}
	slices.SortFunc(st.enabled, func(a, b keyedPRF) int {
		return cmp.Or(cmp.Compare(rank(a.id, st.primaryID), rank(b.id, st.primaryID)), cmp.Compare(a.id, b.id))
	})
	return st
}

// rank sorts the primary key first.
func rank(id, primary uint32) int {
	if id == primary {
		return 0
	}
	return 1
}

// Primary returns the primary key id of each loaded purpose; zero for a
// purpose not loaded.
func (s *Set) Primary() mdtap.KeyIDs {
	st := s.st.Load()
	var ids mdtap.KeyIDs
	if st.aead != nil {
		ids.AEAD = st.aead.primaryID
	}
	if st.daead != nil {
		ids.DAEAD = st.daead.primaryID
	}
	if st.prf != nil {
		ids.PRF = st.prf.primaryID
	}
	return ids
}

var (
	errNoAEAD   = fmt.Errorf("aead keyset not loaded: %w", mdtap.ErrKeyUnavailable)
	errNoDAEAD  = fmt.Errorf("daead keyset not loaded: %w", mdtap.ErrKeyUnavailable)
	errNoPRF    = fmt.Errorf("prf keyset not loaded: %w", mdtap.ErrKeyUnavailable)
	errNoPrefix = errors.New("no Tink key prefix")
)

// Encrypt encrypts under the primary AEAD key. The ciphertext starts with
// Tink's 5-byte prefix naming the key.
func (s *Set) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	a := s.st.Load().aead
	if a == nil {
		return nil, fmt.Errorf("encrypt: %w", errNoAEAD)
	}
	ct, err := a.prim.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return ct, nil
}

// Decrypt decrypts an Encrypt ciphertext under whichever key it names.
func (s *Set) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	a := s.st.Load().aead
	if a == nil {
		return nil, fmt.Errorf("decrypt: %w", errNoAEAD)
	}
	if err := a.check(ciphertext); err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	pt, err := a.prim.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return pt, nil
}

// Tokenize encrypts deterministically under the primary DAEAD key: the same
// plaintext and associated data give the same token until daead is rotated.
func (s *Set) Tokenize(plaintext, associatedData []byte) ([]byte, error) {
	d := s.st.Load().daead
	if d == nil {
		return nil, fmt.Errorf("tokenize: %w", errNoDAEAD)
	}
	ct, err := d.prim.EncryptDeterministically(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	return ct, nil
}

// Detokenize reverses Tokenize under whichever key the token names.
func (s *Set) Detokenize(ciphertext, associatedData []byte) ([]byte, error) {
	d := s.st.Load().daead
	if d == nil {
		return nil, fmt.Errorf("detokenize: %w", errNoDAEAD)
	}
	if err := d.check(ciphertext); err != nil {
		return nil, fmt.Errorf("detokenize: %w", err)
	}
	pt, err := d.prim.DecryptDeterministically(ciphertext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("detokenize: %w", err)
	}
	return pt, nil
}

// knows reports whether the set holds purpose p (loaded) and, if so,
// whether it knows key id (in the keyset, or tombstoned in its metadata).
func (s *Set) knows(p Purpose, id uint32) (loaded, known bool) {
	st := s.st.Load()
	var status map[uint32]keyState
	switch p {
	case PurposeAEAD:
		if st.aead == nil {
			return false, false
		}
		status = st.aead.status
	case PurposeDAEAD:
		if st.daead == nil {
			return false, false
		}
		status = st.daead.status
	default:
		return false, false
	}
	return true, status[id] != keyUnknown
}

// knownIDs is every aead and daead key id the set knows, and 0.
func (s *Set) knownIDs() map[uint32]bool {
	ids := map[uint32]bool{0: true}
	st := s.st.Load()
	for _, c := range []map[uint32]keyState{statusMap(st.aead), statusMap(st.daead)} {
		for id := range c {
			ids[id] = true
		}
	}
	return ids
}

func statusMap[P any](c *cipherState[P]) map[uint32]keyState {
	if c == nil {
		return nil
	}
	return c.status
}

// check classifies a ciphertext by the key id in its prefix before Tink
// tries it, so a destroyed key reads as shredded rather than as a failure.
func (c *cipherState[P]) check(ciphertext []byte) error {
	id, ok := mdtap.TinkKeyID(ciphertext)
	if !ok {
		return errNoPrefix
	}
	switch c.status[id] {
	case keyEnabled:
		return nil
	case keyDestroyed:
		return fmt.Errorf("key %d: %w", id, mdtap.ErrShredded)
	case keyDisabled:
		return fmt.Errorf("key %d disabled: %w", id, mdtap.ErrKeyUnavailable)
	}
	return fmt.Errorf("key %d not in keyset: %w", id, mdtap.ErrKeyUnavailable)
}

// Hash computes the primary PRF of input: mdtap.HashBytes bytes, and the key
// id to write beside them. The same input gives the same output across
// restarts until prf is rotated.
func (s *Set) Hash(input []byte) (keyID uint32, sum []byte, err error) {
	p := s.st.Load().prf
	if p == nil {
		return 0, nil, fmt.Errorf("hash: %w", errNoPRF)
	}
	sum, err = p.primary.ComputePRF(input, mdtap.HashBytes)
	if err != nil {
		return 0, nil, fmt.Errorf("hash: %w", err)
	}
	return p.primaryID, sum, nil
}

// HashAll computes the PRF of input under every enabled PRF key, primary
// first: a blind-index search looks for each, so records hashed before a
// rotation are still found.
func (s *Set) HashAll(input []byte) ([]KeyedHash, error) {
	p := s.st.Load().prf
	if p == nil {
		return nil, fmt.Errorf("hash: %w", errNoPRF)
	}
	out := make([]KeyedHash, len(p.enabled))
	for i, k := range p.enabled {
		sum, err := k.prf.ComputePRF(input, mdtap.HashBytes)
		if err != nil {
			return nil, fmt.Errorf("hash under key %d: %w", k.id, err)
		}
		out[i] = KeyedHash{KeyID: k.id, Sum: sum}
	}
	return out, nil
}
