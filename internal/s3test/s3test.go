// Package s3test runs a real S3 server for tests: versitygw with its posix
// backend, built from the version pinned in tools/go.mod (see Binary).
//
// Every server listens on a random loopback port with a t.TempDir() root and
// random root credentials; it is killed in t.Cleanup. Stop, Kill and Restart
// bring it down and back on the same port, root and credentials, so a test
// can check that clients ride out a restart and that objects survive one. The
// posix backend keeps each object as a plain file, ROOT/BUCKET/KEY, which
// real S3 does not: a bucket cannot hold both "a" and "a/b" (a file cannot be
// a directory), and a key ending in "/" is a directory marker that cannot
// carry data. versitygw also keeps its own ROOT/.vgwlocks and
// ROOT/BUCKET/.sgwtmp directories, which S3 listings do not show.
//
// versitygw writes its output to a log file under the test's temp dir; its
// tail is added to failure messages.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mdtap/mdtap/internal/toolbin"
)

const (
	// Region is the region versitygw reports and clients sign for.
	Region = "us-east-1"
	// ReadyTimeout bounds how long Start and Restart wait for the server to
	// answer S3 requests.
	ReadyTimeout = 30 * time.Second
	// StopTimeout bounds how long Stop waits after SIGTERM before it kills.
	StopTimeout = 10 * time.Second
	// startAttempts is how often Start picks a new port when the one it
	// picked was taken before versitygw could bind it.
	startAttempts = 5
	// logTail is how much of the server log failure messages quote.
	logTail = 4 << 10
)

// Server is a versitygw process serving S3 from a posix root. Its methods
// must be called from the test goroutine (they may call t.Fatal).
type Server struct {
	t       testing.TB
	bin     string
	root    string
	logPath string
	access  string
	secret  string

	mu   sync.Mutex
	port int
	proc *toolbin.Process // nil while stopped
}

// process is one run of versitygw.
// Start builds versitygw (cached between runs, see Binary) and starts it on a
// random free loopback port with a temp root and random credentials; it is
// killed in t.Cleanup. Start returns once the server answers ListBuckets.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:      t,
		bin:    Binary(t),
		root:   t.TempDir(),
		access: randomKey(10), // 20 characters, like an AWS access key id
		secret: randomKey(20), // 40 characters, like an AWS secret key
	}
	// The log lives outside the root: the posix backend would list any
	// directory in the root as a bucket.
	s.logPath = filepath.Join(t.TempDir(), "versitygw.log")
	t.Cleanup(s.cleanup)

	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		var port int
		port, err = freePort()
		if err != nil {
			break
		}
		s.mu.Lock()
		s.port = port
		s.mu.Unlock()
		if err = s.start(); !errors.Is(err, errAddrInUse) {
			break
		}
		t.Logf("s3test: port %d taken before versitygw could bind it (attempt %d of %d)", port, attempt, startAttempts)
	}
	if err != nil {
		t.Fatalf("s3test: start versitygw: %v%s", err, s.logTail())
	}
	return s
}

// Endpoint returns "127.0.0.1:PORT"; it stays the same across restarts.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// AccessKey returns the root access key.
func (s *Server) AccessKey() string { return s.access }

// SecretKey returns the root secret key.
func (s *Server) SecretKey() string { return s.secret }

// Root returns the posix backend root: object KEY of bucket BUCKET is the
// file Root()/BUCKET/KEY.
func (s *Server) Root() string { return s.root }

// LogPath returns the file that collects versitygw's stdout and stderr over
// all its runs.
func (s *Server) LogPath() string { return s.logPath }

// StoreURL returns the mdtap store URL of a prefix in a bucket on this server:
// "s3://BUCKET/PREFIX?endpoint=127.0.0.1:PORT&secure=false&region=us-east-1".
func (s *Server) StoreURL(bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&secure=false&region=%s",
		bucket, strings.TrimPrefix(prefix, "/"), s.Endpoint(), Region)
}

// Client returns a minio client for the server: root credentials, path-style
// requests, plain HTTP, region us-east-1. minio-go retries failed requests,
// so a client keeps working across Restart.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := s.newClient(0)
	if err != nil {
		t.Fatalf("s3test: new client: %v", err)
	}
	return c
}

