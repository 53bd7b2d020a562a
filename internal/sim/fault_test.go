package sim

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const accountsPath = "/v1/bank/accounts?org_code=TESTBK0001"

func TestFaults(t *testing.T) {
	opts := testOptions(t)
	opts.SlowDelay = 150 * time.Millisecond
	e := newEnv(t, opts)
	tok := e.sim.IssueToken(0, "")
	fault := func(v string) req {
		return req{path: accountsPath, token: tok, header: map[string]string{FaultHeader: v}}
	}
	normal := e.do(t, req{path: accountsPath, token: tok})
	wantCode(t, "no fault", normal, http.StatusOK, codeOK)

	t.Run("429", func(t *testing.T) {
		q := fault("429")
		q.tran = tranID()
		r := e.do(t, q)
		wantCode(t, "x-sim-fault 429", r, http.StatusTooManyRequests, codeRateLimited)
		if r.header.Get("x-api-tran-id") != q.tran {
			t.Error("x-api-tran-id not echoed on an injected error")
		}
	})
	t.Run("500", func(t *testing.T) {
		wantCode(t, "x-sim-fault 500", e.do(t, fault("500")), http.StatusInternalServerError, codeSystem)
	})
	t.Run("500 before auth", func(t *testing.T) {
		q := fault("500")
		q.token = ""
		wantCode(t, "x-sim-fault 500 without token", e.do(t, q), http.StatusInternalServerError, codeSystem)
	})
	t.Run("slow", func(t *testing.T) {
		start := time.Now()
		r := e.do(t, fault("slow"))
		if took := time.Since(start); took < opts.SlowDelay {
			t.Errorf("slow: answered after %v, want ≥ %v", took, opts.SlowDelay)
		}
		wantCode(t, "x-sim-fault slow", r, http.StatusOK, codeOK)
		if !bytes.Equal(r.raw, normal.raw) {
			t.Error("slow: body differs from the normal response")
		}
	})
	t.Run("garbage", func(t *testing.T) {
		r := e.do(t, fault("garbage"))
		if r.status != http.StatusOK {
			t.Fatalf("garbage: got HTTP %d, want 200", r.status)
		}
		if len(r.raw) == 0 || json.Valid(r.raw) {
			t.Fatalf("garbage: got %d bytes of valid JSON, want invalid JSON", len(r.raw))
		}
		if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.raw)) {
			t.Errorf("garbage: Content-Length %q for %d bytes", got, len(r.raw))
		}
	})
	t.Run("garbage on an error", func(t *testing.T) {
		q := fault("garbage")
		q.token = "bad"
		r := e.do(t, q)
		if r.status != http.StatusOK || json.Valid(r.raw) {
			t.Fatalf("garbage on 401: got HTTP %d valid=%v", r.status, json.Valid(r.raw))
		}
	})
	for _, n := range []int{3<<20 + 7, len(normal.raw) + 5, len(normal.raw) + 17, len(normal.raw) + 18} {
		t.Run("big="+strconv.Itoa(n), func(t *testing.T) {
			r := e.do(t, fault("big="+strconv.Itoa(n)))
			wantCode(t, "big", r, http.StatusOK, codeOK)
			if len(r.raw) != n {
				t.Fatalf("big=%d: got %d bytes", n, len(r.raw))
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(n) {
				t.Errorf("big=%d: Content-Length %q", n, got)
			}
			if err := checkPath(r.body, "account_list[].account_num"); err != nil {
				t.Errorf("big=%d: %v", n, err)
			}
		})
	}
	t.Run("big smaller than the body", func(t *testing.T) {
		r := e.do(t, fault("big=10"))
		if !bytes.Equal(r.raw, normal.raw) {
			t.Fatal("big=10: body changed")
		}
	})
	t.Run("big with gzip streams", func(t *testing.T) {
		q := fault("big=" + strconv.Itoa(2<<20))
		q.header["Accept-Encoding"] = "gzip"
		r := e.do(t, q)
		if r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding: got %q, want gzip", r.header.Get("Content-Encoding"))
		}
		plain := gunzip(t, r.raw)
		if len(plain) != 2<<20 || !json.Valid(plain) {
			t.Fatalf("big gzip: got %d bytes valid=%v, want %d valid", len(plain), json.Valid(plain), 2<<20)
		}
	})
	t.Run("slow,garbage combine", func(t *testing.T) {
		r := e.do(t, fault("slow, garbage"))
		if r.status != http.StatusOK || json.Valid(r.raw) {
			t.Fatalf("slow,garbage: got HTTP %d valid=%v", r.status, json.Valid(r.raw))
		}
	})
	for _, bad := range []string{"boom", "big=x", "big=-1", "big=" + strconv.Itoa(MaxBigFault+1)} {
		t.Run("invalid "+bad, func(t *testing.T) {
			wantCode(t, bad, e.do(t, fault(bad)), http.StatusBadRequest, codeBadParam)
		})
	}
	t.Run("reset", func(t *testing.T) {
		_, err := e.try(fault("reset"))
		if err == nil {
			t.Fatal("reset: request succeeded, want a connection error")
		}
		// The server is still fine afterwards.
		wantCode(t, "after reset", e.do(t, req{path: accountsPath, token: tok}), http.StatusOK, codeOK)
	})
	t.Run("reset on the token endpoint", func(t *testing.T) {
		_, err := e.try(req{method: "POST", path: "/oauth/2.0/token", rawBody: "grant_type=client_credentials&scope=ca", header: map[string]string{FaultHeader: "reset", "Content-Type": "application/x-www-form-urlencoded"}})
		if err == nil {
			t.Fatal("reset: token request succeeded")
		}
	})
}

