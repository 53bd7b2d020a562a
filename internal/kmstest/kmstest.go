// Package kmstest runs a local AWS KMS API server for tests:
// github.com/nsmithuk/local-kms, served on a loopback port by the wrapper
// tools/cmd/localkms and built from the version pinned in tools/go.mod (see
// internal/toolbin).
//
// Each server has its key store in a t.TempDir() and one seeded symmetric
// key, whose aws-kms:// URI KeyURI returns. Setenv points the AWS SDK at it
// for the rest of the test (AWS_ENDPOINT_URL_KMS, region, dummy credentials,
// no shared config files, no instance metadata). Stop and Restart bring it
// down and back on the same port and store, so a test can check what a
// client does while KMS is unreachable and that keys survive a restart. The
// server is killed in t.Cleanup.
package kmstest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdtap/mdtap/internal/toolbin"
)

const (
	// Package is the wrapper's package in the tools module.
	Package = "github.com/mdtap/mdtap/tools/cmd/localkms"
	// Region and Account are those of the key ARNs.
	Region  = "ap-northeast-2"
	Account = "111122223333"
	// KeyID is the id of the seeded key.
	KeyID = "6c1c43b4-9a8b-4b4e-9d5a-3f2a1b0c9d8e"
	// AccessKeyID and SecretAccessKey are the dummy credentials Setenv
	// sets; local-kms accepts any.
	AccessKeyID     = "AKIAMDTAPTESTKEY0001"
	SecretAccessKey = "mdtap-kmstest-secret-access-key-0000000001"
	// ReadyTimeout bounds how long Start and Restart wait for the server.
	ReadyTimeout = 30 * time.Second
	// StopTimeout bounds how long Stop waits after SIGTERM before it kills.
	StopTimeout = 10 * time.Second
	logTail     = 4 << 10
)

// Server is a local KMS process. Its methods must be called from the test
// goroutine (they may call t.Fatal).
type Server struct {
	t       testing.TB
	bin     string
	data    string
	logPath string

	mu   sync.Mutex
	addr string           // host:port, fixed once the first start bound it
	proc *toolbin.Process // nil while stopped
}

// Start builds the wrapper (cached between runs) and starts it on a free
// loopback port with a fresh key store; it is killed in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		bin:     toolbin.Path(t, Package),
		data:    filepath.Join(t.TempDir(), "store"),
		logPath: filepath.Join(t.TempDir(), "localkms.log"),
	}
	t.Cleanup(s.cleanup)
	if err := s.start("127.0.0.1:0"); err != nil {
		t.Fatalf("kmstest: start local KMS: %v%s", err, s.logTail())
	}
	return s
}

// KeyURI is the Tink URI of the seeded key:
// aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID.
func (s *Server) KeyURI() string { return "aws-kms://" + s.KeyARN() }

// KeyARN is the seeded key's ARN.
func (s *Server) KeyARN() string { return "arn:aws:kms:" + Region + ":" + Account + ":key/" + KeyID }

// Endpoint is the server's URL, http://127.0.0.1:PORT; it stays the same
// across restarts.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://" + s.addr
}

// Env is the environment that points the AWS SDK at the server: the KMS
// endpoint, the region, dummy credentials, and nothing from the machine's
// own AWS configuration (shared files, profile, instance metadata).
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_KMS=" + s.Endpoint(),
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + filepath.Join(s.data, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.data, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Setenv sets Env for the rest of the test (t.Setenv: not for parallel
// tests).
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Stop sends SIGTERM and waits for the server to exit (killing it after
// StopTimeout). Requests fail with connection refused until Restart.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(syscall.SIGTERM, StopTimeout); err != nil {
		s.t.Fatalf("kmstest: stop local KMS: %v%s", err, s.logTail())
	}
}

// Restart stops the server if it runs and starts it again on the same port
// and key store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	addr := s.addr
	s.mu.Unlock()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := s.start(addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("kmstest: restart local KMS on %s: %v%s", addr, err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond) // retry pacing while the port is still taken
	}
}

// start runs the wrapper on addr and waits for the address line it prints
// once it listens. On error no process is left running.
func (s *Server) start(addr string) error {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "-listen", addr, "-data", s.data, "-region", Region, "-account", Account, "-key-id", KeyID)
	cmd.Env = []string{"HOME=" + filepath.Dir(s.logPath), "TMPDIR=" + os.TempDir()}
	cmd.Stderr = logf
	// A pipe of our own rather than StdoutPipe: Wait (in startProcess) must
	// not close the read end while we read it.
	stdout, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout = w
	fmt.Fprintf(logf, "--- kmstest: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	p, err := toolbin.StartProcess(cmd)
	w.Close() // the child has its own copy
	if err != nil {
		stdout.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var got []string
		for len(got) < 2 && sc.Scan() {
			got = append(got, sc.Text())
		}
		lines <- got
		io.Copy(io.Discard, stdout) // until the child exits
		stdout.Close()
	}()
	var got []string
	select {
	case got = <-lines:
	case <-time.After(ReadyTimeout):
		s.stop(syscall.SIGKILL, StopTimeout)
		return fmt.Errorf("no address printed within %s", ReadyTimeout)
	}
	if len(got) < 2 {
		<-p.Done()
		s.stop(syscall.SIGKILL, StopTimeout)
		return fmt.Errorf("exited before listening: %v", p.Err())
	}
	if got[1] != s.KeyARN() {
		s.stop(syscall.SIGKILL, StopTimeout)
		return fmt.Errorf("seeded key %q, want %q", got[1], s.KeyARN())
	}
	if _, _, err := net.SplitHostPort(got[0]); err != nil {
		s.stop(syscall.SIGKILL, StopTimeout)
		return fmt.Errorf("bad address line %q", got[0])
	}
	s.mu.Lock()
	s.addr = got[0]
	s.mu.Unlock()
	return nil
}

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

func (s *Server) cleanup() {
	if err := s.stop(syscall.SIGKILL, StopTimeout); err != nil {
		s.t.Errorf("kmstest: kill local KMS: %v", err)
	}
}

func (s *Server) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > logTail {
		data = data[len(data)-logTail:]
	}
	return fmt.Sprintf("\nlocal KMS log (%s), last %d bytes:\n%s", s.logPath, len(data), data)
}
