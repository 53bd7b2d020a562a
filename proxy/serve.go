package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Serving model. The sidecar serves clients with two net/http servers behind
// the same request guard (guardConn) and the same limits:
//
//	client ──TCP──▶ guardListener ─▶ outer server: CONNECT, plain proxy requests, reverse mode
//	                                   │ CONNECT to an allowed host: hijack, 200, TLS handshake
//	                                   ▼ (certificates minted from the MITM CA, ALPN http/1.1 only)
//	                 guardConn(tls) ─▶ inner server: the requests inside the tunnel
//
// goproxy's own MITM loop reads tunnel requests with http.ReadRequest and
// no limit on header bytes, no timeouts and no smuggling checks; serving the
// tunnel with net/http behind the guard gives it the same limits as the
// outer connection. goproxy still mints the certificates.

type guardKey struct{}

// guardOf returns the guard of the connection r arrived on.
func guardOf(r *http.Request) *guardConn {
	g, _ := r.Context().Value(guardKey{}).(*guardConn)
	return g
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(*guardConn); ok {
		return context.WithValue(ctx, guardKey{}, g)
	}
	return ctx
}

// Serve accepts client connections on ln until Shutdown or Close. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	gl := &guardListener{Listener: ln, lim: &s.limits, m: s.metrics, tunnel: s.reverse == nil}
	return s.outer.Serve(gl)
}

// Shutdown stops accepting, refuses new exchanges (also inside open
// tunnels) and waits, until ctx ends, for the outer connections to go idle.
// Exchanges under way inside tunnels are waited for with WaitIdle.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	if s.inner != nil {
		s.inner.SetKeepAlivesEnabled(false) // closes idle tunnels; busy ones close after their response
	}
	return s.outer.Shutdown(ctx)
}

// Close closes every client connection, tunnels included.
func (s *Server) Close() error {
	err := s.outer.Close()
	if s.inner != nil {
		s.inner.Close()
		s.innerLn.Close()
	}
	return err
}