// TestSlowHonoursCancellation: a cancelled request must not hold the
// handler for the whole delay (httptest's Close waits for handlers, so a
// handler that ignored cancellation would stall Close for an hour).
func TestSlowHonoursCancellation(t *testing.T) {
	opts := testOptions(t)
	opts.SlowDelay = time.Hour
	e := newEnv(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+accountsPath, nil)
	r.Header.Set(FaultHeader, "slow")
	r.Header.Set("x-api-tran-id", tranID())
	resp, err := e.client.Do(r)
	if err == nil {
		resp.Body.Close()
		t.Fatal("slow with a 100ms deadline: got a response")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: got %v, want deadline exceeded", err)
	}
	start := time.Now()
	e.srv.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("server Close took %v: slow handler ignored cancellation", took)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip.NewReader: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

func TestGzip(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(0, "")
	org, acct, _ := e.sim.BigDepositAccount()
	body := map[string]any{"org_code": org, "account_num": acct, "limit": 500}
	plain := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: body})
	for _, ae := range []string{"gzip", "deflate, gzip;q=0.5", "*"} {
		t.Run(ae, func(t *testing.T) {
			r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: body, header: map[string]string{"Accept-Encoding": ae}})
			if r.status != http.StatusOK || r.header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("got HTTP %d Content-Encoding %q, want 200 gzip", r.status, r.header.Get("Content-Encoding"))
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.raw)) {
				t.Errorf("Content-Length: got %q, want %d", got, len(r.raw))
			}
			if len(r.raw) >= len(plain.raw) {
				t.Errorf("compressed %d bytes ≥ plain %d", len(r.raw), len(plain.raw))
			}
			if !bytes.Equal(gunzip(t, r.raw), plain.raw) {
				t.Error("gunzipped body differs from the plain body")
			}
		})
	}
	for _, ae := range []string{"", "identity", "gzip;q=0", "br"} {
		r := e.do(t, req{path: accountsPath, token: tok, header: map[string]string{"Accept-Encoding": ae}})
		if r.header.Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q: got Content-Encoding %q, want none", ae, r.header.Get("Content-Encoding"))
		}
	}
	// Errors are compressed too.
	r := e.do(t, req{path: accountsPath, token: "bad", header: map[string]string{"Accept-Encoding": "gzip"}})
	if r.status != http.StatusUnauthorized || r.header.Get("Content-Encoding") != "gzip" || !strings.Contains(string(gunzip(t, r.raw)), codeBadToken) {
		t.Errorf("gzip error: got HTTP %d Content-Encoding %q", r.status, r.header.Get("Content-Encoding"))
	}
}

func TestPadBody(t *testing.T) {
	for _, tc := range []struct {
		body string
		n    int
	}{
		{`{"a":1}`, 8}, {`{"a":1}`, 24}, {`{"a":1}`, 25}, {`{"a":1}`, 1000}, {`{}`, 3}, {`{}`, 40}, {`[1]`, 10},
	} {
		r, size := padBody([]byte(tc.body), tc.n)
		out, _ := io.ReadAll(r)
		if len(out) != tc.n || size != int64(tc.n) || !json.Valid(out) {
			t.Errorf("padBody(%s, %d): got %d bytes (size %d) valid=%v: %q", tc.body, tc.n, len(out), size, json.Valid(out), out)
		}
	}
}

func TestParseFault(t *testing.T) {
	f, err := parseFault(" SLOW , big=100,garbage")
	if err != nil || !f.slow || f.big != 100 || !f.garbage || f.reset || f.status != 0 {
		t.Fatalf("parseFault: got %+v, %v", f, err)
	}
	if f, err := parseFault(""); err != nil || f != (fault{}) {
		t.Fatalf("parseFault(empty): got %+v, %v", f, err)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"gzip": true, "GZIP": true, "br, gzip": true, "gzip;q=0.1": true, "*": true, "x-gzip": true,
		"": false, "br": false, "gzip;q=0": false, "gzip; q=0.0": false, "identity": false,
	} {
		if got := acceptsGzip(v); got != want {
			t.Errorf("acceptsGzip(%q): got %v, want %v", v, got, want)
		}
	}
}
