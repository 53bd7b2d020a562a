package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
)

// Keys by period serve retention: rotate on a schedule (say monthly), so
// that each key protects one period's values, and destroy a key once its
// period has been past the retention for long enough. Retire does the
// second half.

// RetireOptions say which keys Retire destroys.
type RetireOptions struct {
	// OlderThan is the retention: a key whose period ended more than
	// OlderThan before Now is destroyed. Required.
	OlderThan time.Duration
	// Purposes limits Retire to these keysets; all three when empty.
	Purposes []Purpose
	// DryRun reports what would be destroyed and changes nothing.
	DryRun bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// BeforeDestroy, when set, is called under the management lock with the
	// keys about to be destroyed, before any is (never on a dry run). An
	// error stops Retire with nothing destroyed. `mdtap keys retire --nats`
	// uses it to re-wrap the per-subject keysets wrapped by retiring aead
	// keys and to erase those indexed under retiring prf keys. It must not
	// Load or manage dir itself: the lock is held.
	BeforeDestroy func(ctx context.Context, keys []Retired) error
}

// Retired is a key Retire destroyed, or would destroy on a dry run.
type Retired struct {
	KeyInfo
	// PeriodEnd is when the key stopped protecting new values: when another
	// key was promoted over it; for metadata written before mdtap recorded
	// that, when the next key of its keyset was created; for a key that was
	// never primary, its creation.
	PeriodEnd time.Time
}

// RetireResult says what Retire did.
type RetireResult struct {
	// Destroyed is the keys destroyed (on a dry run: that would be), by
	// purpose and period end.
	Destroyed []Retired
	// Unknown is the non-primary keys Retire left alone because their
	// metadata has no creation time, so their period is unknown.
	Unknown []KeyInfo
}

// Retire destroys (crypto-shreds) every key of dir whose period ended more
// than o.OlderThan ago. It never destroys a primary key, whatever its age,
// and skips keys already destroyed. Destroying works as Destroy does: the
// tombstone first, then the key leaves the keyset. Everything happens under
// one exclusive lock, so the plan and the destruction see the same keys.
func Retire(ctx context.Context, dir string, o RetireOptions) (RetireResult, error) {
	var res RetireResult
	if o.OlderThan <= 0 {
		return res, errors.New("retire keys: the retention (older than) must be positive")
	}
	ps := o.Purposes
	if len(ps) == 0 {
		ps = Purposes()
	}
	for _, p := range ps {
		if !p.valid() {
			return res, fmt.Errorf("retire keys: unknown purpose %q", p)
		}
	}
	clock := o.Now
	if clock == nil {
		clock = time.Now
	}
	cutoff := clock().Add(-o.OlderThan)
	err := manage(ctx, dir, func(d *dirKeys) error {
		for _, p := range Purposes() {
			if !slices.Contains(ps, p) {
				continue
			}
			r := d.rings[p]
			for e := range entries(r.h) {
				id := e.KeyID()
				switch r.status(id) {
				case StatusEnabled, StatusDisabled:
				default:
					continue
				}
				end, ok := r.periodEnd(id)
				switch {
				case !ok:
					res.Unknown = append(res.Unknown, r.info(id))
				case end.Before(cutoff):
					res.Destroyed = append(res.Destroyed, Retired{KeyInfo: r.info(id), PeriodEnd: end})
				}
			}
		}
		slices.SortFunc(res.Destroyed, func(a, b Retired) int {
			return cmp.Or(cmp.Compare(purposeRank(a.Purpose), purposeRank(b.Purpose)), a.PeriodEnd.Compare(b.PeriodEnd), cmp.Compare(a.KeyID, b.KeyID))
		})
		if o.DryRun || len(res.Destroyed) == 0 {
			return nil
		}
		if o.BeforeDestroy != nil {
			if err := o.BeforeDestroy(ctx, slices.Clone(res.Destroyed)); err != nil {
				return err
			}
		}
		mgrs := map[Purpose]*keyset.Manager{}
		for _, k := range res.Destroyed {
			r := d.rings[k.Purpose]
			mgr, err := r.destroy(mgrs[k.Purpose], k.KeyID)
			if err != nil {
				return fmt.Errorf("key %d: %w", k.KeyID, err)
			}
			mgrs[k.Purpose] = mgr
		}
		for _, p := range Purposes() {
			if _, ok := mgrs[p]; !ok {
				continue
			}
			if err := d.save(d.rings[p], mgrs[p], true); err != nil {
				return err
			}
		}
		for i := range res.Destroyed {
			k := &res.Destroyed[i]
			k.Status, k.Destroyed = StatusDestroyed, d.rings[k.Purpose].m.Keys[k.KeyID].Destroyed
		}
		return nil
	})
	if err != nil {
		return RetireResult{}, fmt.Errorf("retire keys: %w", err)
	}
	return res, nil
}

func purposeRank(p Purpose) int { return slices.Index(Purposes(), p) }

// periodEnd is when key id stopped protecting new values; false when its
// metadata has no creation time.
func (r *ring) periodEnd(id uint32) (time.Time, bool) {
	km := r.m.Keys[id]
	if km == nil || km.Created.IsZero() {
		return time.Time{}, false
	}
	if !km.Superseded.IsZero() {
		return km.Superseded, true
	}
	// Metadata from before mdtap recorded supersession: rotations create
	// and promote together, so the next key's creation is when this one's
	// period ended.
	var next time.Time
	for other, o := range r.m.Keys {
		if other != id && o.Created.After(km.Created) && (next.IsZero() || o.Created.Before(next)) {
			next = o.Created
		}
	}
	if !next.IsZero() {
		return next, true
	}
	return km.Created, true
}
