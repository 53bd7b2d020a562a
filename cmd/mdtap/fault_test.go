package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/internal/s3test"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/toolbin"
)

// The durability tests of issue 5: every exchange the sidecar accepted (the
// client got the provider's answer) ends up archived exactly once after
// de-duplication by record id — through a NATS outage, an archiver killed
// mid-batch, an S3 outage, and a proxy stopped with SIGTERM under load.

// faultEnv is the shared setting: an embedded JetStream server, the
// simulator, keys, a MITM CA and an archive store.
type faultEnv struct {
	ns       *natstest.Server
	sim      *sim.Simulator
	simURL   string
	dir      string
	keyDir   string
	caDir    string
	simCA    string
	storeURL string
	token    string
}

func newFaultEnv(t *testing.T, storeURL string) *faultEnv {
	t.Helper()
	e := &faultEnv{ns: natstest.Start(t), dir: t.TempDir()}
	e.keyDir, e.caDir, e.simCA = filepath.Join(e.dir, "keys"), filepath.Join(e.dir, "ca"), filepath.Join(e.dir, "sim-ca.pem")
	for _, args := range [][]string{{"keys", "init", "--dir", e.keyDir}, {"ca", "init", "--dir", e.caDir}} {
		if _, errOut, code := mdtapRun(t, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	e.sim = sim.New(sim.Options{Customers: 10})
	tlsCfg, caPEM, _ := sim.NewTLSConfig(nil, nil)
	srv, err := sim.Start("127.0.0.1:0", e.sim, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.simURL = srv.URL()
	os.WriteFile(e.simCA, caPEM, 0o644)
	e.storeURL = storeURL
	if e.storeURL == "" {
		e.storeURL = "file://" + filepath.Join(e.dir, "archive")
	}
	e.token = e.sim.IssueToken(1, "")
	return e
}

func (e *faultEnv) proxyArgs(listen, adminAddr string, extra ...string) []string {
	return append([]string{"proxy", "--listen", listen, "--admin-listen", adminAddr, "--ca-dir", e.caDir, "--keys", e.keyDir,
		"--nats", e.ns.URL(), "--allow-host", strings.TrimPrefix(e.simURL, "https://"), "--upstream-ca", e.simCA,
		"--spool", filepath.Join(e.dir, "spool"), "--shutdown-grace", "20s"}, extra...)
}

func (e *faultEnv) archiveArgs(adminAddr string, extra ...string) []string {
	return append([]string{"archive", "--nats", e.ns.URL(), "--store", e.storeURL, "--create-bucket",
		"--batch-max-age", "200ms", "--admin-listen", adminAddr, "--chain", "fault",
		// A fetch in flight while NATS restarts loses its delivery; JetStream
		// redelivers after the ack wait, kept short here.
		"--ack-wait", "3s"}, extra...)
}

func (e *faultEnv) client(listen string) *http.Client {
	mitm, _ := os.ReadFile(filepath.Join(e.caDir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	u, _ := url.Parse("http://" + listen)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// load sends MyData calls through the proxy from a few goroutines until
// stop is closed, and returns the tran ids of the exchanges the client got
// an answer for (accepted), and how many were refused or failed.
type load struct {
	mu       sync.Mutex
	accepted []string
	refused  atomic.Int64
	n        atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (e *faultEnv) startLoad(hc *http.Client, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				tran := fmt.Sprintf("TESTMD0001M%02d%012d", w, i)
				req, _ := http.NewRequest("GET", e.simURL+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0&limit=500", nil)
				req.Header.Set("Authorization", "Bearer "+e.token)
				req.Header.Set("x-api-tran-id", tran)
				resp, err := hc.Do(req)
				l.n.Add(1)
				if err != nil {
					l.refused.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				_, rerr := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && rerr == nil {
					l.mu.Lock()
					l.accepted = append(l.accepted, tran)
					l.mu.Unlock()
				} else {
					l.refused.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

// waitCalls waits until the load made at least n more calls.
func (l *load) waitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.n.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.n.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled at %d calls", l.n.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) finish() []string {
	close(l.stop)
	l.wg.Wait()
	return l.accepted
}

// waitArchived waits until every accepted tran id is in the archive, and
// checks each maps to exactly one record id (duplicates removed by id).
func (e *faultEnv) waitArchived(t *testing.T, accepted []string, logs ...*syncBuffer) {
	t.Helper()
	if len(accepted) == 0 {
		t.Fatal("no exchange was accepted")
	}
	store, err := openStore(context.Background(), e.storeURL, "", false)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	var byTran map[string]map[string]bool
	for {
		byTran = map[string]map[string]bool{}
		for id, line := range countArchived(t, store) {
			var r struct {
				TranID string `json:"tran_id"`
			}
			json.Unmarshal(line, &r)
			if byTran[r.TranID] == nil {
				byTran[r.TranID] = map[string]bool{}
			}
			byTran[r.TranID][id] = true
		}
		missing = missing[:0]
		for _, tr := range accepted {
			if len(byTran[tr]) == 0 {
				missing = append(missing, tr)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		var l string
		for _, b := range logs {
			l += b.String()
		}
		state := ""
		if js := e.ns.JetStream(t); js != nil {
			if st, err := js.Stream(context.Background(), "MDTAP"); err == nil {
				info, _ := st.Info(context.Background())
				state = fmt.Sprintf("stream msgs %d", info.State.Msgs)
				if c, err := st.Consumer(context.Background(), "mdtap-archive"); err == nil {
					ci, _ := c.Info(context.Background())
					state += fmt.Sprintf(", consumer pending %d ack-pending %d redelivered %d", ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
				}
			}
		}
		spooled, _ := filepath.Glob(filepath.Join(e.dir, "spool", "*"))
		t.Fatalf("%d of %d accepted exchanges not archived (first %s); %s; spool files %v\n%s", len(missing), len(accepted), missing[0], state, spooled, tail(l, 1500))
	}
	for _, tr := range accepted {
		if n := len(byTran[tr]); n != 1 {
			t.Fatalf("exchange %s archived as %d distinct records", tr, n)
		}
	}
	t.Logf("%d accepted exchanges, all archived once", len(accepted))
}

// waitMetric polls an admin endpoint until the metric line (prefix match)
// shows a value of at least min: proof the fault was felt.
func waitMetric(t *testing.T, adminAddr, line string, min float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, line) {
					var v float64
					fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, line)), "%g", &v)
					if v >= min {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s never reached %g", line, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestFaultNATSOutageUnderLoad(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr)...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)

	l := e.startLoad(e.client(listen), 4)
	l.waitCalls(t, 40)
	e.ns.Stop() // records now go to the spool
	l.waitCalls(t, 150)
	waitMetric(t, adminAddr, `mdtap_spool_appends_total{reason="disconnected"}`, 20)
	e.ns.Restart() // the spool drains
	l.waitCalls(t, 40)
	accepted := l.finish()
	if l.refused.Load() > 0 {
		t.Errorf("%d exchanges refused during a NATS outage with a spool (fail-open)", l.refused.Load())
	}
	e.waitArchived(t, accepted, plogs, alogs)
}

// spawn runs this test binary as mdtap in its own process.
func spawn(t *testing.T, args ...string) (*toolbin.Process, *os.File) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(t.TempDir(), "mdtap-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), testMainEnv+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := toolbin.StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, 5*time.Second) })
	return p, logf
}

func TestFaultArchiverKilledMidBatch(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr)...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	// Large, slow batches: the kill lands while a batch is being gathered or written.
	args := e.archiveArgs(archAdmin, "--batch-max-records", "50")
	arch, _ := spawn(t, args...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", plogs)

	l := e.startLoad(e.client(listen), 4)
	l.waitCalls(t, 120)
	if err := arch.Stop(syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	l.waitCalls(t, 60)
	arch2, logf := spawn(t, args...)
	_ = arch2
	waitHTTP(t, "http://"+archAdmin+"/readyz", plogs)
	l.waitCalls(t, 40)
	accepted := l.finish()
	e.waitArchived(t, accepted, plogs)
	// Nothing missing or altered; a batch cut short by the kill may leave
	// objects no manifest names, which verify reports as unlisted.
	store, _ := openStore(context.Background(), e.storeURL, "", false)
	rep, err := archive.VerifyChain(context.Background(), store, nil, "fault")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		if p.Kind != archive.ProblemUnlistedObject {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("verify after a kill: %+v\n%s", p, tail(string(b), 2000))
		}
	}
}

func TestFaultS3OutageUnderLoad(t *testing.T) {
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey())
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey())
	e := newFaultEnv(t, s3.StoreURL("mdtap-fault", ""))
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr)...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)

	l := e.startLoad(e.client(listen), 4)
	l.waitCalls(t, 40)
	s3.Stop() // the archiver retries; records wait in the stream
	l.waitCalls(t, 100)
	waitMetric(t, archAdmin, `mdtap_archive_errors_total{reason="store"}`, 2)
	s3.Restart()
	l.waitCalls(t, 40)
	accepted := l.finish()
	e.waitArchived(t, accepted, plogs, alogs)
}

func TestFaultProxySIGTERMUnderLoad(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	proxyProc, logf := spawn(t, e.proxyArgs(listen, adminAddr)...)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", alogs)

	l := e.startLoad(e.client(listen), 6)
	l.waitCalls(t, 150)
	if err := proxyProc.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	accepted := l.finish()
	b, _ := os.ReadFile(logf.Name())
	if proxyProc.Err() != nil {
		t.Fatalf("proxy exit after SIGTERM: %v\n%s", proxyProc.Err(), tail(string(b), 2000))
	}
	e.waitArchived(t, accepted, alogs)
}

// countingSim serves the simulator behind a counter of the requests that
// reached it, so a test can tell what the proxy never forwarded.
func (e *faultEnv) countingSim(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	tlsCfg, caPEM, _ := sim.NewTLSConfig(nil, nil)
	h := e.sim.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	srv.TLS = tlsCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.simURL = srv.URL
	os.WriteFile(e.simCA, caPEM, 0o644)
	return &n
}

// call makes one MyData call through the proxy and returns its status.
func (e *faultEnv) call(t *testing.T, hc *http.Client, tran string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", e.simURL+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0&limit=500", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("x-api-tran-id", tran)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("call %s: %v", tran, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Fail-closed: with NATS down and the spool full, new exchanges get 503
// before anything is sent upstream; once NATS is back and the spool drains,
// exchanges pass again, and every one accepted is archived.
func TestFailClosedWhenSpoolFull(t *testing.T) {
	e := newFaultEnv(t, "")
	upstream := e.countingSim(t)
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr, "--spool-max-bytes", "64KiB", "--on-full", "fail-closed")...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)
	hc := e.client(listen)

	var accepted []string
	e.ns.Stop()
	// NATS away, the spool has room: still ready.
	if code := httpStatus(t, "http://"+adminAddr+"/readyz"); code != 200 {
		t.Fatalf("readyz with NATS down and room in the spool: %d, want 200", code)
	}
	refusedAt := -1
	for i := 0; i < 400 && refusedAt < 0; i++ {
		tran := fmt.Sprintf("TESTMD0001MC%013d", i)
		switch code := e.call(t, hc, tran); code {
		case 200:
			accepted = append(accepted, tran)
		case 503:
			refusedAt = i
		default:
			t.Fatalf("call %d: status %d", i, code)
		}
	}
	if refusedAt < 0 {
		t.Fatal("the spool never filled: no 503")
	}
	before := upstream.Load()
	for i := range 5 {
		if code := e.call(t, hc, fmt.Sprintf("TESTMD0001MR%013d", i)); code != 503 {
			t.Fatalf("while the spool is full: status %d, want 503", code)
		}
	}
	if got := upstream.Load(); got != before {
		t.Fatalf("%d refused exchanges reached the provider", got-before)
	}
	if code := httpStatus(t, "http://"+adminAddr+"/readyz"); code != 503 {
		t.Fatalf("readyz while fail-closed refuses: %d, want 503", code)
	}
	e.ns.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		tran := fmt.Sprintf("TESTMD0001MA%013d", i)
		if e.call(t, hc, tran) == 200 {
			accepted = append(accepted, tran)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exchanges still refused after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.waitArchived(t, accepted, plogs, alogs)
}

// Fail-open: with NATS down and the spool full, traffic flows and records
// are kept as metadata (sizes, keyed digests, reason spool_full) in the
// spool's reserved part; only when even that is full are they counted as
// dropped. Every accepted exchange is archived, degraded or not, or counted.
func TestFailOpenWhenSpoolFull(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr, "--spool-max-bytes", "128KiB", "--on-full", "fail-open")...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	hc := e.client(listen)

	e.ns.Stop()
	var accepted []string
	for i := range 120 {
		tran := fmt.Sprintf("TESTMD0001MO%013d", i)
		if code := e.call(t, hc, tran); code != 200 {
			t.Fatalf("fail-open refused call %d with %d", i, code)
		}
		accepted = append(accepted, tran)
	}
	waitMetric(t, adminAddr, `mdtap_capture_degraded_total{reason="spool_full"}`, 1)
	dropped := metricValue(t, adminAddr, `mdtap_capture_dropped_total{reason="spool_full"}`)
	e.ns.Restart()
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)

	store, _ := openStore(context.Background(), e.storeURL, "", false)
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := countArchived(t, store)
		degraded := 0
		byTran := map[string]bool{}
		for _, line := range recs {
			var r struct {
				TranID   string `json:"tran_id"`
				Degraded string `json:"degraded"`
				Response *struct {
					Body json.RawMessage `json:"body"`
				} `json:"response"`
			}
			json.Unmarshal(line, &r)
			byTran[r.TranID] = true
			if r.Degraded == "spool_full" {
				degraded++
				if r.Response != nil && len(r.Response.Body) > 0 {
					t.Fatal("a degraded record kept its body")
				}
			}
		}
		if len(byTran)+int(dropped) >= len(accepted) {
			if degraded == 0 {
				t.Fatal("no record archived as degraded (spool_full)")
			}
			t.Logf("%d accepted: %d archived (%d degraded to metadata), %d counted as dropped", len(accepted), len(byTran), degraded, int(dropped))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted exchanges archived, %d dropped\n%s", len(byTran), len(accepted), int(dropped), tail(plogs.String(), 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func metricValue(t *testing.T, adminAddr, line string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, line) {
			var v float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, line)), "%g", &v)
			return v
		}
	}
	return 0
}

// The only loss window is memory at a hard kill: records waiting in the
// capture queue and publishes awaiting their ack. Measure it: SIGKILL the
// proxy under load and count accepted exchanges that never reach the archive.
func TestProxyHardKillLossIsBounded(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	const queue = 100
	proxyProc, _ := spawn(t, e.proxyArgs(listen, adminAddr, "--queue-size", fmt.Sprint(queue))...)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", alogs)
	l := e.startLoad(e.client(listen), 6)
	l.waitCalls(t, 300)
	if err := proxyProc.Stop(syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	accepted := l.finish()
	store, _ := openStore(context.Background(), e.storeURL, "", false)
	// Wait for the archive to settle: the same count twice, a second apart.
	prev := -1
	var got map[string]bool
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		got = map[string]bool{}
		for _, line := range countArchived(t, store) {
			var r struct {
				TranID string `json:"tran_id"`
			}
			json.Unmarshal(line, &r)
			got[r.TranID] = true
		}
		if len(got) == prev {
			break
		}
		prev = len(got)
	}
	lost := 0
	for _, tr := range accepted {
		if !got[tr] {
			lost++
		}
	}
	const bound = queue + 4096 // capture queue + publishes awaiting their ack (stream.DefaultMaxInFlight)
	t.Logf("hard kill under load: %d of %d accepted exchanges lost (bound %d)", lost, len(accepted), bound)
	if lost > bound {
		t.Fatalf("%d exchanges lost at a hard kill, more than the in-memory bound %d", lost, bound)
	}
}

// httpStatus is the status code of a GET of url.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
