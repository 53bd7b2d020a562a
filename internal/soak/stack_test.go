package soak

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdtap/mdtap/internal/childproc"
	"github.com/mdtap/mdtap/internal/loadgen"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/internal/s3test"
	"github.com/mdtap/mdtap/internal/sim"
)

// stack is the pipeline under test: the simulator (in this process), an
// embedded JetStream server (in this process, restartable on the same port
// and store), versitygw, and mdtap proxy and archive child processes.
type stack struct {
	t        *testing.T
	dir      string // keys, CA, spool and the children's logs
	ns       *natstest.Server
	s3       *s3test.Server
	sim      *sim.Simulator
	simURL   string
	storeURL string
	env      []string // the children's environment
	starts   map[string]int
}

// proc is one run of an mdtap child process.
type proc struct {
	name  string
	p     *childproc.Process
	log   string
	admin string // admin listen address
	args  []string
}

func newStack(t *testing.T, customers int) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), ns: natstest.Start(t), s3: s3test.Start(t), starts: map[string]int{}}
	s.storeURL = s.s3.StoreURL("mdtap-soak", "")
	s.env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.s3.AccessKey(), "AWS_SECRET_ACCESS_KEY="+s.s3.SecretKey())
	for _, d := range []string{"logs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"keys", "init", "--dir", s.path("keys")}, {"ca", "init", "--dir", s.path("ca")}} {
		if out, err := exec.Command(mdtapBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("mdtap %v: %v\n%s", args, err, out)
		}
	}
	s.sim = sim.New(sim.Options{Customers: customers})
	tlsCfg, caPEM, err := sim.NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.Start("127.0.0.1:0", s.sim, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s.simURL = srv.URL()
	if err := os.WriteFile(s.path("sim-ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) path(name string) string { return filepath.Join(s.dir, name) }

func (s *stack) proxyArgs(listen, admin string) []string {
	return []string{"proxy", "--listen", listen, "--admin-listen", admin, "--ca-dir", s.path("ca"), "--keys", s.path("keys"),
		"--nats", s.ns.URL(), "--allow-host", strings.TrimPrefix(s.simURL, "https://"), "--upstream-ca", s.path("sim-ca.pem"),
		"--spool", s.path("spool"), "--service", "soak", "--shutdown-grace", "20s"}
}

func (s *stack) archiveArgs(admin, chain string) []string {
	return []string{"archive", "--nats", s.ns.URL(), "--store", s.storeURL, "--create-bucket",
		"--batch-max-age", "1s", "--admin-listen", admin, "--chain", chain,
		// A delivery lost to a NATS restart or an archiver killed mid-batch
		// comes back after the ack wait; short, so the drain at the end is too.
		"--ack-wait", "10s"}
}

// spawn starts mdtap with args as a child process (it dies with this test
// binary) and waits until its admin server is ready.
func (s *stack) spawn(name, admin string, args ...string) *proc {
	s.t.Helper()
	s.starts[name]++
	logPath := filepath.Join(s.dir, "logs", fmt.Sprintf("%s-%d.log", name, s.starts[name]))
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(mdtapBin, args...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := childproc.Start(cmd)
	if err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	s.t.Cleanup(func() { p.Stop(syscall.SIGKILL, 5*time.Second) })
	pr := &proc{name: name, p: p, log: logPath, admin: admin, args: args}
	s.waitReady(pr, 60*time.Second)
	return pr
}

// restart starts pr's command again (same args, same chain).
func (s *stack) restart(pr *proc) *proc {
	s.t.Helper()
	return s.spawn(pr.name, pr.admin, pr.args...)
}

func (s *stack) waitReady(pr *proc, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + pr.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-pr.p.Done():
			s.t.Fatalf("%s exited: %v\n%s", pr.name, pr.p.Err(), pr.tail(3000))
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not ready after %s\n%s", pr.name, timeout, pr.tail(3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exited reports whether the process has ended.
func (pr *proc) exited() bool {
	select {
	case <-pr.p.Done():
		return true
	default:
		return false
	}
}

func (pr *proc) tail(n int) string {
	b, _ := os.ReadFile(pr.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// metric returns a metric of pr summed over its label sets (0 if absent or
// the admin server does not answer).
func (pr *proc) metric(name string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, _ := loadgen.ScrapeMetrics(ctx, "http://"+pr.admin+"/metrics")
	return m[name]
}

// client returns an HTTP client that sends through the proxy (forward
// mode, trusting its MITM CA), with tr as its transport's wrapper.
func (s *stack) client(listen string, conns int, rate float64) (*http.Client, *tracker, *http.Transport) {
	s.t.Helper()
	mitm, err := os.ReadFile(s.path("ca/ca.crt"))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	u, _ := url.Parse("http://" + listen)
	base := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: conns}
	tr := newTracker(base, rate)
	return &http.Client{Timeout: 60 * time.Second, Transport: tr}, tr, base
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
