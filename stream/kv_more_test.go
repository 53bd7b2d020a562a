package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap/internal/natstest"
)

func openTestBucket(t *testing.T, srv *natstest.Server, cfg BucketConfig) *Bucket {
	t.Helper()
	b, err := OpenBucket(t.Context(), srv.Conn(t), cfg)
	if err != nil {
		t.Fatalf("OpenBucket: %v", err)
	}
	return b
}

func TestBucketCompareAndSet(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	b := openTestBucket(t, srv, BucketConfig{Bucket: "t_cas"})

	st, err := b.kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 {
		t.Errorf("History = %d, want the default 1", st.History())
	}
	rev, err := b.Create(ctx, "k", []byte("one"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := b.Create(ctx, "k", []byte("two")); !errors.Is(err, ErrRevisionConflict) {
		t.Errorf("second Create: got %v, want ErrRevisionConflict", err)
	}
	if _, err := b.Update(ctx, "k", []byte("two"), rev+100); !errors.Is(err, ErrRevisionConflict) {
		t.Errorf("Update at a wrong revision: got %v, want ErrRevisionConflict", err)
	}
	if _, err := b.Update(ctx, "k", []byte("two"), rev); err != nil {
		t.Errorf("Update: %v", err)
	}
	if _, err := b.Set(ctx, "k", []byte("three")); err != nil {
		t.Errorf("Set: %v", err)
	}
	if v, _, err := b.Get(ctx, "k"); err != nil || string(v) != "three" {
		t.Errorf("Get = %q, %v; want three", v, err)
	}
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx, "k"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get after Delete: got %v, want ErrKeyNotFound", err)
	}
	// A deleted key can be created again.
	if _, err := b.Create(ctx, "k", []byte("four")); err != nil {
		t.Errorf("Create after Delete: %v", err)
	}
	if err := b.Purge(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "k", []byte("five")); err != nil {
		t.Errorf("Create after Purge: %v", err)
	}
}

func TestBucketKeysAndWatch(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	b := openTestBucket(t, srv, BucketConfig{Bucket: "t_keys"})
	if ks, err := b.Keys(ctx, ""); err != nil || len(ks) != 0 {
		t.Errorf("Keys of an empty bucket = %v, %v; want none", ks, err)
	}
	for _, k := range []string{"v1.1.a", "v1.1.b", "v1.2.a", "other"} {
		if _, err := b.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, "v1.1.b"); err != nil {
		t.Fatal(err)
	}
	ks, err := b.Keys(ctx, "v1.1.")
	if err != nil || !slices.Equal(ks, []string{"v1.1.a"}) {
		t.Errorf("Keys(v1.1.) = %v, %v; want [v1.1.a]", ks, err)
	}
	all, err := b.Keys(ctx, "")
	if slices.Sort(all); err != nil || !slices.Equal(all, []string{"other", "v1.1.a", "v1.2.a"}) {
		t.Errorf("Keys() = %v, %v", all, err)
	}
	if _, err := b.Keys(ctx, "v1"); err == nil {
		t.Error("Keys with a prefix that is not a whole token: no error")
	}

	wctx, cancel := context.WithCancel(ctx)
	ch, err := b.Watch(wctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Set(ctx, "v1.3.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Erase(ctx, "v1.1.a"); err != nil {
		t.Fatal(err)
	}
	want := []KVChange{{Key: "v1.3.a", Op: KVPut, Value: []byte("x")}, {Key: "v1.1.a", Op: KVPurge}}
	for i, w := range want {
		select {
		case c := <-ch:
			if c.Key != w.Key || c.Op != w.Op || !bytes.Equal(c.Value, w.Value) || c.Revision == 0 {
				t.Errorf("change %d = %+v, want %+v", i, c, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d (%s): none within 5s", i, w.Key)
		}
	}
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Watch channel not closed within 5s of cancel")
		}
	}
}

// Erase leaves no revision of the value anywhere: not through the bucket,
// not as a message of its stream, not in the bytes of the store on disk.
//
// With history 1 the value is written once (as subject keysets are): an
// overwrite there drops the old revision through the per-subject limit, which
// does not overwrite its bytes, so only a bucket keeping history lets Erase
// reach every revision that was overwritten.
func TestBucketEraseLeavesNoTrace(t *testing.T) {
	srv := natstest.Start(t, natstest.WithSyncAlways())
	ctx := t.Context()
	for _, history := range []uint8{1, 5} {
		t.Run(fmt.Sprintf("history=%d", history), func(t *testing.T) {
			revisions := min(int(history), 3)
			name := fmt.Sprintf("t_erase_%d", history)
			b := openTestBucket(t, srv, BucketConfig{Bucket: name, History: history})
			secret := func(i int) []byte { return fmt.Appendf(nil, "SECRET-%d-%d-wrapped-keyset-bytes", history, i) }
			if _, err := b.Set(ctx, "keep", []byte("KEEP-VALUE-intact")); err != nil {
				t.Fatal(err)
			}
			var rev uint64
			for i := range revisions {
				var err error
				if i == 0 {
					rev, err = b.Create(ctx, "v1.9.abc", secret(i))
				} else {
					rev, err = b.Update(ctx, "v1.9.abc", secret(i), rev)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			ok, err := b.Erase(ctx, "v1.9.abc")
			if err != nil || !ok {
				t.Fatalf("Erase = %v, %v; want true", ok, err)
			}
			if _, _, err := b.Get(ctx, "v1.9.abc"); !errors.Is(err, ErrKeyNotFound) {
				t.Errorf("Get after Erase: got %v, want ErrKeyNotFound", err)
			}
			if ok, err := b.Erase(ctx, "v1.9.abc"); err != nil || ok {
				t.Errorf("second Erase = %v, %v; want false, nil", ok, err)
			}
			if ok, err := b.Erase(ctx, "v1.9.never"); err != nil || ok {
				t.Errorf("Erase of a key never written = %v, %v; want false, nil", ok, err)
			}
			if h, err := b.kv.History(ctx, "v1.9.abc"); err != nil || len(h) != 1 || h[0].Operation() != jetstream.KeyValuePurge {
				t.Errorf("history after Erase: %d entries, %v; want one purge marker", len(h), err)
			}
			// Every message of the bucket's stream, by sequence.
			st, err := b.js.Stream(ctx, b.stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					continue
				}
				if err != nil {
					t.Fatalf("GetMsg %d: %v", seq, err)
				}
				if bytes.Contains(m.Data, []byte("SECRET-")) {
					t.Errorf("stream message %d still holds an erased revision", seq)
				}
			}
			// The store on disk.
			found := scanDir(t, srv.StoreDir(), []byte(fmt.Sprintf("SECRET-%d-", history)))
			if len(found) > 0 {
				t.Errorf("erased revisions still in the store files: %v", found)
			}
			if len(scanDir(t, srv.StoreDir(), []byte("KEEP-VALUE-intact"))) == 0 {
				t.Error("the scan does not find a value that was kept: it proves nothing")
			}
			if v, _, err := b.Get(ctx, "keep"); err != nil || string(v) != "KEEP-VALUE-intact" {
				t.Errorf("other key after Erase = %q, %v", v, err)
			}
			if _, err := b.Create(ctx, "v1.9.abc", []byte("new")); err != nil {
				t.Errorf("Create after Erase: %v", err)
			}
		})
	}
}

// scanDir returns the files under dir that contain needle.
func scanDir(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// A bucket the key-value API made denies message deletes: Erase still takes
// the value out of the bucket, and says it could not overwrite it.
func TestBucketEraseDenied(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	js := srv.JetStream(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t_denied"}); err != nil {
		t.Fatal(err)
	}
	b := openTestBucket(t, srv, BucketConfig{Bucket: "t_denied"})
	if _, err := b.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	ok, err := b.Erase(ctx, "k")
	if !ok || !errors.Is(err, ErrEraseDenied) {
		t.Errorf("Erase = %v, %v; want true, ErrEraseDenied", ok, err)
	}
	if _, _, err := b.Get(ctx, "k"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get after a denied Erase: got %v, want ErrKeyNotFound", err)
	}
}
