package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mdtap/mdtap/archive"
)

// RunHeadStore runs the HeadStore conformance suite. newHeads returns a new,
// empty head store for each subtest.
func RunHeadStore(t *testing.T, newHeads func(t *testing.T) archive.HeadStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, h archive.HeadStore)
	}{
		{"NoHead", testNoHead},
		{"CreateUpdate", testCreateUpdate},
		{"Conflicts", testConflicts},
		{"ChainsIndependent", testChainsIndependent},
		{"ConcurrentCAS", testConcurrentCAS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			tt.fn(t, ctx, newHeads(t))
		})
	}
}

func testNoHead(t *testing.T, ctx context.Context, hs archive.HeadStore) {
	if _, _, err := hs.Get(ctx, "new-chain"); !errors.Is(err, archive.ErrNoHead) {
		t.Fatalf("Get(new-chain) error = %v, want ErrNoHead", err)
	}
}

func testCreateUpdate(t *testing.T, ctx context.Context, hs archive.HeadStore) {
	h1 := archive.Head{Hash: "aa", Seq: 1, Records: 10}
	rev1, err := hs.Put(ctx, "c", h1, 0)
	if err != nil {
		t.Fatalf("Put(c, rev 0) on a new chain: %v", err)
	}
	if rev1 == 0 {
		t.Fatalf("Put(c, rev 0) returned revision 0")
	}
	got, rev, err := hs.Get(ctx, "c")
	if err != nil || got != h1 || rev != rev1 {
		t.Fatalf("Get(c) = %+v, %d, %v; want %+v, %d, nil", got, rev, err, h1, rev1)
	}
	h2 := archive.Head{Hash: "bb", Seq: 3, Records: 25}
	rev2, err := hs.Put(ctx, "c", h2, rev1)
	if err != nil {
		t.Fatalf("Put(c, rev %d): %v", rev1, err)
	}
	if rev2 == rev1 || rev2 == 0 {
		t.Fatalf("Put(c) returned revision %d after %d, want a new non-zero one", rev2, rev1)
	}
	got, rev, err = hs.Get(ctx, "c")
	if err != nil || got != h2 || rev != rev2 {
		t.Fatalf("Get(c) = %+v, %d, %v; want %+v, %d, nil", got, rev, err, h2, rev2)
	}
}

func testConflicts(t *testing.T, ctx context.Context, hs archive.HeadStore) {
	rev1, err := hs.Put(ctx, "c", archive.Head{Hash: "aa", Seq: 1, Records: 1}, 0)
	if err != nil {
		t.Fatalf("Put(c, rev 0): %v", err)
	}
	if _, err := hs.Put(ctx, "c", archive.Head{Hash: "xx", Seq: 1, Records: 1}, 0); !errors.Is(err, archive.ErrHeadConflict) {
		t.Errorf("Put(c, rev 0) on an existing chain: error = %v, want ErrHeadConflict", err)
	}
	rev2, err := hs.Put(ctx, "c", archive.Head{Hash: "bb", Seq: 2, Records: 2}, rev1)
	if err != nil {
		t.Fatalf("Put(c, rev %d): %v", rev1, err)
	}
	if _, err := hs.Put(ctx, "c", archive.Head{Hash: "yy", Seq: 2, Records: 2}, rev1); !errors.Is(err, archive.ErrHeadConflict) {
		t.Errorf("Put(c) with a stale revision: error = %v, want ErrHeadConflict", err)
	}
	if _, err := hs.Put(ctx, "c", archive.Head{Hash: "zz", Seq: 2, Records: 2}, rev2+1000); !errors.Is(err, archive.ErrHeadConflict) {
		t.Errorf("Put(c) with a future revision: error = %v, want ErrHeadConflict", err)
	}
	got, rev, err := hs.Get(ctx, "c")
	if err != nil || got.Hash != "bb" || rev != rev2 {
		t.Errorf("Get(c) after refused puts = %+v, %d, %v; want hash bb, revision %d", got, rev, err, rev2)
	}
}

func testChainsIndependent(t *testing.T, ctx context.Context, hs archive.HeadStore) {
	ra, err := hs.Put(ctx, "chain-a", archive.Head{Hash: "a1", Seq: 1}, 0)
	if err != nil {
		t.Fatalf("Put(chain-a): %v", err)
	}
	if _, err := hs.Put(ctx, "chain-b", archive.Head{Hash: "b1", Seq: 1}, 0); err != nil {
		t.Fatalf("Put(chain-b, rev 0) next to chain-a: %v", err)
	}
	if _, err := hs.Put(ctx, "chain-a", archive.Head{Hash: "a2", Seq: 2}, ra); err != nil {
		t.Fatalf("Put(chain-a, rev %d) after chain-b changed: %v", ra, err)
	}
	a, _, errA := hs.Get(ctx, "chain-a")
	b, _, errB := hs.Get(ctx, "chain-b")
	if errA != nil || errB != nil || a.Hash != "a2" || b.Hash != "b1" {
		t.Errorf("Get = %+v (%v), %+v (%v); want a2, b1", a, errA, b, errB)
	}
	if _, _, err := hs.Get(ctx, "chain"); !errors.Is(err, archive.ErrNoHead) {
		t.Errorf("Get(chain) with only chain-a and chain-b: error = %v, want ErrNoHead", err)
	}
}

// testConcurrentCAS: of writers racing from one revision, exactly one wins.
func testConcurrentCAS(t *testing.T, ctx context.Context, hs archive.HeadStore) {
	rev, err := hs.Put(ctx, "c", archive.Head{Hash: "start", Seq: 1}, 0)
	if err != nil {
		t.Fatalf("Put(c): %v", err)
	}
	const writers = 8
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = hs.Put(ctx, "c", archive.Head{Hash: string(rune('a' + i)), Seq: 2}, rev)
		})
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, archive.ErrHeadConflict):
			t.Errorf("writer %d: error = %v, want nil or ErrHeadConflict", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers won the compare-and-set, want 1", wins)
	}
}
