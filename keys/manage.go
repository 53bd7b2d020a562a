package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Errors the management operations return for conditions callers branch on.
var (
	// ErrKeyNotFound: no keyset of DIR has a key of that id.
	ErrKeyNotFound = errors.New("no such key")
	// ErrAmbiguousKeyID: the id is in more than one keyset. Tink draws key
	// ids at random per keyset and mdtap avoids ids the other keysets use, so
	// this only happens with keysets made elsewhere.
	ErrAmbiguousKeyID = errors.New("key id is in more than one keyset")
	// ErrPrimaryKey: the operation would leave the keyset without a primary
	// (disable, destroy). Promote another key first.
	ErrPrimaryKey = errors.New("key is primary")
	// ErrKeyDestroyed: the key was destroyed and cannot come back.
	ErrKeyDestroyed = errors.New("key is destroyed")
	// ErrKeyDisabled: the key is disabled; enable it first.
	ErrKeyDisabled = errors.New("key is disabled")
)

// KeyInfo describes one key.
type KeyInfo struct {
	Purpose Purpose
	KeyID   uint32
	// Status is StatusPrimary, StatusEnabled, StatusDisabled or
	// StatusDestroyed.
	Status string
	// Created is when the key was made; zero if its metadata was lost.
	Created time.Time
	// Superseded is when the key stopped being primary, zero if it is
	// primary, never was, or the metadata predates the field.
	Superseded time.Time
	// Disabled and Destroyed are when that happened, zero otherwise.
	Disabled, Destroyed time.Time
}

// now is the management clock: metadata times are UTC.
func now() time.Time { return time.Now().UTC() }

// Init creates the three keysets in dir, each with one primary key, wrapped
// by the KEK of kekURI; "" is DefaultKEKURI, a local KEK at DIR/kek.json that
// Init generates. A local KEK named by another local:// URI is generated too
// when its file does not exist. Init creates dir (mode 0700) if needed and
// sets its mode to 0700; it refuses, with an error matching fs.ErrExist, to
// overwrite keysets or metadata already there. Nothing is written unless the
// KEK wrapped and unwrapped all three keysets.
func Init(ctx context.Context, dir, kekURI string) error {
	if kekURI == "" {
		kekURI = DefaultKEKURI
	}
	if err := checkKEKURI(kekURI); err != nil {
		return fmt.Errorf("init keys: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("init keys: %w", err)
	}
	unlock, err := lockExclusive(ctx, dir)
	if err != nil {
		return fmt.Errorf("init keys: %w", err)
	}
	defer unlock()
	for _, p := range Purposes() {
		for _, path := range []string{keysetPath(dir, p), metaPath(dir, p)} {
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("init keys: %s exists, refusing to overwrite: %w", path, fs.ErrExist)
			}
		}
	}
	kek, err := openKEK(ctx, dir, kekURI, true)
	if err != nil {
		return fmt.Errorf("init keys: %w", err)
	}

	type out struct{ keyset, meta []byte }
	outs := map[Purpose]out{}
	taken := map[uint32]bool{}
	created := now()
	for _, p := range Purposes() {
		mgr := keyset.NewManager()
		id, err := addKey(mgr, p, taken)
		if err != nil {
			return fmt.Errorf("init keys: %w", err)
		}
		if err := mgr.SetPrimary(id); err != nil {
			return fmt.Errorf("init keys: %s: %w", p, err)
		}
		h, err := mgr.Handle()
		if err != nil {
			return fmt.Errorf("init keys: %s: %w", p, err)
		}
		enc, err := encryptKeyset(ctx, p, h, kek)
		if err != nil {
			return fmt.Errorf("init keys: %w", err)
		}
		// Prove the KEK unwraps what it wrapped (a KMS key may allow
		// Encrypt but not Decrypt) before any file exists.
		if _, err := decryptKeyset(ctx, dir, p, enc, kek, kekURI); err != nil {
			return fmt.Errorf("init keys: %w", err)
		}
		m := newMeta(p, kekURI)
		m.key(id).Created = created
		mb, err := encodeMeta(m)
		if err != nil {
			return fmt.Errorf("init keys: %w", err)
		}
		outs[p] = out{enc, mb}
	}
	// A failed write (a full disk) removes what this Init wrote, so that it
	// can simply be run again.
	var written []string
	for _, p := range Purposes() {
		for _, f := range []struct {
			path string
			data []byte
		}{{metaPath(dir, p), outs[p].meta}, {keysetPath(dir, p), outs[p].keyset}} {
			if err := writeFileNew(f.path, f.data); err != nil {
				for _, w := range written {
					os.Remove(w)
				}
				return fmt.Errorf("init keys: %w", err)
			}
			written = append(written, f.path)
		}
	}
	return nil
}

