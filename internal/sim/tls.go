package sim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultHosts are the names the server certificate carries when none are
// given.
var DefaultHosts = []string{"127.0.0.1", "localhost"}

// certValidity is long enough for any test or demo run, short enough that
// a leaked test CA does not matter for long.
const certValidity = 365 * 24 * time.Hour

// CA is a throwaway certificate authority, ECDSA P-256, for the simulator's
// server certificate and for mTLS client certificates in tests.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// NewCA generates a self-signed CA named commonName.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"mdtap simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM returns the CA certificate in PEM, for clients to trust.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.pem...) }

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerCert issues a server certificate for hosts: IP literals become IP
// SANs, everything else DNS SANs. The chain includes the CA certificate.
func (ca *CA) ServerCert(hosts []string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// ClientCert issues a client certificate named commonName, for mTLS tests.
func (ca *CA) ClientCert(commonName string) (tls.Certificate, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate leaf key: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse leaf certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // never fails with crypto/rand
	return n
}

// NewTLSConfig generates a fresh CA and a server certificate for hosts
// (DefaultHosts when empty) and returns a server config with TLS 1.3 as the
// minimum (SPEC §1.1) together with the CA certificate in PEM for clients
// to trust. A non-nil clientCAs makes the server require and verify client
// certificates against it (mTLS). The config offers only HTTP/1.1, so the
// reset fault can hijack the connection.
func NewTLSConfig(hosts []string, clientCAs *x509.CertPool) (*tls.Config, []byte, error) {
	ca, err := NewCA("mdtap simulator CA")
	if err != nil {
		return nil, nil, err
	}
	leaf, err := ca.ServerCert(hosts)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf},
		NextProtos:   []string{"http/1.1"},
	}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, ca.CertPEM(), nil
}

// Server is a running simulator listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	url  string
	done chan struct{}

	mu  sync.Mutex
	err error // from Serve, other than a normal close
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves s in
// the background: over TLS with tlsCfg, or plain HTTP when tlsCfg is nil.
// Stop it with Close or Shutdown.
func Start(addr string, s *Simulator, tlsCfg *tls.Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		cfg := tlsCfg.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"http/1.1"}
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	sv := &Server{
		ln:   ln,
		url:  scheme + "://" + dialable(ln.Addr()),
		done: make(chan struct{}),
		srv: &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			// net/http's own messages (TLS handshake failures and the like)
			// carry addresses, not payloads; keep them at debug.
			ErrorLog: log.New(debugWriter{s.log}, "", 0),
		},
	}
	go func() {
		defer close(sv.done)
		if err := sv.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sv.mu.Lock()
			sv.err = fmt.Errorf("serve: %w", err)
			sv.mu.Unlock()
		}
	}()
	return sv, nil
}

// debugWriter turns net/http's log lines into zerolog debug events.
type debugWriter struct{ l zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.l.Debug().Str("component", "sim-http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// dialable turns a wildcard listen address into one a client can dial.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// URL is the base URL, e.g. https://127.0.0.1:43127.
func (sv *Server) URL() string { return sv.url }

// Addr is the listening address.
func (sv *Server) Addr() net.Addr { return sv.ln.Addr() }

// Shutdown stops accepting, waits for in-flight requests until ctx ends,
// and returns the first serving error.
func (sv *Server) Shutdown(ctx context.Context) error {
	err := sv.srv.Shutdown(ctx)
	<-sv.done
	return errors.Join(err, sv.serveErr())
}

// Close stops the server at once, cutting in-flight requests.
func (sv *Server) Close() error {
	err := sv.srv.Close()
	<-sv.done
	return errors.Join(err, sv.serveErr())
}

func (sv *Server) serveErr() error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.err
}
