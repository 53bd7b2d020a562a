package keys

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

const day = 24 * time.Hour

// setTimes rewrites the creation and supersession times of a key.
func setTimes(t *testing.T, dir string, p Purpose, id uint32, created, superseded time.Time) {
	t.Helper()
	editMeta(t, dir, p, func(m *meta) {
		km := m.key(id)
		km.Created, km.Superseded = created, superseded
	})
}

func TestRotateRecordsSupersession(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	first := load(t, dir).Primary().AEAD
	second, err := Rotate(ctx, dir, PurposeAEAD)
	if err != nil {
		t.Fatal(err)
	}
	info := func(id uint32) KeyInfo {
		for _, ki := range list(t, dir) {
			if ki.KeyID == id {
				return ki
			}
		}
		t.Fatalf("no key %d", id)
		return KeyInfo{}
	}
	if info(first).Superseded.IsZero() || !info(second).Superseded.IsZero() {
		t.Errorf("after rotate: superseded %v (old), %v (new); want set, zero", info(first).Superseded, info(second).Superseded)
	}
	if err := Promote(ctx, dir, first); err != nil {
		t.Fatal(err)
	}
	if !info(first).Superseded.IsZero() || info(second).Superseded.IsZero() {
		t.Errorf("after promoting back: superseded %v (first), %v (second); want zero, set", info(first).Superseded, info(second).Superseded)
	}
}

func TestRetire(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := newDir(t)
	k1 := load(t, dir).Primary().AEAD
	k2, _ := Rotate(ctx, dir, PurposeAEAD)
	k3, _ := Rotate(ctx, dir, PurposeAEAD)
	pending, _ := Add(ctx, dir, PurposeAEAD) // added, never promoted
	setTimes(t, dir, PurposeAEAD, k1, now.Add(-200*day), now.Add(-100*day))
	setTimes(t, dir, PurposeAEAD, k2, now.Add(-100*day), now.Add(-10*day))
	setTimes(t, dir, PurposeAEAD, k3, now.Add(-1000*day), time.Time{}) // primary, however old
	setTimes(t, dir, PurposeAEAD, pending, now.Add(-95*day), time.Time{})
	prf := load(t, dir).Primary().PRF
	setTimes(t, dir, PurposePRF, prf, now.Add(-1000*day), time.Time{})

	set := load(t, dir)
	ct1, _ := set.Encrypt([]byte("old"), nil) // under k3, the primary
	_ = ct1

	o := RetireOptions{OlderThan: 90 * day, Now: clock, DryRun: true}
	res, err := Retire(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(rs []Retired) []uint32 {
		var out []uint32
		for _, r := range rs {
			out = append(out, r.KeyID)
		}
		return out
	}
	if got := ids(res.Destroyed); !slices.Equal(got, []uint32{pending, k1}) && !slices.Equal(got, []uint32{k1, pending}) {
		t.Errorf("dry run would destroy %v, want k1 %d and the pending key %d", got, k1, pending)
	}
	if statusOf(t, dir, k1) != StatusEnabled {
		t.Error("a dry run destroyed a key")
	}
	for _, r := range res.Destroyed {
		if r.KeyID == k1 && !r.PeriodEnd.Equal(now.Add(-100*day)) {
			t.Errorf("k1 period end %v, want its supersession %v", r.PeriodEnd, now.Add(-100*day))
		}
	}

	// A hook error stops everything.
	o.DryRun = false
	o.BeforeDestroy = func(context.Context, []Retired) error { return errors.New("no") }
	if _, err := Retire(ctx, dir, o); err == nil {
		t.Error("Retire with a failing hook: no error")
	}
	if statusOf(t, dir, k1) != StatusEnabled {
		t.Error("a failing hook did not stop the destruction")
	}

	var seen []Retired
	o.BeforeDestroy = func(_ context.Context, ks []Retired) error { seen = ks; return nil }
	res, err = Retire(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || len(res.Destroyed) != 2 {
		t.Errorf("hook saw %d keys, Retire destroyed %d; want 2 and 2", len(seen), len(res.Destroyed))
	}
	for id, want := range map[uint32]string{k1: StatusDestroyed, pending: StatusDestroyed, k2: StatusEnabled, k3: StatusPrimary, prf: StatusPrimary} {
		if got := statusOf(t, dir, id); got != want {
			t.Errorf("key %d: status %s, want %s", id, got, want)
		}
	}
	if err := set.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Decrypt(ct1, nil); err != nil {
		t.Errorf("value under the primary after retire: %v", err)
	}
	// Nothing more to do until time passes.
	if res, err := Retire(ctx, dir, RetireOptions{OlderThan: 90 * day, Now: clock}); err != nil || len(res.Destroyed) != 0 {
		t.Errorf("second Retire = %v, %v; want nothing", ids(res.Destroyed), err)
	}
	res, err = Retire(ctx, dir, RetireOptions{OlderThan: 90 * day, Now: func() time.Time { return now.Add(90 * day) }, Purposes: []Purpose{PurposeDAEAD}})
	if err != nil || len(res.Destroyed) != 0 {
		t.Errorf("Retire of daead only = %v, %v; want nothing (k2 is aead)", ids(res.Destroyed), err)
	}
}

// Metadata without supersession times: a key's period ends when the next
// key was created.
func TestRetireLegacyMetadata(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	dir := newDir(t)
	k1 := load(t, dir).Primary().DAEAD
	k2, _ := Rotate(ctx, dir, PurposeDAEAD)
	k3, _ := Rotate(ctx, dir, PurposeDAEAD)
	setTimes(t, dir, PurposeDAEAD, k1, now.Add(-200*day), time.Time{})
	setTimes(t, dir, PurposeDAEAD, k2, now.Add(-150*day), time.Time{})
	setTimes(t, dir, PurposeDAEAD, k3, now.Add(-5*day), time.Time{})
	editMeta(t, dir, PurposeAEAD, func(m *meta) { m.key(load(t, dir).Primary().AEAD).Created = time.Time{} })
	res, err := Retire(ctx, dir, RetireOptions{OlderThan: 90 * day})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Destroyed) != 1 || res.Destroyed[0].KeyID != k1 {
		t.Errorf("destroyed %+v, want k1 only (k2's period ended 5 days ago)", res.Destroyed)
	}
	if _, err := Retire(ctx, dir, RetireOptions{}); err == nil {
		t.Error("Retire without a retention: no error")
	}
}

func TestRetireUnknownAge(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	k1 := load(t, dir).Primary().AEAD
	Rotate(ctx, dir, PurposeAEAD)
	editMeta(t, dir, PurposeAEAD, func(m *meta) { delete(m.Keys, k1) })
	res, err := Retire(ctx, dir, RetireOptions{OlderThan: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unknown) != 1 || res.Unknown[0].KeyID != k1 || statusOf(t, dir, k1) != StatusEnabled {
		t.Errorf("a key without metadata: unknown %+v, status %s; want it reported and kept", res.Unknown, statusOf(t, dir, k1))
	}
}