func (s *Server) newHTTPServers() {
	lim := s.limits
	// The guard enforces the head limits first and answers them with a
	// status and a metric; net/http's own limit stays as a backstop.
	maxHeader := lim.MaxHeaderBytes + lim.MaxRequestLine + 4096
	s.outer = &http.Server{
		Handler: http.HandlerFunc(s.serveOuter), ReadHeaderTimeout: lim.ClientHeaderTimeout, IdleTimeout: lim.ClientIdleTimeout,
		MaxHeaderBytes: maxHeader, ConnContext: connContext, ErrorLog: httpLog(s.log),
	}
	if s.reverse != nil {
		return // no tunnels in reverse mode
	}
	s.innerLn = newChanListener()
	s.inner = &http.Server{
		Handler: http.HandlerFunc(s.serveTunnel), ReadHeaderTimeout: lim.ClientHeaderTimeout, IdleTimeout: lim.ClientIdleTimeout,
		MaxHeaderBytes: maxHeader, ConnContext: connContext, ErrorLog: httpLog(s.log),
		// The tunnel's connections are TLS already; no HTTP/2 either way.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go s.inner.Serve(s.innerLn)
}

// serveOuter routes what arrives on a client connection.
func (s *Server) serveOuter(w http.ResponseWriter, r *http.Request) {
	if s.answerRefusal(w, r) {
		return
	}
	if s.reverse != nil {
		if r.Method == http.MethodConnect {
			s.refuse(w, http.StatusMethodNotAllowed, "not_a_proxy_request", "this sidecar runs in reverse mode: call it as the provider's base URL, not as a proxy")
			return
		}
		s.forward(w, r, s.reverse.Scheme, s.reverse.Host, s.reverse.Path, s.reverse.Host)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		s.serveConnect(w, r)
	case r.URL.IsAbs() && r.URL.Host != "":
		if r.URL.Scheme != "http" {
			s.refuse(w, http.StatusBadRequest, "not_a_proxy_request", "only http:// URLs are proxied in plain; use CONNECT (HTTPS_PROXY) for https")
			return
		}
		if reason := s.target.check(r.URL.Host, "80"); reason != "" {
			s.refuseTarget(w, r.URL.Host, reason)
			return
		}
		s.forward(w, r, "http", r.URL.Host, "", r.Host)
	default:
		s.refuse(w, http.StatusBadRequest, "not_a_proxy_request", "this is a forward proxy for MyData calls: set HTTPS_PROXY to it, or start it with --upstream for reverse mode")
	}
}

// answerRefusal answers the guard's synthetic request for a refused one.
func (s *Server) answerRefusal(w http.ResponseWriter, r *http.Request) bool {
	g := guardOf(r)
	if g == nil {
		return false
	}
	rf := g.refused(r.URL.Path)
	if rf == nil {
		return false
	}
	// rf.msg is one of the guard's fixed texts: no client byte in it.
	s.log.Info().Int("status", rf.status).Str("cause", rf.msg).Msg("refused a request")
	w.Header().Set("Connection", "close")
	w.Header().Set(errorHeader, "refused")
	http.Error(w, "mdtap: "+rf.msg, rf.status)
	return true
}

// errorHeader marks an answer the sidecar wrote itself, not the provider:
// "refused" (not forwarded: target, protocol, limit, draining), "request"
// (the client's request broke off or was too large mid-way), "upstream"
// (the provider could not be reached or did not answer in time).
const errorHeader = "X-Mdtap-Error"

// refuse answers a request refused before forwarding, counted by reason.
func (s *Server) refuse(w http.ResponseWriter, status int, reason, msg string) {
	s.metrics.refuse(reason)
	w.Header().Set(errorHeader, "refused")
	http.Error(w, "mdtap: "+msg, status)
}

func (s *Server) refuseTarget(w http.ResponseWriter, hostport, reason string) {
	s.metrics.refuse(reason)
	s.log.Info().Str("host", hostOnly(hostport)).Str("reason", reason).Msg("refused a target host")
	w.Header().Set("Connection", "close")
	w.Header().Set(errorHeader, "refused")
	msg := "host " + hostOnly(hostport) + " is not allowed; the sidecar forwards only to the provider hosts given with --allow-host"
	switch reason {
	case "address_not_allowed":
		msg = "host " + hostOnly(hostport) + " is an IP address or localhost; the sidecar calls one only when --allow-host names it"
	case "own_address":
		msg = "host " + hostOnly(hostport) + " is the sidecar's own listener"
	}
	http.Error(w, "mdtap: "+msg, http.StatusForbidden)
}

// serveConnect opens a MITM tunnel to an allowed host.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if portOf(host) == "" {
		host = net.JoinHostPort(host, "443")
	}
	if reason := s.target.check(host, "443"); reason != "" {
		s.refuseTarget(w, host, reason)
		return
	}
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
		s.refuse(w, http.StatusServiceUnavailable, "shutting_down", "the sidecar is shutting down; retry")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		s.refuse(w, http.StatusInternalServerError, "not_a_proxy_request", "cannot open a tunnel on this connection")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil {
		conn.Close()
		return
	}
	go s.mitm(&bufferedConn{Conn: conn, r: rw.Reader}, host)
}

// bufferedConn replays what net/http buffered past the CONNECT head (a
// ClientHello sent without waiting for the 200).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// mitm terminates the client's TLS in the tunnel and hands the connection to
// the inner server.
func (s *Server) mitm(c *bufferedConn, host string) {
	c.SetDeadline(time.Now().Add(s.limits.TLSHandshakeTimeout))
	first, err := c.r.Peek(1)
	if err != nil {
		if isTimeout(err) {
			s.metrics.limit("client_tls_timeout")
		}
		c.Close()
		return
	}
	if first[0] != 0x16 { // not a TLS handshake record
		s.metrics.refuse("tunnel_not_tls")
		const msg = "mdtap: the tunnel must carry TLS (HTTP/2 prior knowledge and plain HTTP are not captured)\n"
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(msg)) + "\r\n\r\n" + msg))
		c.Close()
		return
	}
	cfg, err := s.tlsConfig(hostOnly(host))
	if err != nil {
		s.log.Error().Str("host", hostOnly(host)).Str("cause", err.Error()).Msg("cannot mint a MITM certificate")
		c.Close()
		return
	}
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		if isTimeout(err) {
			s.metrics.limit("client_tls_timeout")
		} else {
			s.metrics.refuse("tls_handshake")
		}
		s.log.Debug().Str("host", hostOnly(host)).Str("cause", err.Error()).Msg("client TLS handshake failed")
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	g := newGuardConn(tc, &s.limits, s.metrics, false, nil)
	g.connect = host
	if !s.innerLn.push(g) {
		g.Close()
	}
}

