// Package proxy is mdtap's capture proxy, the only package that imports
// goproxy. Client services use it as their HTTPS proxy (CONNECT to an
// allowed provider host is intercepted with certificates minted from the
// sidecar's CA) or, in reverse mode, as a plain-HTTP base URL. Every exchange
// is forwarded unchanged and teed into a raw record that goes to a Sink once
// the client has its response.
//
// Guarantees: the sidecar is never an open proxy (hosts outside the
// allowlist get 403); upstream TLS is always verified, TLS 1.3 by default;
// what the client receives is what the provider sent (status, headers with
// Content-Length, body bytes, trailers), streamed; a failed upstream call
// answers 502 or 504 and still yields a record; no URL query string, header
// value or payload byte reaches a log line or an error text. Hostile input
// — oversized or ambiguous requests, slow clients, targets that resolve to
// loopback or the sidecar itself, protocols it cannot capture — gets a clear
// status or a closed connection and a count, never a forward (guard.go,
// limits.go, target.go, serve.go).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultMaxCaptureBytes is the default cap on captured bytes per body.
const DefaultMaxCaptureBytes = 256 << 10

// Options configure a Server.
type Options struct {
	// Allow lists the provider hosts that may be reached (see Allowlist).
	Allow []string
	// CA is the MITM certificate authority (LoadCA). Forward mode needs it.
	CA *tls.Certificate
	// Upstream configures TLS, mTLS and pooling towards the providers.
	Upstream UpstreamOptions
	// Reverse, when set, puts the proxy in reverse mode: clients speak plain
	// HTTP to the sidecar, which calls this base URL (https) for them.
	Reverse *url.URL
	// Service names the client service in records.
	Service string
	// MaxCaptureBytes caps captured bytes per body (DefaultMaxCaptureBytes).
	MaxCaptureBytes int
	// MaxDecodedBytes caps a compressed body's decoded size for capture
	// (default 8 × MaxCaptureBytes).
	MaxDecodedBytes int64
	// Admit, when set, is asked before each exchange is forwarded; an error
	// refuses it with 503 before anything is sent upstream (fail-closed: the
	// records could not be made durable). Exchanges already forwarded
	// complete normally.
	Admit func() error
	// Limits bound what one client can make the sidecar hold (zero fields:
	// the defaults).
	Limits Limits
	// Own lists the sidecar's own listen addresses (proxy, admin): never a
	// target, whatever the allowlist says.
	Own        []string
	Logger     zerolog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server is the capture proxy. Serve its Handler with net/http.
type Server struct {
	allow     *Allowlist
	target    *targetPolicy
	limits    Limits
	certs     *certCache
	mint      func(host string) (*tls.Config, error)
	outer     *http.Server
	inner     *http.Server
	innerLn   *chanListener
	transport *captureTransport
	upstream  *http.Transport
	completer *Completer
	reverse   *url.URL
	log       zerolog.Logger
	metrics   *metrics
	draining  atomic.Bool
	admit     func() error
}

// New builds the proxy. Records of finished exchanges go to sink.
func New(o Options, sink Sink) (*Server, error) {
	if sink == nil {
		return nil, errors.New("proxy: a sink is required")
	}
	if o.MaxCaptureBytes <= 0 {
		o.MaxCaptureBytes = DefaultMaxCaptureBytes
	}
	if o.MaxDecodedBytes <= 0 {
		o.MaxDecodedBytes = 8 * int64(o.MaxCaptureBytes)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	allow, err := ParseAllowlist(o.Allow)
	if err != nil {
		return nil, err
	}
	if o.Reverse != nil {
		if o.Reverse.Scheme != "https" && o.Reverse.Scheme != "http" || o.Reverse.Host == "" {
			return nil, fmt.Errorf("upstream %q: want https://host[:port][/base]", o.Reverse.Redacted())
		}
		allow.exact[strings.ToLower(o.Reverse.Hostname())] = true
	} else {
		if o.CA == nil {
			return nil, errors.New("proxy: forward mode needs the MITM CA (mdtap ca init)")
		}
		if allow.Empty() {
			return nil, errors.New("proxy: no --allow-host given: the sidecar forwards only to listed provider hosts")
		}
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	reverseHost := ""
	if o.Reverse != nil {
		reverseHost = o.Reverse.Host
	}
	target := newTargetPolicy(allow, reverseHost, o.Own)
	up, err := newUpstreamTransport(o.Upstream, target)
	if err != nil {
		return nil, err
	}
	s := &Server{
		allow: allow, target: target, limits: o.Limits.withDefaults(),
		upstream: up, reverse: o.Reverse, log: o.Logger, metrics: m, admit: o.Admit,
		transport: &captureTransport{upstream: up, sink: sink, maxCapture: o.MaxCaptureBytes, service: o.Service,
			now: o.Now, hosts: o.Upstream.Hosts, metrics: m},
		completer: &Completer{hosts: lowerKeys(o.Upstream.Hosts), maxDecoded: o.MaxDecodedBytes, metrics: m},
	}
	if o.Reverse == nil {
		s.certs = newCertCache()
		s.mint = minter(o.CA, o.Logger)
	}
	s.newHTTPServers()
	return s, nil
}

// minter signs MITM certificates with goproxy's signer.
func minter(ca *tls.Certificate, log zerolog.Logger) func(host string) (*tls.Config, error) {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = goproxyLogger{log}
	sign := goproxy.TLSConfigFromCA(ca)
	return func(host string) (*tls.Config, error) {
		return sign(host, &goproxy.ProxyCtx{Proxy: gp})
	}
}

func lowerKeys(m map[string]HostConfig) map[string]HostConfig {
	out := make(map[string]HostConfig, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// Handler serves proxy traffic without the connection guard and limits:
// for embedding only. Serve is the hardened path.
func (s *Server) Handler() http.Handler { return s.outer.Handler }

// Completer returns the stage that finishes this proxy's raw records on the
// capture queue.
func (s *Server) Completer() *Completer { return s.completer }

// CloseIdleConnections closes pooled upstream connections (at shutdown).
func (s *Server) CloseIdleConnections() { s.upstream.CloseIdleConnections() }

// Drain makes the proxy refuse new exchanges (503, Connection: close) while
// the ones under way finish; see WaitIdle. It is the first step of shutdown:
// tunnels that stay open after the listener closes must not start new
// exchanges either.
func (s *Server) Drain() { s.draining.Store(true) }

// InFlight reports exchanges under way (their records not yet handed on).
func (s *Server) InFlight() int64 { return s.transport.inflight.Load() }

// WaitIdle returns once no exchange is under way, or when ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.transport.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d exchanges: %w", s.transport.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// admitted runs the fail-closed gate.
func (s *Server) admitted() error {
	if s.admit == nil {
		return nil
	}
	err := s.admit()
	if err != nil {
		s.metrics.refuse("not_durable")
	}
	return err
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// goproxyLogger routes goproxy's warnings to debug logs. goproxy formats
// URLs and errors into them; anything from a "?" on is cut, since MyData
// refresh and revoke calls carry secrets in the query string.
type goproxyLogger struct{ l zerolog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if i := strings.IndexByte(msg, '?'); i >= 0 {
		msg = msg[:i] + "…"
	}
	g.l.Debug().Str("component", "goproxy").Msg(strings.TrimSpace(msg))
}
