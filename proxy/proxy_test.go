package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
)

// sinkRecorder collects records as the capture queue would receive them.
type sinkRecorder struct {
	mu   sync.Mutex
	recs []*mdtap.Record
}

func (s *sinkRecorder) Submit(r *mdtap.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
}

func (s *sinkRecorder) all() []*mdtap.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mdtap.Record(nil), s.recs...)
}

// waitFor polls until n records arrived.
func (s *sinkRecorder) waitFor(t *testing.T, n int) []*mdtap.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := s.all(); len(r) >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records arrived, want %d", len(s.all()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fixedNow keeps the simulator's data and search_timestamp stable, so a
// direct call and a proxied one can be compared byte for byte.
func fixedNow() time.Time { return time.Date(2026, 3, 15, 9, 30, 0, 0, time.UTC) }

type simServer struct {
	sim    *sim.Simulator
	url    string
	caFile string
	ca     *x509.CertPool
}

// startSim serves the simulator over TLS 1.3 on loopback; clientCAs, when
// set, makes it require client certificates.
func startSim(t *testing.T, clientCAs *x509.CertPool) simServer {
	t.Helper()
	s := sim.New(sim.Options{Customers: 10, Now: fixedNow, SlowDelay: 3 * time.Second})
	cfg, caPEM, err := sim.NewTLSConfig(nil, clientCAs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.Start("127.0.0.1:0", s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	caFile := filepath.Join(t.TempDir(), "sim-ca.pem")
	os.WriteFile(caFile, caPEM, 0o644)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return simServer{sim: s, url: srv.URL(), caFile: caFile, ca: pool}
}

type proxyServer struct {
	srv    *Server
	url    string
	sink   *sinkRecorder
	mitmCA *x509.CertPool
}

func startProxy(t *testing.T, o Options) proxyServer {
	t.Helper()
	sink := &sinkRecorder{}
	var pool *x509.CertPool
	if o.Reverse == nil && o.CA == nil {
		dir := t.TempDir()
		if err := InitCA(dir, false); err != nil {
			t.Fatal(err)
		}
		ca, _, err := LoadCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		o.CA = ca
		pool = x509.NewCertPool()
		pool.AddCert(ca.Leaf)
	}
	p, err := New(o, sink)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	return proxyServer{srv: p, url: "http://" + ln.Addr().String(), sink: sink, mitmCA: pool}
}

// client returns an HTTP client that uses the proxy as HTTPS_PROXY and
// trusts its MITM CA.
func (p proxyServer) client() *http.Client {
	u, _ := url.Parse(p.url)
	return &http.Client{Transport: &http.Transport{
		Proxy:              http.ProxyURL(u),
		TLSClientConfig:    &tls.Config{RootCAs: p.mitmCA},
		DisableCompression: true,
	}}
}

func directClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}
}

func hostOf(rawURL string) string {
	u, _ := url.Parse(rawURL)
	return u.Host
}

