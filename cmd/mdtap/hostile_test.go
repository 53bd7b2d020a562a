package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// hostileSecret rides in every hostile request; no refusal, log line or
// record may carry it.
const hostileSecret = "HOSTILE-E2E-SECRET-0042"

// The hardening end to end, through `mdtap proxy` as deployed: limits and
// smuggling checks hold inside a MITM tunnel, the sidecar's own admin port
// is refused even with 127.0.0.1 allow-listed, uncaptured protocols are
// refused, every refusal is counted on /metrics (documented), a normal call
// still goes through with its record, and nothing leaks.
func TestProxyHostileInputEndToEnd(t *testing.T) {
	st := startProxyStack(t, nil, "--allow-host", "127.0.0.1", "--max-header-bytes", "4KiB",
		"--client-header-timeout", "500ms", "--max-body-bytes", "64KiB")
	tr := st.client.Transport.(*http.Transport)
	proxyURL, _ := tr.Proxy(&http.Request{URL: &url.URL{Scheme: "https"}})
	listen, simHost := proxyURL.Host, strings.TrimPrefix(st.simURL, "https://")

	dial := func() net.Conn {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	connect := func(target string) (net.Conn, *bufio.Reader, int) {
		c := dial()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatalf("CONNECT %s: %v", target, err)
		}
		return c, br, resp.StatusCode
	}
	tunnel := func() *tls.Conn {
		c, _, status := connect(simHost)
		if status != 200 {
			t.Fatalf("CONNECT %s: %d", simHost, status)
		}
		tc := tls.Client(c, &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1", p)
		}
		return tc
	}
	send := func(c net.Conn, raw string) (int, string) {
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	var answers []string
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"smuggling CL+TE", "POST /v1/bank/accounts HTTP/1.1\r\nHost: " + simHost + "\r\nAuthorization: Bearer " + hostileSecret +
			"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET /v1/bank/accounts HTTP/1.1\r\nHost: " + simHost + "\r\nX-A: a\r\n " + hostileSecret + "\r\n\r\n", 400},
		{"header bytes", "GET /v1/bank/accounts HTTP/1.1\r\nHost: " + simHost + "\r\nX-Big: " + strings.Repeat(hostileSecret, 300) + "\r\n\r\n", 431},
		{"body", "POST /v1/bank/accounts HTTP/1.1\r\nHost: " + simHost + "\r\nContent-Length: 1000000\r\n\r\n", 413},
		{"websocket", "GET /v1/bank/accounts HTTP/1.1\r\nHost: " + simHost + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer " + hostileSecret + "\r\n\r\n", 501},
		{"h2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	} {
		status, body := send(tunnel(), tc.raw)
		if status != tc.status {
			t.Errorf("%s in a tunnel: %d %q, want %d", tc.name, status, body, tc.status)
		}
		answers = append(answers, body)
	}
	// The admin port is the sidecar's own, even with 127.0.0.1 allow-listed.
	if _, _, status := connect(st.adminAddr); status != http.StatusForbidden {
		t.Errorf("CONNECT to the admin port: %d, want 403", status)
	}
	// Slowloris on the outer connection: cut at --client-header-timeout.
	c := dial()
	io.WriteString(c, "GET http://"+simHost+"/ HTTP/1.1\r\nHost: ")
	start := time.Now()
	io.ReadAll(c)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a slow head held the connection for %v", took)
	}

	// A normal call still passes and is recorded.
	req, _ := http.NewRequest("GET", st.simURL+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0", nil)
	req.Header.Set("Authorization", "Bearer "+st.sim.IssueToken(1, ""))
	req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000099")
	resp, err := st.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a normal call after the hostile ones: %d", resp.StatusCode)
	}
	recs, raw := fetchRecords(t, st.ns, 1, st.logs)
	if len(recs) != 1 || recs[0].TranID != "TESTMD0001M00000000000099" {
		t.Fatalf("records %d: refused requests must leave none, the normal call one", len(recs))
	}

	for _, m := range []string{`mdtap_proxy_smuggling_total{kind="cl_te"} 1`, `mdtap_proxy_smuggling_total{kind="obs_fold"} 1`,
		`mdtap_proxy_limit_total{limit="header_bytes"} 1`, `mdtap_proxy_limit_total{limit="body_bytes"} 1`,
		`mdtap_proxy_limit_total{limit="client_header_timeout"} 1`, `mdtap_proxy_refused_total{reason="websocket"} 1`,
		`mdtap_proxy_refused_total{reason="h2_prior_knowledge"} 1`, `mdtap_proxy_refused_total{reason="own_address"} 1`} {
		i := strings.LastIndexByte(m, ' ')
		waitMetric(t, st.adminAddr, m[:i], 1)
	}
	resp, err = http.Get("http://" + st.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkMetricsDocumented(t, string(exposition))

	everything := strings.Join(answers, "\n") + string(raw) + st.logs.String()
	if strings.Contains(everything, hostileSecret) {
		t.Fatal("a hostile request's secret reached a refusal, a record or the logs")
	}
	for _, v := range st.sim.SensitiveValues(1) {
		if len(v) >= 6 && strings.Contains(string(raw)+st.logs.String(), v) {
			t.Fatalf("a sensitive value of the simulator leaked")
		}
	}
}
