package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/proxy"
)

func TestClosedCountsAndChecks(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()
	var seq atomic.Uint64
	o := Options{Client: srv.Client(), Concurrency: 4, Seq: &seq,
		Request: func(ctx context.Context, _ uint64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		}}
	r, err := Closed(context.Background(), o, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	total := r.Requests + r.Errors
	if r.Requests == 0 || r.Errors == 0 || total != n.Load() || uint64(total) != seq.Load() {
		t.Fatalf("Closed: %d ok, %d errors, server saw %d, seq %d: want every attempt counted once", r.Requests, r.Errors, n.Load(), seq.Load())
	}
	if r.Bytes != 5*r.Requests {
		t.Errorf("Closed: %d bytes for %d requests, want 5 each", r.Bytes, r.Requests)
	}
	if !strings.Contains(r.FirstError, "HTTP 500") {
		t.Errorf("Closed: first error %q, want the status", r.FirstError)
	}
	if p50, p99 := r.Percentile(0.5), r.Percentile(0.99); p50 <= 0 || p99 < p50 {
		t.Errorf("Closed: p50 %v, p99 %v", p50, p99)
	}
}

// A server that stalls once must show the stall in the latency of every
// request that came due during it, not only in the one that met it.
func TestOpenCountsFromScheduledTime(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 50 {
			time.Sleep(200 * time.Millisecond)
		}
	}))
	defer srv.Close()
	o := Options{Client: srv.Client(), Concurrency: 1,
		Request: func(ctx context.Context, _ uint64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		}}
	r, err := Open(context.Background(), o, 500, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 500 || r.Unsent != 0 {
		t.Fatalf("Open: %d requests, %d unsent, want 500 and 0", r.Requests, r.Unsent)
	}
	// About 100 requests (200 ms at 500/s) came due during the stall.
	if p90 := r.Percentile(0.90); p90 < 20*time.Millisecond {
		t.Errorf("Open: p90 %v: the stall does not show beyond the request that met it", p90)
	}
	if rate := r.Rate(); rate < 400 || rate > 520 {
		t.Errorf("Open: rate %.0f, want about 500", rate)
	}
}

func TestOpenStopsWhenFarBehind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
	}))
	defer srv.Close()
	o := Options{Client: srv.Client(), Concurrency: 1,
		Request: func(ctx context.Context, _ uint64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		}}
	start := time.Now()
	r, err := Open(context.Background(), o, 1000, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Unsent == 0 || time.Since(start) > time.Second {
		t.Errorf("Open: %d unsent after %v, want the run cut off at twice its length", r.Unsent, time.Since(start))
	}
}

func TestRelayForwardsOnlyTheAllowedHost(t *testing.T) {
	s := sim.New(sim.Options{})
	tlsCfg, caPEM, err := sim.NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, err := sim.Start("127.0.0.1:0", s, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	if err := proxy.InitCA(dir, false); err != nil {
		t.Fatal(err)
	}
	ca, _, err := proxy.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	h, tr, err := NewRelay(RelayOptions{CA: ca, Allow: up.Addr().String(), Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	relay := httptest.NewServer(h)
	defer relay.Close()

	mitm, err := os.ReadFile(filepath.Join(dir, proxy.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	pu, _ := url.Parse(relay.URL)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}
	w, err := NewWorkload(context.Background(), WorkloadAccounts, s, up.URL(), hc)
	if err != nil {
		t.Fatalf("accounts through the relay: %v", err)
	}
	if w.Calls[0].RespBytes == 0 {
		t.Errorf("accounts through the relay: empty response")
	}
	other := strings.Replace(up.URL(), "127.0.0.1", "localhost", 1)
	resp, err := hc.Get(other + "/v1/bank/accounts")
	if err == nil {
		resp.Body.Close()
		t.Errorf("GET via the relay to %s: got HTTP %d, want the CONNECT refused", other, resp.StatusCode)
	}
}

func TestWorkloads(t *testing.T) {
	s := sim.New(sim.Options{})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, kind := range Workloads {
		t.Run(kind, func(t *testing.T) {
			w, err := NewWorkload(context.Background(), kind, s, srv.URL, hc)
			if err != nil {
				t.Fatal(err)
			}
			switch kind {
			case WorkloadTransactions:
				if n := w.MeanRespBytes(); n > 2<<10 || n < 1<<10 {
					t.Errorf("transactions: %d-byte response, want about 2 KiB", n)
				}
			case WorkloadTransactions64K:
				if n := w.MeanRespBytes(); n > 64<<10 || n < 48<<10 {
					t.Errorf("transactions-64k: %d-byte response, want about 64 KiB", n)
				}
			case WorkloadMixed:
				if w.apis() < 10 {
					t.Errorf("mixed: %d APIs, want the sectors' resource APIs", w.apis())
				}
			}
			req := w.Requests(srv.URL)
			r, err := Closed(context.Background(), Options{Client: hc, Concurrency: 2, Request: req}, 100*time.Millisecond)
			if err != nil || r.Errors != 0 || r.Requests == 0 {
				t.Fatalf("%s: %d ok, %d errors (%s), %v", kind, r.Requests, r.Errors, r.FirstError, err)
			}
		})
	}
}

func TestTranID(t *testing.T) {
	if got := TranID(0); got != "TESTMD0001M00000000000001" || len(got) != 25 {
		t.Errorf("TranID(0) = %q, want TESTMD0001M00000000000001 (25 characters)", got)
	}
}

func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP mdtap_capture_total x
# TYPE mdtap_capture_total counter
mdtap_capture_total{outcome="published",sector="bank"} 10
mdtap_capture_total{outcome="degraded",sector="bank"} 2
mdtap_capture_queue_depth 3
`)
	}))
	defer srv.Close()
	m, err := ScrapeMetrics(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m["mdtap_capture_total"] != 12 || m["mdtap_capture_queue_depth"] != 3 {
		t.Errorf("ScrapeMetrics: %v, want the series summed", m)
	}
}

func TestReadProcSelf(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	if err != nil {
		t.Skipf("ReadProc: %v", err)
	}
	if st.RSS <= 0 || st.PeakRSS < st.RSS {
		t.Errorf("ReadProc(self) = %+v: want RSS > 0 and peak ≥ RSS", st)
	}
}
