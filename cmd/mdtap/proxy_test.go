package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
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
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, strings.NewReader(""), io.Discard, logs, func(string) (string, bool) { return "", false })
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

// The end-to-end acceptance: a Go client walks every simulator API
// through `mdtap proxy` (forward MITM); the records arrive in JetStream,
// protected, with sector, api, org_code, tran_id and rsp_code, and no
// sensitive value of the simulator appears in any message.
func TestProxyCommandEndToEnd(t *testing.T) {
	ns := natstest.Start(t)
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
	logs := background(t, "proxy", "--listen", listen, "--admin-listen", adminAddr, "--ca-dir", caDir, "--keys", keyDir,
		"--nats", ns.URL(), "--allow-host", strings.TrimPrefix(simSrv.URL(), "https://"), "--upstream-ca", simCA,
		"--service", "asset-sync", "--log-level", "debug")
	waitHTTP(t, "http://"+adminAddr+"/readyz", logs)

	mitm, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	proxyURL, _ := url.Parse("http://" + listen)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c := simclient.New(simSrv.URL(), hc)
	c.Sim = s
	c.Header = http.Header{"X-Mdtap-Subject": {"customer-2"}}
	var tranIDs []string
	c.OnExchange = func(ex simclient.Exchange) { tranIDs = append(tranIDs, ex.ReqHeader.Get("x-api-tran-id")) }
	if err := c.Walk(context.Background(), 2, 500); err != nil {
		t.Fatal(err)
	}

	js := ns.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "MDTAP", jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	got := map[string]*mdtap.Record{}
	for len(got) < len(tranIDs) {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
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
			got[r.TranID] = &r
			all.Write(m.Data())
			m.Ack()
		}
		if n == 0 && ctx.Err() != nil {
			t.Fatalf("%d of %d records arrived:\n%s", len(got), len(tranIDs), logs.String())
		}
	}
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
	fmt.Fprintf(io.Discard, "%d records", len(got))
}
