package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
)

// syncBuffer is a goroutine-safe stderr for commands run in the background.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs an mdtap command line until the test ends, and checks it
// exits 0 on cancel.
func background(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	return backgroundEnv(t, nil, args...)
}

// backgroundEnv is background with an environment for the command.
func backgroundEnv(t *testing.T, env map[string]string, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, strings.NewReader(""), io.Discard, logs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("mdtap %s exited %d:\n%s", args[0], code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("mdtap %s did not stop", args[0])
		}
	})
	return logs
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200:\n%s", url, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The issue's end-to-end acceptance: a Go client walks every simulator API
// through `mdtap proxy` (forward MITM); the records arrive in JetStream,
// protected, with sector, api, org_code, tran_id and rsp_code, and no
// sensitive value of the simulator appears in any message.
// proxyStack is a running `mdtap proxy` in front of the simulator, with an
// embedded JetStream server.
type proxyStack struct {
	ns        *natstest.Server
	sim       *sim.Simulator
	simURL    string
	client    *http.Client
	adminAddr string
	logs      *syncBuffer
	keyDir    string
}

func startProxyStack(t *testing.T, natsOpts []natstest.Option, extra ...string) proxyStack {
	t.Helper()
	ns := natstest.Start(t, natsOpts...)
	dir := t.TempDir()
	keyDir, caDir := filepath.Join(dir, "keys"), filepath.Join(dir, "ca")
	for _, args := range [][]string{{"keys", "init", "--dir", keyDir}, {"ca", "init", "--dir", caDir}} {
		if _, errOut, code := mdtapRun(t, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	s := sim.New(sim.Options{Customers: 10})
	tlsCfg, caPEM, _ := sim.NewTLSConfig(nil, nil)
	simSrv, err := sim.Start("127.0.0.1:0", s, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { simSrv.Close() })
	simCA := filepath.Join(dir, "sim-ca.pem")
	os.WriteFile(simCA, caPEM, 0o644)

	listen, adminAddr := freePort(t), freePort(t)
	args := append([]string{"proxy", "--listen", listen, "--admin-listen", adminAddr, "--ca-dir", caDir, "--keys", keyDir,
		"--nats", ns.URL(), "--allow-host", strings.TrimPrefix(simSrv.URL(), "https://"), "--upstream-ca", simCA,
		"--service", "asset-sync", "--log-level", "debug"}, extra...)
	logs := background(t, args...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", logs)

	mitm, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	proxyURL, _ := url.Parse("http://" + listen)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return proxyStack{ns: ns, sim: s, simURL: simSrv.URL(), client: hc, adminAddr: adminAddr, logs: logs, keyDir: keyDir}
}

// fetchRecords reads n records from the stream through a test consumer.
func fetchRecords(t *testing.T, ns *natstest.Server, n int, logs *syncBuffer) ([]*mdtap.Record, []byte) {
	t.Helper()
	js := ns.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "MDTAP", jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	var recs []*mdtap.Record
	for len(recs) < n {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r mdtap.Record
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatalf("message is not a record: %v", err)
			}
			if want := mdtap.RecordSubject(r.Sector, r.OrgCode); m.Subject() != want {
				t.Errorf("subject %s, want %s", m.Subject(), want)
			}
			if m.Headers().Get("Nats-Msg-Id") != r.ID {
				t.Errorf("Nats-Msg-Id %q, want the record id", m.Headers().Get("Nats-Msg-Id"))
			}
			recs = append(recs, &r)
			all.Write(m.Data())
			all.WriteByte('\n')
			m.Ack()
		}
		if got == 0 && ctx.Err() != nil {
			t.Fatalf("%d of %d records arrived:\n%s", len(recs), n, logs.String())
		}
	}
	return recs, all.Bytes()
}

func TestProxyCommandEndToEnd(t *testing.T) {
	st := startProxyStack(t, nil)
	ns, s, logs, adminAddr := st.ns, st.sim, st.logs, st.adminAddr
	c := simclient.New(st.simURL, st.client)
	c.Sim = s
	c.Header = http.Header{"X-Mdtap-Subject": {"customer-2"}}
	var tranIDs []string
	c.OnExchange = func(ex simclient.Exchange) { tranIDs = append(tranIDs, ex.ReqHeader.Get("x-api-tran-id")) }
	if err := c.Walk(context.Background(), 2, 500); err != nil {
		t.Fatal(err)
	}
	recs, raw := fetchRecords(t, ns, len(tranIDs), logs)
	got := map[string]*mdtap.Record{}
	for _, r := range recs {
		got[r.TranID] = r
	}
	var all bytes.Buffer
	all.Write(raw)
	for _, id := range tranIDs {
		r := got[id]
		if r == nil {
			t.Fatalf("no record for tran id %s", id)
		}
		if err := r.Validate(); err != nil || !strings.HasPrefix(r.Policy, "builtin@") {
			t.Fatalf("record %s: %v policy %q", id, err, r.Policy)
		}
		if r.Service != "asset-sync" || r.Sector == mdtap.SectorUnknown || r.API == mdtap.APIUnknown || !strings.HasPrefix(r.Subject, "mdtap:hash:v1:") {
			t.Errorf("record %s: service %q sector %s api %s subject %q", id, r.Service, r.Sector, r.API, r.Subject)
		}
		if strings.HasPrefix(r.API, "/v1/") && (r.OrgCode == "" || r.Response.RspCode != "00000") {
			t.Errorf("record %s (%s): org %q rsp_code %q", id, r.API, r.OrgCode, r.Response.RspCode)
		}
	}
	text := all.String()
	leaks := 0
	for _, v := range s.SensitiveValues(2) {
		if len(v) >= 6 && strings.Contains(text, v) {
			leaks++
		}
	}
	if leaks > 0 || strings.Contains(text, "customer-2") {
		t.Fatalf("%d sensitive values appear in the stream", leaks)
	}
	if strings.Contains(logs.String(), "customer-2") {
		t.Fatal("the subject appears in the logs")
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"mdtap_proxy_requests_total", "mdtap_capture_total", `mdtap_proxy_tran_id_echo_total{echoed="true"`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	checkMetricsDocumented(t, string(metrics))
}

// checkMetricsDocumented fails for an mdtap_ metric that docs/metrics.md
// does not list: metric names are a contract.
func checkMetricsDocumented(t *testing.T, exposition string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, "# TYPE mdtap_") {
			continue
		}
		name := strings.Fields(line)[2]
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("metric %s is served but not documented in docs/metrics.md", name)
		}
	}
}

