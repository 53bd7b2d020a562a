package s3test_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mdtap/mdtap/internal/s3test"
)

const bucket = "archive"

var objects = map[string]string{
	"records/dt=2026-01-02/hour=03/a.jsonl.zst": "first batch",
	"records/dt=2026-01-02/hour=03/b.jsonl.zst": "second batch",
	"manifests/0001.json":                       `{"seq":1}`,
}

func TestPutListGet(t *testing.T) {
	s := s3test.Start(t)
	s.CreateBucket(t, bucket)
	c := s.Client(t)
	ctx := testContext(t)
	putObjects(ctx, t, c)
	checkObjects(ctx, t, c)

	// The posix backend keeps each object as a plain file ROOT/BUCKET/KEY.
	for key, want := range objects {
		got, err := os.ReadFile(filepath.Join(s.Root(), bucket, filepath.FromSlash(key)))
		if err != nil {
			t.Errorf("read object file: %v", err)
		} else if string(got) != want {
			t.Errorf("file of %s = %q, want %q", key, got, want)
		}
	}
}

func TestStopRestartKeepsObjects(t *testing.T) {
	s := s3test.Start(t)
	endpoint := s.Endpoint()
	s.CreateBucket(t, bucket)
	c := s.Client(t)
	ctx := testContext(t)
	putObjects(ctx, t, c)

	s.Stop()
	s.Stop() // a second Stop does nothing
	if conn, err := net.Dial("tcp", endpoint); err == nil {
		conn.Close()
		t.Fatalf("dial %s after Stop succeeded, want connection refused", endpoint)
	}
	s.Restart()
	if s.Endpoint() != endpoint {
		t.Fatalf("Endpoint() after Restart = %q, want %q", s.Endpoint(), endpoint)
	}
	// The client made before the restart keeps working: its pooled
	// keep-alive connections are dead, and minio-go retries on a new one.
	checkObjects(ctx, t, c)
	put(ctx, t, c, "after-restart", "x")
}

func TestKillRestartKeepsObjects(t *testing.T) {
	s := s3test.Start(t)
	s.CreateBucket(t, bucket)
	c := s.Client(t)
	ctx := testContext(t)
	putObjects(ctx, t, c)

	s.Kill()
	s.Restart()
	checkObjects(ctx, t, c)
	checkObjects(ctx, t, s.Client(t))
}

func TestStoreURL(t *testing.T) {
	s := s3test.Start(t)
	if !strings.HasPrefix(s.Endpoint(), "127.0.0.1:") {
		t.Errorf("Endpoint() = %q, want 127.0.0.1:PORT", s.Endpoint())
	}
	if len(s.AccessKey()) < 16 || len(s.SecretKey()) < 32 || s.AccessKey() == s.SecretKey() {
		t.Errorf("AccessKey() = %q, SecretKey() = %q, want random keys", s.AccessKey(), s.SecretKey())
	}
	got := s.StoreURL("b", "records/")
	want := fmt.Sprintf("s3://b/records/?endpoint=%s&secure=false&region=us-east-1", s.Endpoint())
	if got != want {
		t.Errorf("StoreURL = %q, want %q", got, want)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatalf("parse StoreURL: %v", err)
	}
	if u.Host != "b" || u.Path != "/records/" || u.Query().Get("endpoint") != s.Endpoint() {
		t.Errorf("StoreURL parses to host %q, path %q, endpoint %q", u.Host, u.Path, u.Query().Get("endpoint"))
	}
}

// TestTwoServers checks that servers in one test are independent.
func TestTwoServers(t *testing.T) {
	a, b := s3test.Start(t), s3test.Start(t)
	if a.Endpoint() == b.Endpoint() || a.Root() == b.Root() {
		t.Fatalf("two servers share endpoint %s or root %s", a.Endpoint(), a.Root())
	}
	a.CreateBucket(t, "only-a")
	buckets, err := b.Client(t).ListBuckets(testContext(t))
	if err != nil {
		t.Fatalf("ListBuckets: %v", err)
	}
	if len(buckets) != 0 {
		t.Errorf("ListBuckets on b = %v, want none", buckets)
	}
	// a's credentials do not open b.
	c, err := minio.New(b.Endpoint(), &minio.Options{
		Creds:        credentials.NewStaticV4(a.AccessKey(), a.SecretKey(), ""),
		Region:       s3test.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListBuckets(testContext(t)); err == nil {
		t.Errorf("ListBuckets on b with a's credentials succeeded, want an error")
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func putObjects(ctx context.Context, t *testing.T, c *minio.Client) {
	t.Helper()
	for key, body := range objects {
		put(ctx, t, c, key, body)
	}
}

func put(ctx context.Context, t *testing.T, c *minio.Client, key, body string) {
	t.Helper()
	info, err := c.PutObject(ctx, bucket, key, strings.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatalf("PutObject(%s): %v", key, err)
	}
	if info.Size != int64(len(body)) {
		t.Errorf("PutObject(%s) size = %d, want %d", key, info.Size, len(body))
	}
}

// checkObjects lists the bucket recursively and reads every object back.
func checkObjects(ctx context.Context, t *testing.T, c *minio.Client) {
	t.Helper()
	var keys []string
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("ListObjects: %v", obj.Err)
		}
		if _, ok := objects[obj.Key]; ok {
			keys = append(keys, obj.Key)
		}
	}
	var want []string
	for k := range objects {
		want = append(want, k)
	}
	slices.Sort(want)
	slices.Sort(keys)
	if !slices.Equal(keys, want) {
		t.Fatalf("ListObjects keys = %q, want %q", keys, want)
	}

	// Only the objects under a prefix.
	var under []string
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "records/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("ListObjects(records/): %v", obj.Err)
		}
		under = append(under, obj.Key)
	}
	if len(under) != 2 {
		t.Errorf("ListObjects(records/) = %q, want 2 keys", under)
	}

	for key, body := range objects {
		obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("GetObject(%s): %v", key, err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		if !bytes.Equal(got, []byte(body)) {
			t.Errorf("GetObject(%s) = %q, want %q", key, got, body)
		}
	}
}

// TestRestartWaitsForBusyPort holds the server's port while it restarts:
// versitygw fails to bind, and Restart tries again until the port is free.
func TestRestartWaitsForBusyPort(t *testing.T) {
	s := s3test.Start(t)
	s.CreateBucket(t, bucket)
	s.Stop()
	l, err := net.Listen("tcp", s.Endpoint())
	if err != nil {
		t.Fatalf("hold port: %v", err)
	}
	defer l.Close()

	// Free the port once versitygw has failed to bind it at least once.
	released := make(chan error, 1)
	go func() {
		defer l.Close()
		deadline := time.Now().Add(s3test.ReadyTimeout)
		for time.Now().Before(deadline) {
			log, _ := os.ReadFile(s.LogPath())
			if bytes.Contains(log, []byte("address already in use")) {
				released <- nil
				return
			}
			time.Sleep(10 * time.Millisecond) // poll pacing
		}
		released <- fmt.Errorf("no bind failure in the log within %s", s3test.ReadyTimeout)
	}()
	s.Restart()
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client(t).BucketExists(testContext(t), bucket); err != nil {
		t.Fatalf("BucketExists after restart: %v", err)
	}
}