// Add adds a new key to the keyset of p, enabled but not primary, and
// returns its id. This is the first half of a fleet rotation: once every
// reader has loaded the new key, Promote makes it primary.
func Add(ctx context.Context, dir string, p Purpose) (uint32, error) {
	return addOrRotate(ctx, dir, p, false)
}

// Rotate adds a new key to the keyset of p and makes it primary at once, for
// a single node. Older keys stay enabled: what they protected still
// decrypts. Rotating daead changes every token from then on; rotating prf
// changes every hash and blind index (HashAll still computes the old ones).
func Rotate(ctx context.Context, dir string, p Purpose) (uint32, error) {
	return addOrRotate(ctx, dir, p, true)
}

func addOrRotate(ctx context.Context, dir string, p Purpose, primary bool) (uint32, error) {
	verb := "add"
	if primary {
		verb = "rotate"
	}
	if !p.valid() {
		return 0, fmt.Errorf("%s key: unknown purpose %q", verb, p)
	}
	var id uint32
	err := manage(ctx, dir, func(d *dirKeys) error {
		r := d.rings[p]
		mgr := keyset.NewManagerFromHandle(r.h)
		var err error
		if id, err = addKey(mgr, p, d.ids()); err != nil {
			return err
		}
		r.m.key(id).Created = now()
		if primary {
			if err := r.promote(mgr, id); err != nil {
				return err
			}
		}
		return d.save(r, mgr, false)
	})
	if err != nil {
		return 0, fmt.Errorf("%s %s key: %w", verb, p, err)
	}
	return id, nil
}

// Promote makes an enabled key its keyset's primary.
func Promote(ctx context.Context, dir string, keyID uint32) error {
	err := manage(ctx, dir, func(d *dirKeys) error {
		r, err := d.find(keyID)
		if err != nil {
			return err
		}
		switch r.status(keyID) {
		case StatusPrimary:
			return nil
		case StatusDisabled:
			return fmt.Errorf("%w: enable it first", ErrKeyDisabled)
		case StatusDestroyed:
			return ErrKeyDestroyed
		}
		mgr := keyset.NewManagerFromHandle(r.h)
		if err := r.promote(mgr, keyID); err != nil {
			return err
		}
		return d.save(r, mgr, false)
	})
	if err != nil {
		return fmt.Errorf("promote key %d: %w", keyID, err)
	}
	return nil
}

// Disable keeps a key but stops its use: values under it fail to decrypt
// with mdtap.ErrKeyUnavailable and HashAll leaves it out, until Enable. It
// refuses the primary key.
func Disable(ctx context.Context, dir string, keyID uint32) error {
	err := manage(ctx, dir, func(d *dirKeys) error {
		r, err := d.find(keyID)
		if err != nil {
			return err
		}
		switch r.status(keyID) {
		case StatusPrimary:
			return fmt.Errorf("%w: promote another key first", ErrPrimaryKey)
		case StatusDestroyed:
			return ErrKeyDestroyed
		case StatusDisabled:
			return nil
		}
		mgr := keyset.NewManagerFromHandle(r.h)
		if err := mgr.Disable(keyID); err != nil {
			return err
		}
		r.m.key(keyID).Disabled = now()
		return d.save(r, mgr, false)
	})
	if err != nil {
		return fmt.Errorf("disable key %d: %w", keyID, err)
	}
	return nil
}

// Enable enables a disabled key again. A destroyed key cannot be enabled.
func Enable(ctx context.Context, dir string, keyID uint32) error {
	err := manage(ctx, dir, func(d *dirKeys) error {
		r, err := d.find(keyID)
		if err != nil {
			return err
		}
		switch r.status(keyID) {
		case StatusPrimary, StatusEnabled:
			return nil
		case StatusDestroyed:
			return ErrKeyDestroyed
		}
		mgr := keyset.NewManagerFromHandle(r.h)
		if err := mgr.Enable(keyID); err != nil {
			return err
		}
		r.m.key(keyID).Disabled = time.Time{}
		return d.save(r, mgr, false)
	})
	if err != nil {
		return fmt.Errorf("enable key %d: %w", keyID, err)
	}
	return nil
}