// A protected record larger than the server's max payload is degraded to
// metadata (sizes and keyed digests, a reason), never retried whole.
func TestProxyDegradesRecordsTooLargeForNATS(t *testing.T) {
	st := startProxyStack(t, []natstest.Option{natstest.WithMaxPayload(64 << 10)}, "--max-capture-bytes", "256KiB")
	req, _ := http.NewRequest("GET", st.simURL+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0", nil)
	req.Header.Set("Authorization", "Bearer "+st.sim.IssueToken(1, ""))
	req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000077")
	req.Header.Set("x-sim-fault", "big=200000")
	resp, err := st.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 200000 {
		t.Fatalf("client got %d bytes, want 200000", n)
	}
	recs, raw := fetchRecords(t, st.ns, 1, st.logs)
	r := recs[0]
	// The Go client asked for gzip, so 200000 bytes crossed the wire compressed.
	if r.Degraded != mdtap.DegradeTooLarge || r.Response.Body != nil || r.Response.ContentEncoding != "gzip" || r.Response.DecodedBytes != 200000 ||
		!strings.HasPrefix(r.Response.BodyDigest, "mdtap:hash:v1:") || r.Response.RspCode != "00000" {
		t.Fatalf("record degraded %q body %d bytes digest %q rsp_code %q", r.Degraded, r.Response.BodyBytes, r.Response.BodyDigest, r.Response.RspCode)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(raw) > 8<<10 {
		t.Fatalf("degraded record is %d bytes", len(raw))
	}
}