// Every exchange of a full walk through the MITM proxy: the client gets
// exactly the bytes, status and headers the provider sent (the tee sees
// them), and a record with the right sector, api, org and tran id.
func TestForwardMITMCapturesEveryAPI(t *testing.T) {
	s := startSim(t, nil)
	p := startProxy(t, Options{Allow: []string{hostOf(s.url)}, Upstream: UpstreamOptions{RootCAFile: s.caFile}, Service: "asset-sync"})
	var exchanges []simclient.Exchange
	c := simclient.New(s.url, p.client())
	c.Sim = s.sim
	c.OnExchange = func(ex simclient.Exchange) { exchanges = append(exchanges, ex) }
	if err := c.Walk(context.Background(), 1, 100); err != nil {
		t.Fatal(err)
	}
	recs := p.sink.waitFor(t, len(exchanges))
	byTran := map[string]*mdtap.Record{}
	for _, r := range recs {
		byTran[r.TranID] = r
	}
	for _, ex := range exchanges {
		tran := ex.ReqHeader.Get("x-api-tran-id")
		r := byTran[tran]
		if r == nil {
			t.Fatalf("%s: no record", ex.Name)
		}
		if r.Response == nil || r.Response.Status != ex.Status {
			t.Fatalf("%s: record status %v, client got %d", ex.Name, r.Response, ex.Status)
		}
		if !bytes.Equal(r.Response.Body, ex.RespBody) || r.Response.BodyBytes != int64(len(ex.RespBody)) {
			t.Fatalf("%s: the client got %d bytes, the provider sent %d (captured %d)", ex.Name, len(ex.RespBody), r.Response.BodyBytes, len(r.Response.Body))
		}
		if got := ex.RespHeader.Get("Content-Length"); ex.Status != 302 && got == "" && len(ex.RespBody) > 0 {
			t.Errorf("%s: Content-Length lost", ex.Name)
		}
		if !bytes.Equal(r.Request.Body, ex.ReqBody) {
			t.Fatalf("%s: request body captured differently", ex.Name)
		}
		if r.Service != "asset-sync" || !mdtap.ValidRecordID(r.ID) || r.Error != "" {
			t.Fatalf("%s: record %+v", ex.Name, r)
		}
		if r.TranIDEchoed == nil || !*r.TranIDEchoed {
			t.Errorf("%s: tran id echo not recorded", ex.Name)
		}
		p.srv.Completer().Complete(r)
		m := mdtap.MatchAPI(ex.URL.Path)
		if r.Sector != m.Sector || r.API != m.API || r.API == mdtap.APIUnknown {
			t.Errorf("%s: sector %s api %s", ex.Name, r.Sector, r.API)
		}
		if strings.HasPrefix(ex.URL.Path, "/v1/") && r.OrgCode == "" {
			t.Errorf("%s: no org_code", ex.Name)
		}
		if ex.Status == 200 && strings.HasPrefix(ex.URL.Path, "/v1/") && r.Response.RspCode != "00000" {
			t.Errorf("%s: rsp_code %q", ex.Name, r.Response.RspCode)
		}
	}
}

func TestDirectAndProxiedBytesAreIdentical(t *testing.T) {
	s := startSim(t, nil)
	p := startProxy(t, Options{Allow: []string{hostOf(s.url)}, Upstream: UpstreamOptions{RootCAFile: s.caFile}})
	token := s.sim.IssueToken(2, "")
	for _, gz := range []bool{false, true} {
		get := func(hc *http.Client) (*http.Response, []byte) {
			req, _ := http.NewRequest("GET", s.url+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0&limit=500", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000042")
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, b
		}
		dr, direct := get(directClient(s.ca))
		pr, proxied := get(p.client())
		if !bytes.Equal(direct, proxied) || dr.StatusCode != pr.StatusCode {
			t.Fatalf("gzip=%v: proxied response differs from direct (%d vs %d bytes)", gz, len(proxied), len(direct))
		}
		for _, h := range []string{"Content-Type", "Content-Encoding", "Content-Length", "X-Api-Tran-Id"} {
			if dr.Header.Get(h) != pr.Header.Get(h) {
				t.Errorf("gzip=%v: header %s: direct %q, proxied %q", gz, h, dr.Header.Get(h), pr.Header.Get(h))
			}
		}
		if gz && pr.Header.Get("Content-Encoding") != "gzip" {
			t.Fatal("the compressed response did not stay compressed for the client")
		}
	}
	recs := p.sink.waitFor(t, 2)
	gzRec := recs[1]
	p.srv.Completer().Complete(gzRec)
	if gzRec.Response.ContentEncoding != "gzip" || gzRec.Response.DecodedBytes == 0 || !bytes.HasPrefix(gzRec.Response.Body, []byte(`{"rsp_code":"00000"`)) {
		t.Fatalf("gzip body not decoded for capture: encoding %q decoded %d", gzRec.Response.ContentEncoding, gzRec.Response.DecodedBytes)
	}
}

func TestReverseMode(t *testing.T) {
	s := startSim(t, nil)
	up, _ := url.Parse(s.url)
	p := startProxy(t, Options{Reverse: up, Upstream: UpstreamOptions{RootCAFile: s.caFile}})
	c := simclient.New(p.url, &http.Client{Transport: &http.Transport{DisableCompression: true}})
	c.Sim = s.sim
	n := 0
	c.OnExchange = func(simclient.Exchange) { n++ }
	if err := c.Walk(context.Background(), 4, 200); err != nil {
		t.Fatal(err)
	}
	recs := p.sink.waitFor(t, n)
	for _, r := range recs {
		if r.Request.Host != up.Host || r.Response == nil || r.Error != "" {
			t.Fatalf("record host %s error %q", r.Request.Host, r.Error)
		}
	}
}