// CreateBucket creates a bucket, failing the test if it cannot.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region})
	if err != nil {
		t.Fatalf("s3test: create bucket %s: %v%s", name, err, s.logTail())
	}
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// StopTimeout. Stop on a stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(syscall.SIGTERM, StopTimeout); err != nil {
		s.t.Fatalf("s3test: stop versitygw: %v%s", err, s.logTail())
	}
}

// Kill sends SIGKILL and waits for the process to exit. Objects whose upload
// completed survive: the posix backend writes each to a temp file and links
// it into place before it answers. Kill on a stopped server does nothing.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.stop(syscall.SIGKILL, StopTimeout); err != nil {
		s.t.Fatalf("s3test: kill versitygw: %v%s", err, s.logTail())
	}
}

// Restart stops the server if it is running (SIGTERM) and starts it again on
// the same port, root and credentials. It returns once the server answers
// ListBuckets; if the port has been taken in between, it retries until
// ReadyTimeout.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			s.t.Fatalf("s3test: restart versitygw on %s: %v%s", s.Endpoint(), err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond) // retry pacing while someone else holds the port
	}
}

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// start runs versitygw on s.port and waits until it answers. On error no
// process is left running.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}

	endpoint := s.Endpoint()
	cmd := exec.Command(s.bin,
		"--port", endpoint, // host:port: listen on loopback only
		"--keep-alive",
		"--quiet", // no request log on stdout
		"posix", s.root,
	)
	// A clean environment: versitygw reads many VGW_* variables, and
	// ROOT_ACCESS_KEY_ID would win over ROOT_ACCESS_KEY.
	cmd.Env = []string{
		"ROOT_ACCESS_KEY=" + s.access,
		"ROOT_SECRET_KEY=" + s.secret,
		"HOME=" + filepath.Dir(s.logPath), // anywhere but the root
		"TMPDIR=" + os.TempDir(),
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	fmt.Fprintf(logf, "--- s3test: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))

	p, err := toolbin.StartProcess(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(p, endpoint); err != nil {
		s.stop(syscall.SIGKILL, StopTimeout)
		if bytes.Contains(s.readLog(logStart), []byte("address already in use")) {
			return fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return err
	}
	return nil
}

// waitReady polls until versitygw accepts a TCP connection and answers an
// authenticated ListBuckets, or until it exits or ReadyTimeout passes.
func (s *Server) waitReady(p *toolbin.Process, endpoint string) error {
	client, err := s.newClient(1) // no retries inside a probe: we poll
	if err != nil {
		return err
	}
	deadline := time.Now().Add(ReadyTimeout)
	var last error
	for {
		select {
		case <-p.Done():
			return fmt.Errorf("versitygw exited before it was ready: %v", p.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw not ready within %s: %v", ReadyTimeout, last)
		}
		last = probe(client, endpoint)
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Millisecond): // poll pacing
		}
	}
}

func probe(client *minio.Client, endpoint string) error {
	conn, err := net.DialTimeout("tcp", endpoint, time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = client.ListBuckets(ctx)
	return err
}

// stop signals the running process and waits for it to exit, sending SIGKILL
// if it is still running after timeout.
func (s *Server) stop(sig syscall.Signal, timeout time.Duration) error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(sig, timeout)
}

// cleanup kills the server at the end of the test.
func (s *Server) cleanup() {
	if err := s.stop(syscall.SIGKILL, StopTimeout); err != nil {
		s.t.Errorf("s3test: kill versitygw: %v", err)
	}
}

func (s *Server) newClient(maxRetries int) (*minio.Client, error) {
	return minio.New(s.Endpoint(), &minio.Options{
		Creds:        credentials.NewStaticV4(s.access, s.secret, ""),
		Secure:       false,
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   maxRetries,
	})
}

// readLog returns the log from offset on.
func (s *Server) readLog(offset int64) []byte {
	data, err := os.ReadFile(s.logPath)
	if err != nil || offset > int64(len(data)) {
		return nil
	}
	return data[offset:]
}

// logTail formats the end of the server log for a failure message.
func (s *Server) logTail() string {
	data := s.readLog(0)
	if len(data) == 0 {
		return ""
	}
	if len(data) > logTail {
		data = data[len(data)-logTail:]
	}
	return fmt.Sprintf("\nversitygw log (%s), last %d bytes:\n%s", s.logPath, len(data), data)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomKey(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
