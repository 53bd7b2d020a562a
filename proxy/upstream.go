package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Defaults of the upstream transport.
const (
	DefaultMaxIdleConnsPerHost   = 256
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultUpstreamReadTimeout   = 60 * time.Second
	DefaultUpstreamWriteTimeout  = 60 * time.Second
)

// ClientCert names an upstream mTLS client certificate and key (PEM files).
// The files are re-read when they change, so a rotated certificate is used
// without a restart.
type ClientCert struct {
	CertFile string
	KeyFile  string
}

// HostConfig is what the sidecar knows of one provider host.
type HostConfig struct {
	// OrgCode is the provider's org code, for records whose request names none.
	OrgCode string `yaml:"org_code"`
	// ClientCert overrides the default upstream client certificate.
	CertFile string `yaml:"client_cert"`
	KeyFile  string `yaml:"client_key"`
}

// UpstreamOptions configure the transport to the providers.
type UpstreamOptions struct {
	// RootCAs adds trusted roots (PEM file) to the system pool.
	RootCAFile string
	// MinTLS is the minimum TLS version; the MyData standard requires 1.3.
	MinTLS uint16
	// ClientCert is the default mTLS client certificate (optional).
	ClientCert ClientCert
	// Hosts holds per-host settings, keyed by host (no port).
	Hosts map[string]HostConfig
	// MaxIdleConnsPerHost bounds pooled connections per provider; goproxy's
	// default transport keeps 2, which costs a TLS handshake on every other
	// request under concurrency (PERFORMANCE.md).
	MaxIdleConnsPerHost   int
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	// ReadTimeout and WriteTimeout are progress deadlines per read and per
	// write on a provider connection (DefaultUpstreamReadTimeout,
	// DefaultUpstreamWriteTimeout): a provider that stalls mid-body is cut,
	// one that streams slowly is not. An idle pooled connection is closed
	// after ReadTimeout too. Negative: off.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
}

// newUpstreamTransport builds the pooled transport to the providers:
// verification always on, TLS 1.3 by default, mTLS per host, no proxy from
// the environment (the sidecar is the proxy), no compression of its own
// (the client's Accept-Encoding passes through and its response stays as the
// provider sent it).
func newUpstreamTransport(o UpstreamOptions, target *targetPolicy) (*http.Transport, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if o.RootCAFile != "" {
		pem, err := os.ReadFile(o.RootCAFile)
		if err != nil {
			return nil, fmt.Errorf("read upstream CA: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA %s: no PEM certificate", o.RootCAFile)
		}
	}
	if o.MinTLS == 0 {
		o.MinTLS = tls.VersionTLS13
	}
	certs := &certSource{def: o.ClientCert, hosts: o.Hosts, cache: map[ClientCert]*cachedCert{}}
	if err := certs.check(); err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: orDefault(o.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
	dial := target.dialContext(d)
	rt, wt := orDefault(o.ReadTimeout, DefaultUpstreamReadTimeout), orDefault(o.WriteTimeout, DefaultUpstreamWriteTimeout)
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &progressConn{Conn: c, read: rt, write: wt}, nil
	}
	perHost := o.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	base := &tls.Config{RootCAs: roots, MinVersion: o.MinTLS, NextProtos: []string{"http/1.1"}}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer,
		DialTLSContext:        certs.dialTLS(dialer, base, DefaultTLSHandshakeTimeout),
		MaxIdleConns:          perHost * 8,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       DefaultIdleConnTimeout,
		ResponseHeaderTimeout: orDefault(o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	return tr, nil
}

// dialTLS dials a provider and runs the TLS handshake with that host's client
// certificate (per-host, else the default), re-read when its files change.
func (s *certSource) dialTLS(dial func(ctx context.Context, network, addr string) (net.Conn, error), base *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg := base.Clone()
		cfg.ServerName = host
		if p := s.forHost(host); p.CertFile != "" {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return s.load(p)
			}
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return conn, nil
	}
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d > 0:
		return d
	case d < 0:
		return 0
	}
	return def
}

// progressConn gives every read and write on a provider connection its own
// deadline: progress, not total time, is bounded.
type progressConn struct {
	net.Conn
	read, write time.Duration
}

func (c *progressConn) Read(p []byte) (int, error) {
	if c.read > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.read))
	}
	return c.Conn.Read(p)
}

func (c *progressConn) Write(p []byte) (int, error) {
	if c.write > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.write))
	}
	return c.Conn.Write(p)
}

// certSource hands out client certificates, reloading a file pair when its
// modification time changes.
type certSource struct {
	def   ClientCert
	hosts map[string]HostConfig
	mu    sync.Mutex
	cache map[ClientCert]*cachedCert
}

type cachedCert struct {
	cert   *tls.Certificate
	stamps [2]time.Time
}

func (s *certSource) forHost(host string) ClientCert {
	if h, ok := s.hosts[strings.ToLower(host)]; ok && h.CertFile != "" {
		return ClientCert{CertFile: h.CertFile, KeyFile: h.KeyFile}
	}
	return s.def
}

// check loads every configured certificate once, so a bad file fails at start.
func (s *certSource) check() error {
	pairs := []ClientCert{s.def}
	for host, h := range s.hosts {
		if (h.CertFile == "") != (h.KeyFile == "") {
			return fmt.Errorf("host %s: client_cert and client_key go together", host)
		}
		pairs = append(pairs, ClientCert{h.CertFile, h.KeyFile})
	}
	for _, p := range pairs {
		if p.CertFile == "" && p.KeyFile == "" {
			continue
		}
		if p.CertFile == "" || p.KeyFile == "" {
			return errors.New("--client-cert and --client-key go together")
		}
		if _, err := s.load(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *certSource) load(p ClientCert) (*tls.Certificate, error) {
	var stamps [2]time.Time
	for i, f := range []string{p.CertFile, p.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		stamps[i] = fi.ModTime()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[p]; ok && c.stamps == stamps {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		// Never quote the key file's content; name the files only.
		return nil, fmt.Errorf("client certificate %s / %s: cannot load the pair", p.CertFile, p.KeyFile)
	}
	s.cache[p] = &cachedCert{cert: &cert, stamps: stamps}
	return &cert, nil
}