func TestLargeResponsePassesWhileRecordTruncates(t *testing.T) {
	s := startSim(t, nil)
	p := startProxy(t, Options{Allow: []string{hostOf(s.url)}, Upstream: UpstreamOptions{RootCAFile: s.caFile}, MaxCaptureBytes: 256 << 10})
	const size = 10 << 20
	req, _ := http.NewRequest("GET", s.url+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0", nil)
	req.Header.Set("Authorization", "Bearer "+s.sim.IssueToken(1, ""))
	req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000043")
	req.Header.Set("x-sim-fault", "big=10485760")
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(body) != size {
		t.Fatalf("client got %d bytes (%v), want %d", len(body), err, size)
	}
	r := p.sink.waitFor(t, 1)[0]
	if !r.Response.Truncated || r.Response.BodyBytes != size || r.Response.CapturedBytes != 256<<10 || len(r.Response.FullSHA256) != 32 {
		t.Fatalf("record: truncated %v body_bytes %d captured %d", r.Response.Truncated, r.Response.BodyBytes, r.Response.CapturedBytes)
	}
}

func TestUpstreamDownGives502AndARecord(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := startProxy(t, Options{Allow: []string{addr}})
	resp, err := p.client().Get("https://" + addr + "/oauth/2.0/revoke?token=SECRET-IN-QUERY&client_secret=ALSO-SECRET")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream") || resp.Header.Get("X-Mdtap-Error") != "upstream" {
		t.Fatalf("status %d body %q header %q, want 502 with a message and X-Mdtap-Error: upstream", resp.StatusCode, body, resp.Header.Get("X-Mdtap-Error"))
	}
	r := p.sink.waitFor(t, 1)[0]
	if r.Error == "" || r.Response != nil {
		t.Fatalf("record error %q response %v", r.Error, r.Response)
	}
	for _, s := range []string{string(body), r.Error} {
		if strings.Contains(s, "SECRET") || strings.Contains(s, "?") {
			t.Fatalf("error text carries the query string: %q", s)
		}
	}
}

func TestDisallowedHostsGet403(t *testing.T) {
	s := startSim(t, nil)
	p := startProxy(t, Options{Allow: []string{"provider.example"}, Upstream: UpstreamOptions{RootCAFile: s.caFile}})
	resp, err := p.client().Get(s.url + "/v1/bank/accounts")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("CONNECT to a host not allowed succeeded with %d", resp.StatusCode)
	}
	// The CONNECT itself answers 403 with a message.
	conn, err := net.Dial("tcp", hostOf(p.url))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT "+hostOf(s.url)+" HTTP/1.1\r\nHost: "+hostOf(s.url)+"\r\n\r\n")
	line, _ := io.ReadAll(io.LimitReader(conn, 400))
	if !strings.HasPrefix(string(line), "HTTP/1.1 403") || !strings.Contains(string(line), "not allowed") {
		t.Fatalf("CONNECT answer %q, want 403 with a message", line)
	}
	// A plain proxy request to another host, too.
	u, _ := url.Parse(p.url)
	plain := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
	resp, err = plain.Get("http://elsewhere.example/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Mdtap-Error") != "refused" {
		t.Fatalf("plain request to another host: %d (X-Mdtap-Error %q), want 403, refused", resp.StatusCode, resp.Header.Get("X-Mdtap-Error"))
	}
	if len(p.sink.all()) != 0 {
		t.Fatal("a refused request produced a record")
	}
}

// headerEcho is a TLS provider stand-in that remembers what it received.
func headerEcho(t *testing.T, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return srv, caFile
}

