package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

// secret is what a hostile request carries; it must not appear in any
// response, log line or record a refusal produces.
const secret = "HOSTILE-SECRET-4242-ACCT"

// hostileEnv is a proxy (forward or reverse) with its metrics, logs and a
// provider stand-in that counts what reaches it.
type hostileEnv struct {
	proxyServer
	reg      *prometheus.Registry
	logs     *syncBuf
	upstream *httptest.Server
	hits     *atomic.Int64
	addr     string // the proxy's listen address
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHostile starts a TLS provider (h answers it; nil: a small JSON body)
// and a proxy in front of it: reverse mode when reverse is set, else
// forward mode with the provider's address allow-listed.
func startHostile(t *testing.T, reverse bool, o Options, h http.HandlerFunc) *hostileEnv {
	t.Helper()
	e := &hostileEnv{reg: prometheus.NewRegistry(), logs: &syncBuf{}, hits: &atomic.Int64{}}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"rsp_code":"00000"}`)
		}
	}
	srv, caFile := headerEcho(t, func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		h(w, r)
	})
	e.upstream = srv
	o.Upstream.RootCAFile = caFile
	if reverse {
		o.Reverse, _ = url.Parse(srv.URL)
	} else if len(o.Allow) == 0 {
		o.Allow = []string{hostOf(srv.URL)}
	}
	o.Registerer, o.Logger = e.reg, zerolog.New(e.logs).Level(zerolog.DebugLevel)
	e.proxyServer = startProxy(t, o)
	e.addr = hostOf(e.url)
	return e
}

// metric reads a counter or gauge by name and label value ("" for none).
func (e *hostileEnv) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabelValue(m, label) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func hasLabelValue(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

// waitMetric polls until the metric reaches want.
func (e *hostileEnv) waitMetric(t *testing.T, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.metric(t, name, label) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, label, e.metric(t, name, label), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noLeak fails when the secret shows in s, in the logs or in a record.
func (e *hostileEnv) noLeak(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Fatalf("%s carries the request's secret: %q", what, s)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Fatalf("the logs carry the request's secret")
	}
	for _, r := range e.sink.all() {
		if strings.Contains(r.Error, secret) || strings.Contains(r.Error, "?") {
			t.Fatalf("record error %q carries the request's secret or query", r.Error)
		}
	}
}

// dial opens a raw connection to the proxy.
func (e *hostileEnv) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// tunnel opens a MITM tunnel to the provider and returns its TLS client
// side, offering protos by ALPN.
func (e *hostileEnv) tunnel(t *testing.T, protos ...string) *tls.Conn {
	t.Helper()
	c := e.dial(t)
	target := hostOf(e.upstream.URL)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if len(protos) == 0 {
		protos = []string{"http/1.1"}
	}
	tc := tls.Client(c, &tls.Config{RootCAs: e.mitmCA, ServerName: hostOnly(target), NextProtos: protos})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("tunnel handshake: %v", err)
	}
	return tc
}

// exchange writes raw request bytes and reads one response; status 0 means
// the connection closed without one.
func exchange(t *testing.T, c net.Conn, raw string) (int, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		return 0, ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// paths are the three places the sidecar parses a client's request: the
// outer connection in reverse mode, a plain proxy request on the outer
// connection in forward mode, and a request inside a MITM tunnel. Each
// returns a connection and the request target to put in the request line.
type hostilePath struct {
	name  string
	start func(t *testing.T, o Options, h http.HandlerFunc) (*hostileEnv, func(t *testing.T) (net.Conn, string))
}

var hostilePaths = []hostilePath{
	{"reverse", func(t *testing.T, o Options, h http.HandlerFunc) (*hostileEnv, func(t *testing.T) (net.Conn, string)) {
		e := startHostile(t, true, o, h)
		return e, func(t *testing.T) (net.Conn, string) { return e.dial(t), "/v1/bank/accounts" }
	}},
	{"tunnel", func(t *testing.T, o Options, h http.HandlerFunc) (*hostileEnv, func(t *testing.T) (net.Conn, string)) {
		e := startHostile(t, false, o, h)
		return e, func(t *testing.T) (net.Conn, string) { return e.tunnel(t), "/v1/bank/accounts" }
	}},
	{"plain", func(t *testing.T, o Options, h http.HandlerFunc) (*hostileEnv, func(t *testing.T) (net.Conn, string)) {
		// A plain-HTTP provider stand-in, allow-listed by its address.
		e := startHostile(t, false, o, h)
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.hits.Add(1)
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, `{"rsp_code":"00000"}`)
		}))
		t.Cleanup(plain.Close)
		o.Allow = []string{hostOf(plain.URL)}
		e.reg = prometheus.NewRegistry()
		o.Registerer, o.Logger = e.reg, zerolog.New(e.logs)
		e.proxyServer = startProxy(t, o)
		e.addr = hostOf(e.url)
		return e, func(t *testing.T) (net.Conn, string) { return e.dial(t), plain.URL + "/v1/bank/accounts" }
	}},
}

// Request smuggling: every ambiguous framing is refused with 400 before
// anything reaches the provider, counted by kind, and leaves no record.
func TestHostileSmugglingRefused(t *testing.T) {
	cases := []struct {
		name, head, body, kind string
	}{
		{"cl then te", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n", "cl_te"},
		{"te then cl", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n", "cl_te"},
		{"differing content-length", "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!", "duplicate_content_length"},
		{"repeated content-length", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello", "duplicate_content_length"},
		{"obs-fold", "X-Note: a\r\n " + secret + "\r\nContent-Length: 0\r\n", "", "obs_fold"},
		{"folded transfer-encoding", "Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n", "obs_fold"},
		{"te chunked identity", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n", "bad_transfer_encoding"},
		{"te twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n", "bad_transfer_encoding"},
		{"signed content-length", "Content-Length: +5\r\n", "hello", "bad_content_length"},
		{"space before colon", "Transfer-Encoding : chunked\r\n", "0\r\n\r\n", "bad_header"},
		{"bare lf", "X-A: 1\nContent-Length: 0\r\n", "", "bare_lf"},
	}
	for _, p := range hostilePaths {
		t.Run(p.name, func(t *testing.T) {
			e, conn := p.start(t, Options{}, nil)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					c, target := conn(t)
					before := e.metric(t, "mdtap_proxy_smuggling_total", tc.kind)
					raw := "POST " + target + " HTTP/1.1\r\nHost: " + hostOf(e.upstream.URL) + "\r\nAuthorization: Bearer " + secret + "\r\n" + tc.head + "\r\n" + tc.body
					status, body := exchange(t, c, raw)
					if status != http.StatusBadRequest {
						t.Fatalf("status %d (%q), want 400", status, body)
					}
					if got := e.metric(t, "mdtap_proxy_smuggling_total", tc.kind); got != before+1 {
						t.Fatalf("mdtap_proxy_smuggling_total{%s} = %v, want %v", tc.kind, got, before+1)
					}
					// The connection is closed after the refusal.
					if n, err := c.Read(make([]byte, 1)); err == nil {
						t.Fatalf("connection still open after the refusal (%d bytes)", n)
					}
					e.noLeak(t, "the refusal", body)
				})
			}
			if n := e.hits.Load(); n != 0 {
				t.Fatalf("%d refused requests reached the provider", n)
			}
			if n := len(e.sink.all()); n != 0 {
				t.Fatalf("refused requests produced %d records", n)
			}
			// The path still serves a clean request.
			c, target := conn(t)
			if status, _ := exchange(t, c, "GET "+target+" HTTP/1.1\r\nHost: "+hostOf(e.upstream.URL)+"\r\n\r\n"); status != 200 {
				t.Fatalf("a clean request after the refusals: %d", status)
			}
		})
	}
}

// A chunked body whose framing breaks after the head was forwarded: the
// upstream call is aborted (never completed with a body the provider could
// read differently), the client gets 400 or a closed connection, and the
// record says the exchange failed.
func TestHostileBrokenChunkAborts(t *testing.T) {
	for _, p := range hostilePaths[:2] {
		t.Run(p.name, func(t *testing.T) {
			var complete atomic.Int64
			e, conn := p.start(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.Copy(io.Discard, r.Body); err == nil {
					complete.Add(1)
				}
			})
			c, target := conn(t)
			status, _ := exchange(t, c, "POST "+target+" HTTP/1.1\r\nHost: "+hostOf(e.upstream.URL)+
				"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"+secret+"\r\n0\r\n\r\n")
			if status != 0 && status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 or a closed connection", status)
			}
			e.waitMetric(t, "mdtap_proxy_smuggling_total", "bad_chunk", 1)
			if complete.Load() != 0 {
				t.Fatal("the provider read a complete body")
			}
			r := e.sink.waitFor(t, 1)[0]
			if r.Error == "" {
				t.Fatal("the record of the aborted exchange has no error")
			}
			e.noLeak(t, "the answer", "")
		})
	}
}

// Head limits: header bytes, header count and request line, on every path.
func TestHostileHeadLimits(t *testing.T) {
	o := Options{Limits: Limits{MaxHeaderBytes: 4096, MaxHeaderCount: 20, MaxRequestLine: 1024}}
	cases := []struct {
		name   string
		build  func(target, host string) string
		status int
		limit  string
	}{
		{"header bytes", func(target, host string) string {
			return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat(secret, 300) + "\r\n\r\n"
		}, 431, "header_bytes"},
		{"header count", func(target, host string) string {
			var b strings.Builder
			for i := range 30 {
				fmt.Fprintf(&b, "X-H%d: %s\r\n", i, secret)
			}
			return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + b.String() + "\r\n"
		}, 431, "header_count"},
		{"request line", func(target, host string) string {
			return "GET " + target + "?q=" + strings.Repeat(secret, 100) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		}, 414, "request_line"},
		{"body", func(target, host string) string {
			return "POST " + target + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 99999999\r\n\r\n" + secret
		}, 413, "body_bytes"},
	}
	for _, p := range hostilePaths {
		t.Run(p.name, func(t *testing.T) {
			e, conn := p.start(t, o, nil)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					before := e.metric(t, "mdtap_proxy_limit_total", tc.limit)
					c, target := conn(t)
					status, body := exchange(t, c, tc.build(target, hostOf(e.upstream.URL)))
					if status != tc.status {
						t.Fatalf("status %d (%q), want %d", status, body, tc.status)
					}
					if got := e.metric(t, "mdtap_proxy_limit_total", tc.limit); got != before+1 {
						t.Fatalf("mdtap_proxy_limit_total{%s} = %v, want %v", tc.limit, got, before+1)
					}
					e.noLeak(t, "the refusal", body)
				})
			}
			if n := e.hits.Load(); n != 0 {
				t.Fatalf("%d refused requests reached the provider", n)
			}
		})
	}
}

// A chunked body that outgrows the limit is cut: 413, the provider never
// reads a complete body, and the record says so.
func TestHostileChunkedBodyOverLimit(t *testing.T) {
	for _, p := range hostilePaths[:2] {
		t.Run(p.name, func(t *testing.T) {
			e, conn := p.start(t, Options{Limits: Limits{MaxBodyBytes: 1024}}, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
			})
			c, target := conn(t)
			chunk := strings.Repeat("A", 600)
			status, body := exchange(t, c, "POST "+target+" HTTP/1.1\r\nHost: "+hostOf(e.upstream.URL)+"\r\nTransfer-Encoding: chunked\r\n\r\n"+
				fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk))
			if status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d (%q), want 413", status, body)
			}
			e.waitMetric(t, "mdtap_proxy_limit_total", "body_bytes", 1)
			if r := e.sink.waitFor(t, 1)[0]; !strings.Contains(r.Error, "limit") {
				t.Fatalf("record error %q, want the body limit", r.Error)
			}
		})
	}
}

// Slowloris: a head dribbled byte by byte, and a body that stalls, are cut
// at their deadlines and counted; a tunnel's inner connection too.
func TestHostileSlowClientsAreCut(t *testing.T) {
	o := Options{Limits: Limits{ClientHeaderTimeout: 300 * time.Millisecond, ClientReadTimeout: 300 * time.Millisecond}}
	for _, p := range hostilePaths[:2] {
		t.Run(p.name, func(t *testing.T) {
			e, conn := p.start(t, o, nil)
			c, target := conn(t)
			start := time.Now()
			head := "GET " + target + " HTTP/1.1\r\nHost: " + hostOf(e.upstream.URL) + "\r\nX-Slow: "
			var err error
			for i := 0; err == nil && time.Since(start) < 5*time.Second; i++ {
				_, err = io.WriteString(c, head[i%len(head):i%len(head)+1])
				if err == nil {
					time.Sleep(50 * time.Millisecond)
					c.SetReadDeadline(time.Now().Add(time.Millisecond))
					_, rerr := c.Read(make([]byte, 1))
					if rerr != nil && !isTimeout(rerr) {
						err = rerr
					}
				}
			}
			if took := time.Since(start); err == nil || took > 3*time.Second {
				t.Fatalf("a dribbling client held the connection for %v (%v)", took, err)
			}
			e.waitMetric(t, "mdtap_proxy_limit_total", "client_header_timeout", 1)

			c, target = conn(t)
			io.WriteString(c, "POST "+target+" HTTP/1.1\r\nHost: "+hostOf(e.upstream.URL)+"\r\nContent-Length: 100\r\n\r\n0123456789")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start = time.Now()
			io.ReadAll(c) // until the sidecar closes
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("a stalled body held the connection for %v", took)
			}
			e.waitMetric(t, "mdtap_proxy_limit_total", "client_read_timeout", 1)

			// A connection that never sends a request is cut too.
			c, _ = conn(t)
			start = time.Now()
			io.ReadAll(c)
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("a silent connection was held for %v", took)
			}
			e.waitMetric(t, "mdtap_proxy_limit_total", "client_header_timeout", 2)
		})
	}
}

// Progress deadlines never cut a long response that keeps moving, even when
// it lasts many times the deadline.
func TestHostileSlowButMovingStreamPasses(t *testing.T) {
	o := Options{Limits: Limits{ClientWriteTimeout: 200 * time.Millisecond, ClientReadTimeout: 200 * time.Millisecond},
		Upstream: UpstreamOptions{ReadTimeout: 200 * time.Millisecond}}
	e := startHostile(t, false, o, func(w http.ResponseWriter, r *http.Request) {
		for i := range 12 {
			fmt.Fprintf(w, "part %d;", i)
			w.(http.Flusher).Flush()
			time.Sleep(80 * time.Millisecond)
		}
	})
	resp, err := e.client().Get(e.upstream.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(body), "part 11;") {
		t.Fatalf("the stream was cut: %q %v", body, err)
	}
	if r := e.sink.waitFor(t, 1)[0]; r.Error != "" {
		t.Fatalf("record error %q", r.Error)
	}
}

// A provider that stalls mid-body is cut at the upstream read deadline: the
// client gets what came, the record says the body broke off.
func TestHostileStalledProviderIsCut(t *testing.T) {
	e := startHostile(t, false, Options{Upstream: UpstreamOptions{ReadTimeout: 300 * time.Millisecond}}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "0123456789")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // stall until the sidecar gives up
	})
	start := time.Now()
	resp, err := e.client().Get(e.upstream.URL + "/v1/bank/accounts")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the stalled provider held the exchange for %v", took)
	}
	r := e.sink.waitFor(t, 1)[0]
	if !strings.Contains(r.Error, "ended early") {
		t.Fatalf("record error %q", r.Error)
	}
	e.waitMetric(t, "mdtap_proxy_limit_total", "upstream_read_timeout", 1)
}

// A client that stops reading a large response is cut at the write
// deadline instead of holding the exchange forever.
func TestHostileClientThatStopsReadingIsCut(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 32<<20)
	e := startHostile(t, true, Options{Limits: Limits{ClientWriteTimeout: 300 * time.Millisecond}}, func(w http.ResponseWriter, r *http.Request) {
		w.Write(big)
	})
	c := e.dial(t)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	e.waitMetric(t, "mdtap_proxy_limit_total", "client_write_timeout", 1)
	r := e.sink.waitFor(t, 1)[0]
	if r.Error == "" {
		t.Fatal("the record of the cut exchange has no error")
	}
}

// Past --max-conns a new connection gets 503 and is closed at once.
func TestHostileConnectionLimit(t *testing.T) {
	e := startHostile(t, true, Options{Limits: Limits{MaxConns: 2}}, nil)
	held := []net.Conn{e.dial(t), e.dial(t)}
	for _, c := range held {
		if status, _ := exchange(t, c, "GET /v1/x HTTP/1.1\r\nHost: x\r\n\r\n"); status != 200 {
			t.Fatalf("status %d within the limit", status)
		}
	}
	e.waitMetric(t, "mdtap_proxy_client_connections", "", 2)
	status, body := exchange(t, e.dial(t), "GET /v1/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "too many connections") {
		t.Fatalf("past the limit: %d %q, want 503", status, body)
	}
	if e.metric(t, "mdtap_proxy_limit_total", "connections") != 1 {
		t.Fatal("the connection limit hit was not counted")
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if status, _ := exchange(t, e.dial(t), "GET /v1/x HTTP/1.1\r\nHost: x\r\n\r\n"); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Targets: hosts outside the allowlist, IP literals and the sidecar's own
// listeners are refused at CONNECT; an allowed name that resolves to
// loopback is refused at dial time (403 and a record); an address named
// in the allowlist opts in.
func TestHostileTargets(t *testing.T) {
	e := startHostile(t, false, Options{Own: []string{"127.0.0.1:9"}}, nil)
	upHost := hostOf(e.upstream.URL)
	connect := func(target string) int {
		c := e.dial(t)
		status, body := exchange(t, c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		e.noLeak(t, "the refusal", body)
		return status
	}
	for _, tc := range []struct {
		target string
		reason string
	}{
		{"provider.example:443", "host_not_allowed"},
		{"127.0.0.2:" + portOf(upHost), "host_not_allowed"},
		{"169.254.169.254:80", "host_not_allowed"},
		{"[::1]:443", "host_not_allowed"},
	} {
		if got := connect(tc.target); got != http.StatusForbidden {
			t.Errorf("CONNECT %s: %d, want 403", tc.target, got)
		}
	}
	if e.metric(t, "mdtap_proxy_refused_total", "host_not_allowed") != 4 {
		t.Errorf("host_not_allowed refusals: %v, want 4", e.metric(t, "mdtap_proxy_refused_total", "host_not_allowed"))
	}

	// The allowlist names 127.0.0.1 (any port) and *.0.0.1, which matches
	// an IP literal by suffix only: not an opt-in.
	o := Options{Allow: []string{"127.0.0.1", "*.0.0.1", "rebound.example"}, Own: []string{"127.0.0.1:9"}}
	e2 := startHostile(t, false, o, nil)
	for _, tc := range []struct {
		target, reason string
	}{
		{"127.0.0.1:9", "own_address"},
		{"10.0.0.1:443", "address_not_allowed"},
	} {
		c := e2.dial(t)
		status, _ := exchange(t, c, "CONNECT "+tc.target+" HTTP/1.1\r\nHost: "+tc.target+"\r\n\r\n")
		if status != http.StatusForbidden || e2.metric(t, "mdtap_proxy_refused_total", tc.reason) != 1 {
			t.Errorf("CONNECT %s: %d, want 403 counted as %s", tc.target, status, tc.reason)
		}
	}

	// DNS rebinding: an allow-listed name resolving to loopback is refused
	// when dialed, whatever it resolved to at CONNECT.
	e3 := startHostile(t, false, Options{Allow: []string{"rebound.example"}}, nil)
	e3.srv.target.resolve = func(string) string { return hostOf(e3.upstream.URL) }
	req, _ := http.NewRequest("GET", "https://rebound.example:"+portOf(hostOf(e3.upstream.URL))+"/v1/bank/accounts?token="+secret, nil)
	resp, err := e3.client().Do(req)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("rebound name: %d %q, want 403", resp.StatusCode, body)
		}
		e3.noLeak(t, "the refusal", string(body))
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatal(err)
	}
	if e3.hits.Load() != 0 {
		t.Fatal("the rebound name reached the loopback provider")
	}
	r := e3.sink.waitFor(t, 1)[0]
	if !strings.Contains(r.Error, "loopback") {
		t.Fatalf("record error %q, want the forbidden address", r.Error)
	}
	if e3.metric(t, "mdtap_proxy_refused_total", "forbidden_address") != 1 {
		t.Fatal("dial-time refusal not counted")
	}
	// Allow-listing the loopback address itself opts that name in.
	e4 := startHostile(t, false, Options{Allow: []string{"rebound.example", "127.0.0.1"}}, nil)
	e4.srv.target.resolve = func(string) string { return hostOf(e4.upstream.URL) }
	if got := e4.srv.target.checkDial("rebound.example:443", mustAddrPort(t, hostOf(e4.upstream.URL))); got != nil {
		t.Fatalf("allow-listed loopback: %v", got)
	}
}

// checkDial on every class of address.
func TestHostileDialAddressClasses(t *testing.T) {
	allow, _ := ParseAllowlist([]string{"*.bank.example", "localhost:8443", "[::1]"})
	p := newTargetPolicy(allow, "", []string{"127.0.0.1:9090", ":9091"})
	for _, tc := range []struct {
		dial, addr string
		want       error
	}{
		{"api.bank.example:443", "203.0.113.7:443", nil},
		{"api.bank.example:443", "10.1.2.3:443", nil},
		{"api.bank.example:443", "127.0.0.1:443", errForbiddenAddress},
		{"api.bank.example:443", "[::1]:443", nil}, // ::1 is allow-listed itself
		{"api.bank.example:443", "169.254.169.254:443", errForbiddenAddress},
		{"api.bank.example:443", "[fe80::1]:443", errForbiddenAddress},
		{"api.bank.example:443", "0.0.0.0:443", errForbiddenAddress},
		{"api.bank.example:443", "224.0.0.1:443", errForbiddenAddress},
		{"localhost:8443", "127.0.0.1:8443", nil},
		{"localhost:8443", "127.0.0.1:9090", errOwnAddress},
		{"api.bank.example:9091", "127.0.0.1:9091", errOwnAddress},
	} {
		if got := p.checkDial(tc.dial, mustAddrPort(t, tc.addr)); got != tc.want {
			t.Errorf("checkDial(%s → %s) = %v, want %v", tc.dial, tc.addr, got, tc.want)
		}
	}
}

// Redirects reach the client as sent; the sidecar never follows them.
func TestHostileRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int64
	e := startHostile(t, false, Options{}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Add(1)
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	hc := e.client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(e.upstream.URL + "/oauth/2.0/authorize")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/elsewhere" || followed.Load() != 0 {
		t.Fatalf("status %d location %q followed %d", resp.StatusCode, resp.Header.Get("Location"), followed.Load())
	}
	if r := e.sink.waitFor(t, 1)[0]; r.Response == nil || r.Response.Status != http.StatusFound {
		t.Fatal("no record of the redirect")
	}
}

// Protocols the sidecar does not capture are refused with a clear status and
// counted, never passed through: HTTP/2 prior knowledge (outer connection
// and inside a tunnel), a tunnel that does not carry TLS, WebSocket
// upgrades (tunnel and reverse mode); a client offering h2 by ALPN gets
// HTTP/1.1.
func TestHostileProtocolsNotCaptured(t *testing.T) {
	e := startHostile(t, false, Options{}, nil)
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if status, _ := exchange(t, e.dial(t), preface); status != http.StatusHTTPVersionNotSupported {
		t.Fatalf("h2 prior knowledge: %d, want 505", status)
	}
	if status, _ := exchange(t, e.tunnel(t), preface); status != http.StatusHTTPVersionNotSupported {
		t.Fatalf("h2 prior knowledge in a tunnel: %d, want 505", status)
	}
	if e.metric(t, "mdtap_proxy_refused_total", "h2_prior_knowledge") != 2 {
		t.Fatal("h2 prior knowledge not counted")
	}

	c := e.dial(t)
	target := hostOf(e.upstream.URL)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest || e.metric(t, "mdtap_proxy_refused_total", "tunnel_not_tls") != 1 {
		t.Fatalf("plain HTTP in a tunnel: %v %v, want 400 counted", resp, err)
	}

	tc := e.tunnel(t, "h2", "http/1.1")
	if got := tc.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Fatalf("ALPN negotiated %q, want http/1.1", got)
	}
	ws := "GET /v1/stream HTTP/1.1\r\nHost: " + target + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if status, body := exchange(t, tc, ws); status != http.StatusNotImplemented || !strings.Contains(body, "not captured") {
		t.Fatalf("WebSocket in a tunnel: %d %q, want 501", status, body)
	}
	r := startHostile(t, true, Options{}, nil)
	if status, _ := exchange(t, r.dial(t), ws); status != http.StatusNotImplemented {
		t.Fatalf("WebSocket in reverse mode: %d, want 501", status)
	}
	if e.metric(t, "mdtap_proxy_refused_total", "websocket") != 1 || r.metric(t, "mdtap_proxy_refused_total", "websocket") != 1 {
		t.Fatal("WebSocket refusals not counted")
	}
	if e.hits.Load()+r.hits.Load() != 0 {
		t.Fatal("a refused protocol reached the provider")
	}
}

// The MITM CA key: refused when others can read it, reported when its group
// can (callers warn), and its bytes never appear in an error.
func TestHostileCAKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, false); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	key, _ := os.ReadFile(keyPath)
	for _, tc := range []struct {
		mode      os.FileMode
		group, ok bool
	}{{0o600, false, true}, {0o640, true, true}, {0o644, false, false}} {
		os.Chmod(keyPath, tc.mode)
		_, group, err := LoadCA(dir)
		if (err == nil) != tc.ok || group != tc.group {
			t.Errorf("mode %o: group %v err %v", tc.mode, group, err)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(string(key[30:60]))) {
			t.Fatal("the error quotes the key")
		}
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// The guard passes legitimate traffic unchanged: pipelined requests with a
// chunked body (extensions, trailers), a Content-Length body and none, on
// every path, reach the provider with their bodies intact.
func TestGuardPassesPipelinedRequests(t *testing.T) {
	for _, p := range hostilePaths {
		t.Run(p.name, func(t *testing.T) {
			var mu sync.Mutex
			var bodies []string
			e, conn := p.start(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, string(b)+"|"+r.Trailer.Get("X-Sum"))
				mu.Unlock()
				io.WriteString(w, "ok")
			})
			c, target := conn(t)
			host := hostOf(e.upstream.URL)
			io.WriteString(c, "\r\nPOST "+target+" HTTP/1.1\r\nHost: "+host+"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
				"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"+
				"POST "+target+" HTTP/1.1\r\nHost: "+host+"\r\nContent-Length: 3\r\n\r\nabc"+
				"GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			br := bufio.NewReader(c)
			for i := range 3 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("response %d: %d", i, resp.StatusCode)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"hello world|42", "abc|", "|"}
			if p.name == "plain" {
				want = nil // the plain stand-in does not record bodies
			}
			for i, w := range want {
				if i >= len(bodies) || bodies[i] != w {
					t.Fatalf("the provider received %q, want %q", bodies, want)
				}
			}
		})
	}
}

// A tunnel whose TLS handshake never comes is closed at the TLS deadline.
func TestHostileSilentTunnelIsCut(t *testing.T) {
	e := startHostile(t, false, Options{Limits: Limits{TLSHandshakeTimeout: 300 * time.Millisecond}}, nil)
	c := e.dial(t)
	target := hostOf(e.upstream.URL)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	start := time.Now()
	b, _ := io.ReadAll(c) // the 200, then the close
	if took := time.Since(start); took > 3*time.Second || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("silent tunnel: %q after %v", b, took)
	}
	e.waitMetric(t, "mdtap_proxy_limit_total", "client_tls_timeout", 1)
}
