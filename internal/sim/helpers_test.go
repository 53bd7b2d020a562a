package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// testNow fixes the clock, so data and search_timestamp are reproducible.
var testNow = time.Date(2024, 3, 15, 9, 30, 0, 0, kst)

func fixedClock() time.Time { return testNow }

func testOptions(t *testing.T) Options {
	return Options{Seed: 7, Customers: 50, Now: fixedClock, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
}

// env is a simulator behind a real HTTPS httptest server using the
// package's own TLS config.
type env struct {
	sim    *Simulator
	srv    *httptest.Server
	client *http.Client
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	s := New(opts)
	srv, client := serveTLS(t, s)
	return &env{sim: s, srv: srv, client: client}
}

// clientFor trusts caPEM only. Compression is off so that tests see the
// wire encoding, and redirects are not followed so authorize's 302 shows.
func clientFor(t *testing.T, caPEM []byte, cert *tls.Certificate) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("AppendCertsFromPEM: no certificate")
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: tc, DisableCompression: true, ForceAttemptHTTP2: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var tranSeq atomic.Int64

// tranID returns a fresh AN(25) x-api-tran-id: org code + 'M' + 14 digits.
func tranID() string { return fmt.Sprintf("TESTMD0001M%014d", tranSeq.Add(1)) }

type result struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // nil when raw is not a JSON object
}

func (r *result) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

// req describes one request; zero fields are omitted.
type req struct {
	method  string
	path    string // may carry a query
	token   string
	noTran  bool
	tran    string
	header  map[string]string
	json    any        // POST body, marshalled
	form    url.Values // POST form body
	rawBody string
}

func (e *env) do(t *testing.T, q req) *result {
	t.Helper()
	res, err := e.try(q)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	return res
}

func (e *env) try(q req) (*result, error) {
	var body io.Reader
	ctype := ""
	switch {
	case q.json != nil:
		b, err := json.Marshal(q.json)
		if err != nil {
			return nil, err
		}
		body, ctype = bytes.NewReader(b), "application/json; charset=UTF-8"
	case q.form != nil:
		body, ctype = strings.NewReader(q.form.Encode()), "application/x-www-form-urlencoded"
	case q.rawBody != "":
		body, ctype = strings.NewReader(q.rawBody), "application/json"
	}
	if q.method == "" {
		q.method = http.MethodGet
	}
	r, err := http.NewRequest(q.method, e.srv.URL+q.path, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	if !q.noTran {
		if q.tran == "" {
			q.tran = tranID()
		}
		r.Header.Set("x-api-tran-id", q.tran)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	resp, err := e.client.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	res := &result{status: resp.StatusCode, header: resp.Header, raw: raw}
	res.body, _ = decodeObject(raw)
	return res, nil
}

// decodeObject decodes a JSON object keeping numbers as json.Number, so
// tests can tell numbers from strings.
func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return m, nil
}

// wantCode checks HTTP status, rsp_code and the JSON content type.
func wantCode(t *testing.T, what string, r *result, status int, code string) {
	t.Helper()
	if r.status != status || r.str("rsp_code") != code {
		t.Fatalf("%s: got HTTP %d rsp_code %q (%.300s), want HTTP %d rsp_code %q", what, r.status, r.str("rsp_code"), r.raw, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != contentTypeJSON {
		t.Errorf("%s: got Content-Type %q, want %q", what, ct, contentTypeJSON)
	}
}

// list returns body[key] as a slice of objects.
func list(t *testing.T, body map[string]any, key string) []map[string]any {
	t.Helper()
	raw, ok := body[key].([]any)
	if !ok {
		t.Fatalf("%s: got %T, want a JSON array", key, body[key])
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s[%d]: got %T, want an object", key, i, v)
		}
		out[i] = m
	}
	return out
}

// checkPath verifies that a dotted path with [] for arrays exists in v,
// e.g. "org_list[].service_list[].client_secret"; every array on the way
// must be non-empty and every element must have the rest of the path.
func checkPath(v any, path string) error {
	if path == "" {
		return nil
	}
	seg, rest, _ := strings.Cut(path, ".")
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: parent is %T, not an object", seg, v)
	}
	key, isArr := strings.CutSuffix(seg, "[]")
	child, ok := m[key]
	if !ok {
		return fmt.Errorf("%s: missing", key)
	}
	if !isArr {
		return checkPath(child, rest)
	}
	arr, ok := child.([]any)
	if !ok || len(arr) == 0 {
		return fmt.Errorf("%s: got %T (len %d), want a non-empty array", key, child, len(arr))
	}
	for i, el := range arr {
		if err := checkPath(el, rest); err != nil {
			return fmt.Errorf("%s[%d].%w", key, i, err)
		}
	}
	return nil
}

// firstOf returns the string field of the first element of body[listKey].
func firstOf(t *testing.T, r *result, listKey, field string) string {
	t.Helper()
	l := list(t, r.body, listKey)
	if len(l) == 0 {
		t.Fatalf("%s: empty", listKey)
	}
	v, _ := l[0][field].(string)
	if v == "" {
		t.Fatalf("%s[0].%s: empty", listKey, field)
	}
	return v
}

// serveTLS serves s over HTTPS with its own TLS config and returns the
// server and a client that trusts it.
func serveTLS(t *testing.T, s *Simulator) (*httptest.Server, *http.Client) {
	t.Helper()
	cfg, caPEM, err := NewTLSConfig(nil, nil)
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, clientFor(t, caPEM, nil)
}

// httptestServer serves s over plain HTTP and returns its URL.
func httptestServer(t *testing.T, s *Simulator) string {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// syncWriter serialises writes from concurrent handlers into w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// discardWriter is a minimal ResponseWriter for benchmarks.
type discardWriter struct {
	h      http.Header
	status int
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: http.Header{}} }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