func TestSubjectHeaderNeverReachesTheProvider(t *testing.T) {
	var got http.Header
	srv, caFile := headerEcho(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"rsp_code":"00000"}`)
	})
	p := startProxy(t, Options{Allow: []string{hostOf(srv.URL)}, Upstream: UpstreamOptions{RootCAFile: caFile}})
	req, _ := http.NewRequest("GET", srv.URL+"/v1/bank/accounts", nil)
	req.Header.Set("x-mdtap-subject", "customer-1234")
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got == nil || got.Get("x-mdtap-subject") != "" {
		t.Fatalf("the provider received the subject header: %v", got)
	}
	r := p.sink.waitFor(t, 1)[0]
	if r.Subject != "customer-1234" || r.Request.Headers["x-mdtap-subject"] != nil {
		t.Fatalf("raw record subject %q, headers %v", r.Subject, r.Request.Headers)
	}
}

func TestTrailersAndStreaming(t *testing.T) {
	release := make(chan struct{})
	srv, caFile := headerEcho(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first part;")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "second part")
		w.Header().Set("X-Checksum", "abc123")
	})
	p := startProxy(t, Options{Allow: []string{hostOf(srv.URL)}, Upstream: UpstreamOptions{RootCAFile: caFile}})
	resp, err := p.client().Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first part;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first part;" {
		t.Fatalf("first bytes %q %v: the response was held back", first, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second part" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("rest %q trailer %q", rest, resp.Trailer.Get("X-Checksum"))
	}
	r := p.sink.waitFor(t, 1)[0]
	if r.Response.Headers["x-checksum"][0] != "abc123" {
		t.Fatalf("record lacks the trailer: %v", r.Response.Headers)
	}
}

func TestUpstreamMTLS(t *testing.T) {
	clientCA, err := sim.NewCA("test client CA")
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t, clientCA.Pool())
	cert, err := clientCA.ClientCert("mdtap-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	keyDER, _ := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	token := s.sim.IssueToken(1, "")
	call := func(p proxyServer) int {
		req, _ := http.NewRequest("GET", s.url+"/v1/bank/accounts?org_code=TESTBK0001", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000044")
		resp, err := p.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	with := startProxy(t, Options{Allow: []string{hostOf(s.url)}, Upstream: UpstreamOptions{RootCAFile: s.caFile, ClientCert: ClientCert{certFile, keyFile}}})
	if code := call(with); code != 200 {
		t.Fatalf("with a client certificate: %d, want 200", code)
	}
	without := startProxy(t, Options{Allow: []string{hostOf(s.url)}, Upstream: UpstreamOptions{RootCAFile: s.caFile}})
	if code := call(without); code != http.StatusBadGateway {
		t.Fatalf("without a client certificate: %d, want 502", code)
	}
	r := without.sink.waitFor(t, 1)[0]
	if !strings.Contains(r.Error, "tls") {
		t.Fatalf("record error %q, want a TLS failure", r.Error)
	}
}

func TestGzipBombIsFlaggedNotFollowed(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(bytes.Repeat([]byte("A"), 50<<20))
	zw.Close()
	bomb := buf.Bytes()
	srv, caFile := headerEcho(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(bomb)
	})
	p := startProxy(t, Options{Allow: []string{hostOf(srv.URL)}, Upstream: UpstreamOptions{RootCAFile: caFile}})
	resp, err := p.client().Get(srv.URL + "/v1/bank/accounts")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, bomb) {
		t.Fatal("the client did not get the compressed bytes as sent")
	}
	r := p.sink.waitFor(t, 1)[0]
	p.srv.Completer().Complete(r)
	if r.Response.OpaqueReason != mdtap.OpaqueDecodeLimit || len(r.Response.Body) != len(bomb) {
		t.Fatalf("opaque reason %q, body %d bytes", r.Response.OpaqueReason, len(r.Response.Body))
	}
}

// Fail-closed: while the gate refuses, exchanges get 503 before anything is
// sent upstream; once it admits again, they pass.
func TestAdmitGateRefusesBeforeForwarding(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv, caFile := headerEcho(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		io.WriteString(w, "{}")
	})
	var closed atomic.Bool
	closed.Store(true)
	p := startProxy(t, Options{Allow: []string{hostOf(srv.URL)}, Upstream: UpstreamOptions{RootCAFile: caFile},
		Admit: func() error {
			if closed.Load() {
				return errSpoolFullForTest
			}
			return nil
		}})
	resp, err := p.client().Get(srv.URL + "/v1/bank/accounts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	n := calls
	mu.Unlock()
	if resp.StatusCode != http.StatusServiceUnavailable || n != 0 || !strings.Contains(string(body), "spool full") {
		t.Fatalf("status %d, upstream calls %d, body %q: want 503 and nothing forwarded", resp.StatusCode, n, body)
	}
	closed.Store(false)
	resp, err = p.client().Get(srv.URL + "/v1/bank/accounts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the gate opened: %d", resp.StatusCode)
	}
}

var errSpoolFullForTest = errorString("records cannot be made durable (spool full)")

type errorString string

func (e errorString) Error() string { return string(e) }
