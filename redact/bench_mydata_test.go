package redact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
	"github.com/mdtap/mdtap/redact"
)

// simTransactions fetches a deposit-transactions page from the simulator,
// with as many rows as fit in about size bytes.
func simTransactions(b *testing.B, size int) simclient.Exchange {
	s := sim.New(sim.Options{})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := simclient.New(srv.URL, &http.Client{Transport: &http.Transport{DisableCompression: true}})
	org, acct, seqno := s.BigDepositAccount()
	token := s.IssueToken(sim.BigCustomer, "")
	var best simclient.Exchange
	for limit := 1; limit <= 500; limit++ {
		ex, err := c.Do(context.Background(), "bank deposit transactions", http.MethodPost, "/v1/bank/accounts/deposit/transactions", nil, token,
			map[string]any{"org_code": org, "account_num": acct, "seqno": seqno, "from_date": "20000101", "to_date": "20991231", "limit": limit})
		if err != nil || ex.Status != 200 {
			b.Fatalf("fetch: %v %d", err, ex.Status)
		}
		if len(ex.RespBody) > size {
			break
		}
		best = ex
	}
	return best
}

func benchmarkSim(b *testing.B, size int, policy string) {
	ex := simTransactions(b, size)
	dir := b.TempDir()
	set := keysIn(b, dir)
	p, err := redact.Load(policy)
	if err != nil {
		b.Fatal(err)
	}
	r := redact.New(p, set)
	raw := rawFromExchange(1, ex)
	b.SetBytes(int64(len(ex.RespBody) + len(ex.ReqBody)))
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		prot, err := r.Protect(raw)
		if err != nil {
			b.Fatal(err)
		}
		out = prot.Response.Body
	}
	b.ReportMetric(float64(len(ex.RespBody)), "body-bytes")
	if !json.Valid(out) || bytes.Contains(out, []byte("trans_memo\":\"")) && !bytes.Contains(out, []byte("mdtap:enc")) {
		b.Fatal("unexpected output")
	}
}

// Benchmarks for the issue's numbers: a 2 KiB and a 64 KiB MyData response
// (simulator deposit transactions) through the built-in policy, real Tink.
func BenchmarkProtectSim2KiB(b *testing.B)        { benchmarkSim(b, 2<<10, "builtin") }
func BenchmarkProtectSim64KiB(b *testing.B)       { benchmarkSim(b, 64<<10, "builtin") }
func BenchmarkProtectSim64KiBStrict(b *testing.B) { benchmarkSim(b, 64<<10, "strict") }
