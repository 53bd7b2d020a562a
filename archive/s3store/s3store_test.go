package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/s3store"
	"github.com/mdtap/mdtap/archive/storetest"
	"github.com/mdtap/mdtap/internal/s3test"
)

var bucketSeq atomic.Int64

// newStore returns a store on a new bucket of srv, under prefix.
func newStore(t *testing.T, srv *s3test.Server, prefix string) *s3store.Store {
	t.Helper()
	bucket := fmt.Sprintf("conf-%d", bucketSeq.Add(1))
	srv.CreateBucket(t, bucket)
	return open(t, srv, bucket, prefix)
}

func open(t testing.TB, srv *s3test.Server, bucket, prefix string) *s3store.Store {
	t.Helper()
	u, err := mdtap.ParseStoreURL(srv.StoreURL(bucket, prefix))
	if err != nil {
		t.Fatalf("ParseStoreURL: %v", err)
	}
	s, err := s3store.New(u, s3store.Options{AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()})
	if err != nil {
		t.Fatalf("s3store.New: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	t.Run("BucketRoot", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) archive.Store { return newStore(t, srv, "") })
	})
	t.Run("Prefix", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) archive.Store { return newStore(t, srv, "archive/prod") })
	})
}

// Keys are relative to the URL's prefix: they land under it in the bucket,
// and listing returns them without it.
func TestPrefix(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "pfx")
	ctx := context.Background()
	s := open(t, srv, "pfx", "mdtap/archive")
	other := open(t, srv, "pfx", "mdtap/archive2")
	if err := s.Put(ctx, "manifests/c/000000000001.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := other.Put(ctx, "manifests/c/000000000001.json", []byte("other")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(srv.Root(), "pfx", "mdtap", "archive", "manifests", "c", "000000000001.json"))
	if err != nil || string(got) != "{}" {
		t.Errorf("object file = %q, %v; want it under the prefix", got, err)
	}
	list, err := s.List(ctx, "", "", 10)
	if err != nil || len(list) != 1 || list[0].Key != "manifests/c/000000000001.json" {
		t.Errorf("List = %+v, %v; want the one relative key", list, err)
	}
	raw := srv.Client(t)
	info, err := raw.StatObject(ctx, "pfx", "mdtap/archive/manifests/c/000000000001.json", minio.StatObjectOptions{})
	if err != nil || info.ContentType != "application/json" {
		t.Errorf("content type = %q, %v; want application/json", info.ContentType, err)
	}
}

// versitygw v1.8.0 honours If-None-Match: * on PUT: the conditional write
// the manifest chain relies on. (storetest's PutIfAbsentRace checks the
// race; this shows the wire-level answer.)
func TestIfNoneMatch(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "cond")
	ctx := context.Background()
	c := srv.Client(t)
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	if _, err := c.PutObject(ctx, "cond", "k", strings.NewReader("one"), 3, opts); err != nil {
		t.Fatalf("first conditional PUT: %v", err)
	}
	_, err := c.PutObject(ctx, "cond", "k", strings.NewReader("two"), 3, opts)
	if r := minio.ToErrorResponse(err); r.StatusCode != 412 {
		t.Fatalf("second conditional PUT: %v (status %d), want 412 Precondition Failed", err, r.StatusCode)
	}
	obj, err := c.GetObject(ctx, "cond", "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got, _ := io.ReadAll(obj); string(got) != "one" {
		t.Errorf("object = %q after a refused conditional PUT, want %q", got, "one")
	}
}

// With the server down, calls fail (not ErrNotFound, not hanging); once it
// is back, the same store works again, and what was stored survives.
func TestServerDownAndBack(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "down")
	s := open(t, srv, "down", "a")
	ctx := context.Background()
	if err := s.Put(ctx, "before", []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	err := s.Put(cctx, "during", []byte("y"))
	if err == nil || errors.Is(err, archive.ErrNotFound) || errors.Is(err, archive.ErrExists) {
		t.Errorf("Put with the server down: error = %v, want a transient error", err)
	}
	if _, err := s.Get(cctx, "before"); err == nil || errors.Is(err, archive.ErrNotFound) {
		t.Errorf("Get with the server down: error = %v, want a transient error", err)
	}
	if err := s.PutIfAbsent(cctx, "m", []byte("z")); err == nil || errors.Is(err, archive.ErrExists) {
		t.Errorf("PutIfAbsent with the server down: error = %v, want a transient error", err)
	}
	if _, err := s.List(cctx, "", "", 10); err == nil {
		t.Error("List with the server down succeeded")
	}
	t.Logf("four calls failed in %v with the server down", time.Since(start).Round(time.Millisecond))
	// A deadline bounds the retries.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if err := s.Put(short, "during", []byte("y")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put with the server down and a 300ms deadline: error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put took %v past its 300ms deadline", d)
	}

	srv.Restart()
	if err := s.Put(ctx, "after", []byte("z")); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	got, err := s.Get(ctx, "before")
	if err != nil || string(got) != "x" {
		t.Errorf("Get(before) after restart = %q, %v", got, err)
	}
	list, err := s.List(ctx, "", "", 10)
	if err != nil || len(list) != 2 {
		t.Errorf("List after restart = %+v, %v; want before and after", list, err)
	}
}

func TestEnsureBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	s := open(t, srv, "not-yet", "")
	if err := s.EnsureBucket(ctx, false); !errors.Is(err, s3store.ErrNoBucket) {
		t.Fatalf("EnsureBucket(create=false) on a missing bucket: error = %v, want ErrNoBucket", err)
	}
	if err := s.EnsureBucket(ctx, true); err != nil {
		t.Fatalf("EnsureBucket(create=true): %v", err)
	}
	if err := s.EnsureBucket(ctx, false); err != nil {
		t.Fatalf("EnsureBucket after creating it: %v", err)
	}
	if err := s.EnsureBucket(ctx, true); err != nil {
		t.Fatalf("EnsureBucket(create=true) on an existing bucket: %v", err)
	}
	if err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

// The posix backend keeps directories for key prefixes: they are not objects.
func TestDirectoriesAreNotObjects(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "dirs")
	ctx := context.Background()
	s := open(t, srv, "dirs", "")
	if err := s.Put(ctx, "records/dt=2026-03-15/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A directory marker made by another client.
	if _, err := srv.Client(t).PutObject(ctx, "dirs", "records/marker/", bytes.NewReader(nil), 0, minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "records/", "", 10)
	if err != nil || len(list) != 1 || list[0].Key != "records/dt=2026-03-15/x" {
		t.Errorf("List(records/) = %+v, %v; want the one object, no directories", list, err)
	}
	for _, k := range []string{"records", "records/dt=2026-03-15", "records/marker"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", k, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	u, _ := mdtap.ParseStoreURL("s3://bucket/p?endpoint=127.0.0.1:1&secure=false")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := s3store.New(u, s3store.Options{}); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("New without credentials: error = %v, want one naming AWS_ACCESS_KEY_ID", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	if _, err := s3store.New(u, s3store.Options{}); err != nil {
		t.Errorf("New with credentials from the environment: %v", err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("not a certificate"), 0o600)
	if _, err := s3store.New(u, s3store.Options{CAFile: ca}); err == nil {
		t.Error("New with a CA file without certificates succeeded")
	}
	fu, _ := mdtap.ParseStoreURL("file:///tmp/x")
	if _, err := s3store.New(fu, s3store.Options{}); err == nil {
		t.Error("New(file url) succeeded")
	}
}
