package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNewTLSConfig(t *testing.T) {
	cfg, caPEM, err := NewTLSConfig([]string{"127.0.0.1", "localhost", "mydata.test", "::1"}, nil)
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion: got %x, want TLS 1.3", cfg.MinVersion)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("ClientAuth: got %v without client CAs, want none", cfg.ClientAuth)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatal("CA PEM: no CERTIFICATE block")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("CA: parse %v, IsCA %v", err, ca != nil && ca.IsCA)
	}
	leaf := cfg.Certificates[0].Leaf
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs: got %v", leaf.IPAddresses)
	}
	if strings.Join(leaf.DNSNames, ",") != "localhost,mydata.test" {
		t.Errorf("DNS SANs: got %v", leaf.DNSNames)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"127.0.0.1", "localhost", "mydata.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify leaf for %s: %v", name, err)
		}
	}
	def, _, err := NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatalf("NewTLSConfig(nil): %v", err)
	}
	if l := def.Certificates[0].Leaf; len(l.IPAddresses) != 1 || len(l.DNSNames) != 1 || l.DNSNames[0] != "localhost" {
		t.Errorf("default SANs: got %v %v, want 127.0.0.1 and localhost", l.IPAddresses, l.DNSNames)
	}
}

// startServer runs the simulator with Start on a free 127.0.0.1 port.
func startServer(t *testing.T, s *Simulator, cfg *tls.Config) *Server {
	t.Helper()
	sv, err := Start("127.0.0.1:0", s, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sv
}

func get(t *testing.T, c *http.Client, u, tok string, hdr map[string]string) (*http.Response, error) {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	r.Header.Set("x-api-tran-id", tranID())
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := c.Do(r)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestMutualTLS(t *testing.T) {
	s := New(testOptions(t))
	clientCA, err := NewCA("operator CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	cfg, caPEM, err := NewTLSConfig(nil, clientCA.Pool())
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	sv := startServer(t, s, cfg)
	if !strings.HasPrefix(sv.URL(), "https://127.0.0.1:") || sv.Addr() == nil {
		t.Fatalf("URL: got %q", sv.URL())
	}
	tok := s.IssueToken(0, "")

	if _, err := get(t, clientFor(t, caPEM, nil), sv.URL()+accountsPath, tok, nil); err == nil {
		t.Fatal("no client certificate: request succeeded, want a handshake failure")
	}
	stranger, _ := NewCA("stranger")
	strangerCert, _ := stranger.ClientCert("intruder")
	if _, err := get(t, clientFor(t, caPEM, &strangerCert), sv.URL()+accountsPath, tok, nil); err == nil {
		t.Fatal("certificate from another CA: request succeeded")
	}
	cert, err := clientCA.ClientCert("TESTMD0001")
	if err != nil {
		t.Fatalf("ClientCert: %v", err)
	}
	resp, err := get(t, clientFor(t, caPEM, &cert), sv.URL()+accountsPath, tok, nil)
	if err != nil {
		t.Fatalf("with client certificate: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("with client certificate: got HTTP %d TLS %+v, want 200 over TLS 1.3", resp.StatusCode, resp.TLS)
	}
}

func TestStartRejectsTLS12(t *testing.T) {
	s := New(testOptions(t))
	cfg, caPEM, err := NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	sv := startServer(t, s, cfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}}}
	if _, err := get(t, old, sv.URL()+accountsPath, "", nil); err == nil {
		t.Fatal("TLS 1.2 client: request succeeded, want a handshake failure")
	}
}

// TestResetOverRealTLS checks the hijack path: the client sees the
// connection die, not a response, and the server keeps serving.
func TestResetOverRealTLS(t *testing.T) {
	s := New(testOptions(t))
	cfg, caPEM, err := NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	sv := startServer(t, s, cfg)
	c := clientFor(t, caPEM, nil)
	tok := s.IssueToken(0, "")
	for i := 0; i < 3; i++ {
		if resp, err := get(t, c, sv.URL()+accountsPath, tok, map[string]string{FaultHeader: "reset"}); err == nil {
			t.Fatalf("reset #%d: got HTTP %d, want a connection error", i, resp.StatusCode)
		}
		resp, err := get(t, c, sv.URL()+accountsPath, tok, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("after reset #%d: %v", i, err)
		}
	}
}

func TestStartPlainAndShutdown(t *testing.T) {
	s := New(testOptions(t))
	sv, err := Start("127.0.0.1:0", s, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !strings.HasPrefix(sv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL: got %q", sv.URL())
	}
	resp, err := get(t, http.DefaultClient, sv.URL()+"/mgmts/orgs", s.IssueToken(0, "manage"), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mgmts/orgs: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := get(t, http.DefaultClient, sv.URL()+"/mgmts/orgs", "", nil); err == nil {
		t.Fatal("request after Shutdown succeeded")
	}
	if _, err := Start("256.0.0.1:0", s, nil); err == nil {
		t.Fatal("Start on a bad address: no error")
	}
}

// TestOrgsDomain: /mgmts/orgs reports the address the client used, so a
// client that follows domain reaches the simulator.
func TestOrgsDomain(t *testing.T) {
	e := newEnv(t, testOptions(t))
	r := e.do(t, req{path: "/mgmts/orgs", token: e.sim.IssueToken(0, "manage")})
	wantCode(t, "mgmts orgs", r, http.StatusOK, codeOK)
	orgs := list(t, r.body, "org_list")
	if len(orgs) != len(e.sim.Orgs()) {
		t.Fatalf("org_list: got %d, want %d", len(orgs), len(e.sim.Orgs()))
	}
	u, _ := url.Parse(e.srv.URL)
	for _, o := range orgs {
		if o["domain"] != "https://"+u.Host {
			t.Errorf("domain: got %v, want https://%s", o["domain"], u.Host)
		}
	}
}
