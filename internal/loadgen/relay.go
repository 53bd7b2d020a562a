package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// RelayOptions configure the bare relay.
type RelayOptions struct {
	// CA mints the MITM certificates (proxy.LoadCA).
	CA *tls.Certificate
	// Allow is the one host (host or host:port) whose CONNECTs are
	// intercepted; any other gets 403.
	Allow string
	// Roots verify the upstream's certificate.
	Roots *x509.CertPool
	// MaxIdleConnsPerHost sizes the upstream pool (default 256, as mdtap's).
	MaxIdleConnsPerHost int
	// Logger receives goproxy's warnings (default: discarded).
	Logger *log.Logger
}

// NewRelay returns a goproxy MITM relay that does nothing but relay: no
// handlers besides the CONNECT allowlist, no capture. It is the baseline
// mdtap's capture is measured against, so its upstream transport is what
// mdtap's is (pooled, TLS 1.3, verified, no compression, no proxy from the
// environment) — goproxy's default transport keeps 2 idle connections per
// host and would make the baseline pay a TLS handshake on every other
// request. The returned transport is the upstream pool, for closing.
func NewRelay(o RelayOptions) (http.Handler, *http.Transport, error) {
	if o.CA == nil || o.Allow == "" || o.Roots == nil {
		return nil, nil, errors.New("relay: a CA, an allowed host and upstream roots are required")
	}
	perHost := o.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = 256
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.Roots, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          perHost * 8,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = tr
	gp.KeepAcceptEncoding = true
	gp.CertStore = &certStore{m: map[string]*tls.Certificate{}}
	gp.Logger = o.Logger
	if gp.Logger == nil {
		gp.Logger = log.New(discard{}, "", 0)
	}
	allow := strings.ToLower(o.Allow)
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(o.CA)}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		h := strings.ToLower(host)
		if h == allow || hostOnly(h) == allow {
			return mitm, host
		}
		ctx.Resp = goproxy.NewResponse(ctx.Req, goproxy.ContentTypeText, http.StatusForbidden, "relay: host not allowed\n")
		return goproxy.RejectConnect, host
	})
	return gp, tr, nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// certStore caches the minted certificate per host, as mdtap's does, so a
// new tunnel does not pay for signing.
type certStore struct {
	mu sync.Mutex
	m  map[string]*tls.Certificate
}

func (c *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.m[host]; ok {
		return cert, nil
	}
	cert, err := gen()
	if err != nil {
		return nil, err
	}
	c.m[host] = cert
	return cert, nil
}