// Destroy crypto-shreds a key: its material is removed from the keyset for
// good and its metadata keeps a tombstone, so values under it decrypt to
// mdtap.ErrShredded. It refuses the primary key. Destroying a destroyed key
// does nothing.
func Destroy(ctx context.Context, dir string, keyID uint32) error {
	err := manage(ctx, dir, func(d *dirKeys) error {
		r, err := d.find(keyID)
		if err != nil {
			return err
		}
		if r.status(keyID) == StatusPrimary {
			return fmt.Errorf("%w: promote another key first", ErrPrimaryKey)
		}
		mgr, err := r.destroy(nil, keyID)
		if err != nil {
			return err
		}
		// The tombstone is written before the keyset loses the key: in
		// between, or after a crash there, readers already report the key
		// shredded, and running destroy again finishes the job.
		return d.save(r, mgr, true)
	})
	if err != nil {
		return fmt.Errorf("destroy key %d: %w", keyID, err)
	}
	return nil
}

// List reports every key of the three keysets, destroyed ones included, by
// purpose and then by creation time.
func List(ctx context.Context, dir string) ([]KeyInfo, error) {
	var infos []KeyInfo
	err := withDir(ctx, dir, false, func(d *dirKeys) error {
		for _, p := range Purposes() {
			r := d.rings[p]
			start := len(infos)
			seen := map[uint32]bool{}
			for e := range entries(r.h) {
				seen[e.KeyID()] = true
				infos = append(infos, r.info(e.KeyID()))
			}
			for id, km := range r.m.Keys {
				if !seen[id] && !km.Destroyed.IsZero() {
					infos = append(infos, r.info(id))
				}
			}
			slices.SortStableFunc(infos[start:], func(a, b KeyInfo) int {
				return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.KeyID, b.KeyID))
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return infos, nil
}

// dirKeys is a key directory opened for management: every purpose's keyset
// decrypted, with its metadata.
type dirKeys struct {
	ctx   context.Context
	dir   string
	rings map[Purpose]*ring
	keks  map[string]tink.AEADWithContext
}

// ring is one purpose's keyset and metadata.
type ring struct {
	p Purpose
	h *keyset.Handle
	m *meta
}

// manage runs fn on dir under the exclusive lock.
func manage(ctx context.Context, dir string, fn func(*dirKeys) error) error {
	return withDir(ctx, dir, true, fn)
}

func withDir(ctx context.Context, dir string, exclusive bool, fn func(*dirKeys) error) error {
	if _, err := os.Stat(dir); err != nil {
		return notInitialised(dir, err)
	}
	lock := lockShared
	if exclusive {
		lock = lockExclusive
	}
	unlock, err := lock(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	d := &dirKeys{ctx: ctx, dir: dir, rings: map[Purpose]*ring{}, keks: map[string]tink.AEADWithContext{}}
	for _, p := range Purposes() {
		f, err := readFiles(dir, p)
		if err != nil {
			return err
		}
		kek, err := d.kek(f.meta.KEKURI)
		if err != nil {
			return err
		}
		h, err := decryptKeyset(ctx, dir, p, f.keyset, kek, f.meta.KEKURI)
		if err != nil {
			return err
		}
		d.rings[p] = &ring{p: p, h: h, m: f.meta}
	}
	return fn(d)
}

func (d *dirKeys) kek(uri string) (tink.AEADWithContext, error) {
	if k, ok := d.keks[uri]; ok {
		return k, nil
	}
	k, err := openKEK(d.ctx, d.dir, uri, false)
	if err != nil {
		return nil, err
	}
	d.keks[uri] = k
	return k, nil
}

// ids is every key id in use or tombstoned in any keyset, and 0, which
// mdtap.KeyIDs cannot tell from "none".
func (d *dirKeys) ids() map[uint32]bool {
	ids := map[uint32]bool{0: true}
	for _, r := range d.rings {
		for e := range entries(r.h) {
			ids[e.KeyID()] = true
		}
		for id := range r.m.Keys {
			ids[id] = true
		}
	}
	return ids
}

// find returns the one keyset that has (or had) keyID.
func (d *dirKeys) find(keyID uint32) (*ring, error) {
	var found []*ring
	for _, p := range Purposes() {
		r := d.rings[p]
		if _, ok := r.m.Keys[keyID]; ok || r.inKeyset(keyID) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w in %s", ErrKeyNotFound, d.dir)
	case 1:
		return found[0], nil
	}
	ps := make([]Purpose, len(found))
	for i, r := range found {
		ps[i] = r.p
	}
	return nil, fmt.Errorf("%w (%s): refusing to guess", ErrAmbiguousKeyID, purposeList(ps))
}

// save writes a ring's keyset (from mgr, unless nil) and metadata. The
// keyset goes first unless metaFirst: a reader between the two writes sees
// a new key without its creation time, which is harmless.
func (d *dirKeys) save(r *ring, mgr *keyset.Manager, metaFirst bool) error {
	var enc []byte
	if mgr != nil {
		h, err := mgr.Handle()
		if err != nil {
			return err
		}
		kek, err := d.kek(r.m.KEKURI)
		if err != nil {
			return err
		}
		if enc, err = encryptKeyset(d.ctx, r.p, h, kek); err != nil {
			return err
		}
		r.h = h
	}
	mb, err := encodeMeta(r.m)
	if err != nil {
		return err
	}
	writeKeyset := func() error {
		if enc == nil {
			return nil
		}
		return writeFileAtomic(keysetPath(d.dir, r.p), enc)
	}
	if metaFirst {
		if err := writeFileAtomic(metaPath(d.dir, r.p), mb); err != nil {
			return err
		}
		return writeKeyset()
	}
	if err := writeKeyset(); err != nil {
		return err
	}
	return writeFileAtomic(metaPath(d.dir, r.p), mb)
}

// promote makes id the primary of mgr and records the previous primary's
// end of period.
func (r *ring) promote(mgr *keyset.Manager, id uint32) error {
	var old uint32
	if e, err := r.h.Primary(); err == nil {
		old = e.KeyID()
	}
	if err := mgr.SetPrimary(id); err != nil {
		return err
	}
	if old != 0 && old != id {
		r.m.key(old).Superseded = now()
	}
	if km := r.m.Keys[id]; km != nil {
		km.Superseded = time.Time{}
	}
	return nil
}

// destroy tombstones keyID in the metadata and deletes it from mgr's keyset
// (a new manager of r's keyset when mgr is nil). It returns the manager,
// nil when the keyset did not hold the key any more.
func (r *ring) destroy(mgr *keyset.Manager, keyID uint32) (*keyset.Manager, error) {
	km := r.m.key(keyID)
	if km.Destroyed.IsZero() {
		km.Destroyed = now()
	}
	if !r.inKeyset(keyID) {
		return mgr, nil
	}
	if mgr == nil {
		mgr = keyset.NewManagerFromHandle(r.h)
	}
	if err := mgr.Delete(keyID); err != nil {
		return nil, err
	}
	return mgr, nil
}

func (r *ring) inKeyset(id uint32) bool {
	for e := range entries(r.h) {
		if e.KeyID() == id {
			return true
		}
	}
	return false
}

// status is a key's status: the metadata's tombstone wins over the keyset.
func (r *ring) status(id uint32) string {
	if r.m.destroyed(id) {
		return StatusDestroyed
	}
	for e := range entries(r.h) {
		if e.KeyID() != id {
			continue
		}
		switch {
		case e.IsPrimary():
			return StatusPrimary
		case e.KeyStatus() == keyset.Enabled:
			return StatusEnabled
		default:
			return StatusDisabled
		}
	}
	return ""
}

func (r *ring) info(id uint32) KeyInfo {
	ki := KeyInfo{Purpose: r.p, KeyID: id, Status: r.status(id)}
	if km := r.m.Keys[id]; km != nil {
		ki.Created, ki.Superseded, ki.Disabled, ki.Destroyed = km.Created, km.Superseded, km.Disabled, km.Destroyed
	}
	return ki
}

// addKey adds a key of purpose p to mgr whose id is not in taken, and marks
// it taken. Tink draws ids at random and avoids only the ids of mgr's own
// keyset; mdtap keeps them unique across the three keysets and never reuses
// a destroyed key's id, so a key id always names one key.
func addKey(mgr *keyset.Manager, p Purpose, taken map[uint32]bool) (uint32, error) {
	for {
		id, err := mgr.Add(p.template())
		if err != nil {
			return 0, fmt.Errorf("new %s key: %w", p, err)
		}
		if !taken[id] {
			taken[id] = true
			return id, nil
		}
		if err := mgr.Delete(id); err != nil {
			return 0, fmt.Errorf("new %s key: %w", p, err)
		}
	}
}

// entries iterates over a keyset's entries.
func entries(h *keyset.Handle) func(yield func(*keyset.Entry) bool) {
	return func(yield func(*keyset.Entry) bool) {
		for i := range h.Len() {
			e, err := h.Entry(i)
			if err != nil || !yield(e) {
				return
			}
		}
	}
}