// tlsConfig returns the MITM TLS config for host: its minted certificate
// (cached), and ALPN http/1.1 only — a client offering h2 gets HTTP/1.1,
// which is what the sidecar captures.
func (s *Server) tlsConfig(host string) (*tls.Config, error) {
	cert, err := s.certs.Fetch(host, func() (*tls.Certificate, error) {
		cfg, err := s.mint(host)
		if err != nil {
			return nil, err
		}
		return &cfg.Certificates[0], nil
	})
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}

// serveTunnel serves one request read inside a MITM tunnel.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request) {
	if s.answerRefusal(w, r) {
		return
	}
	g := guardOf(r)
	if g == nil || g.connect == "" {
		s.refuse(w, http.StatusBadRequest, "not_a_proxy_request", "no tunnel")
		return
	}
	if r.Method == http.MethodConnect {
		w.Header().Set("Connection", "close")
		s.refuse(w, http.StatusMethodNotAllowed, "not_a_proxy_request", "CONNECT inside a tunnel is not supported")
		return
	}
	if !strings.EqualFold(strings.Trim(hostOnly(r.Host), "[]"), strings.Trim(hostOnly(g.connect), "[]")) {
		s.refuse(w, http.StatusForbidden, "host_mismatch", "the request's Host does not match the CONNECT target")
		return
	}
	// The tunnel's target was checked at CONNECT; the Host header names the
	// same host, and the port dialed is the CONNECT's.
	s.forward(w, r, "https", g.connect, "", r.Host)
}

// chanListener hands connections the sidecar accepted itself (the TLS
// terminated tunnels) to the inner server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// forward sends r to scheme://target/base+path and streams the response
// back unchanged. outHost is the Host header the provider receives.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, scheme, target, base, outHost string) {
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
		s.refuse(w, http.StatusServiceUnavailable, "shutting_down", "the sidecar is shutting down; retry")
		return
	}
	if up := r.Header.Get("Upgrade"); up != "" || httpHeaderHasToken(r.Header, "Connection", "upgrade") {
		// WebSocket and h2c would leave HTTP after the 101 and escape
		// capture; they are refused, never passed through silently.
		reason := "upgrade"
		if strings.EqualFold(strings.TrimSpace(up), "websocket") {
			reason = "websocket"
		}
		s.log.Info().Str("reason", reason).Msg("refused a protocol upgrade")
		s.refuse(w, http.StatusNotImplemented, reason, "protocol upgrades (WebSocket, h2c) are not captured and not forwarded")
		return
	}
	if r.ContentLength > s.limits.MaxBodyBytes {
		s.metrics.limit("body_bytes")
		w.Header().Set("Connection", "close")
		http.Error(w, "mdtap: the request body is larger than the sidecar accepts", http.StatusRequestEntityTooLarge)
		return
	}
	if err := s.admitted(); err != nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "mdtap: the exchange was not forwarded: "+err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, s.limits.MaxBodyBytes)
	}
	s.relay(w, r, scheme, target, base, outHost)
}

func httpHeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// httpLog routes net/http's own log lines (a handler's panic, accept
// errors) to zerolog, cut at a "?" like goproxy's: a line may quote a URL.
func httpLog(l zerolog.Logger) *log.Logger {
	return log.New(httpLogWriter{l}, "", 0)
}

type httpLogWriter struct{ l zerolog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if i := strings.IndexByte(msg, '?'); i >= 0 {
		msg = msg[:i] + "…"
	}
	w.l.Warn().Str("component", "net/http").Msg(strings.TrimSpace(msg))
	return len(p), nil
}
