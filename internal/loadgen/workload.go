package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
)

// Workload kinds.
const (
	// WorkloadAccounts is the bank account list (BA01), a GET of about 1 KiB.
	WorkloadAccounts = "accounts"
	// WorkloadTransactions is a deposit-transactions page (BA04), a POST
	// with a JSON body whose response is sized to about 2 KiB — the "2 KiB
	// body" case of PERFORMANCE.md and of redact's BenchmarkProtectSim2KiB.
	WorkloadTransactions = "transactions"
	// WorkloadTransactions64K is the same call sized to about 64 KiB.
	WorkloadTransactions64K = "transactions-64k"
	// WorkloadMixed cycles through the resource APIs of every sector the
	// simulator serves (lists, details, paged histories), as recorded from
	// one simclient walk of a customer.
	WorkloadMixed = "mixed"
)

// Workloads lists the kinds NewWorkload accepts.
var Workloads = []string{WorkloadAccounts, WorkloadTransactions, WorkloadTransactions64K, WorkloadMixed}

// Call is one MyData call of a workload, replayed with a fresh
// x-api-tran-id each time.
type Call struct {
	Method      string
	Path        string
	RawQuery    string
	Body        []byte
	ContentType string
	// RespBytes is the response body size measured at setup.
	RespBytes int
}

// Workload is the cycle of calls a run sends, request n being call n mod len.
type Workload struct {
	Kind  string
	Calls []Call
	token string
}

// Describe says what the workload sends, for the report.
func (w *Workload) Describe() string {
	if len(w.Calls) == 1 {
		c := w.Calls[0]
		return fmt.Sprintf("%s %s, %d-byte response", c.Method, c.Path, c.RespBytes)
	}
	return fmt.Sprintf("%d calls over %d APIs, mean response %d bytes", len(w.Calls), w.apis(), w.MeanRespBytes())
}

func (w *Workload) apis() int {
	seen := map[string]bool{}
	for _, c := range w.Calls {
		seen[c.Method+" "+c.Path] = true
	}
	return len(seen)
}

// MeanRespBytes is the mean response body size over the cycle.
func (w *Workload) MeanRespBytes() int {
	if len(w.Calls) == 0 {
		return 0
	}
	n := 0
	for _, c := range w.Calls {
		n += c.RespBytes
	}
	return n / len(w.Calls)
}

// NewWorkload prepares a workload of kind against the simulator s served at
// base, calling it through hc (directly, without compression) to size the
// pages and record the mixed cycle. Every call is checked to answer 200.
func NewWorkload(ctx context.Context, kind string, s *sim.Simulator, base string, hc *http.Client) (*Workload, error) {
	base = strings.TrimRight(base, "/")
	w := &Workload{Kind: kind}
	switch kind {
	case WorkloadAccounts:
		w.token = s.IssueToken(sim.BigCustomer, "")
		q := url.Values{"org_code": {sim.BigDepositOrg}, "search_timestamp": {"0"}, "limit": {"500"}}
		w.Calls = []Call{{Method: http.MethodGet, Path: "/v1/bank/accounts", RawQuery: q.Encode()}}
	case WorkloadTransactions, WorkloadTransactions64K:
		w.token = s.IssueToken(sim.BigCustomer, "")
		size := 2 << 10
		if kind == WorkloadTransactions64K {
			size = 64 << 10
		}
		c, err := w.sizeTransactions(ctx, s, base, hc, size)
		if err != nil {
			return nil, err
		}
		w.Calls = []Call{c}
	case WorkloadMixed:
		if err := w.recordMixed(ctx, s, base, hc); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("workload %q: want one of %s", kind, strings.Join(Workloads, ", "))
	}
	for i := range w.Calls {
		n, err := w.probe(ctx, base, hc, &w.Calls[i])
		if err != nil {
			return nil, err
		}
		w.Calls[i].RespBytes = n
	}
	return w, nil
}

// sizeTransactions finds the largest page limit whose response fits in size
// bytes (the response grows with the limit; a binary search over 1–500).
func (w *Workload) sizeTransactions(ctx context.Context, s *sim.Simulator, base string, hc *http.Client, size int) (Call, error) {
	org, acct, seqno := s.BigDepositAccount()
	call := func(limit int) Call {
		b, _ := json.Marshal(map[string]any{"org_code": org, "account_num": acct, "seqno": seqno,
			"from_date": "20000101", "to_date": "20991231", "limit": limit})
		return Call{Method: http.MethodPost, Path: "/v1/bank/accounts/deposit/transactions", Body: b,
			ContentType: "application/json; charset=UTF-8"}
	}
	lo, hi := 1, 500
	best := call(1)
	for lo <= hi {
		mid := (lo + hi) / 2
		c := call(mid)
		n, err := w.probe(ctx, base, hc, &c)
		if err != nil {
			return Call{}, err
		}
		if n <= size {
			best, lo = c, mid+1
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}

// recordMixed walks the resource APIs of every institution for one
// customer with simclient and keeps the calls that answered 200.
func (w *Workload) recordMixed(ctx context.Context, s *sim.Simulator, base string, hc *http.Client) error {
	const customer, limit = 1, 20
	w.token = s.IssueToken(customer, "")
	c := simclient.New(base, hc)
	c.OnExchange = func(ex simclient.Exchange) {
		if ex.Status != http.StatusOK {
			return
		}
		w.Calls = append(w.Calls, Call{Method: ex.Method, Path: ex.URL.Path, RawQuery: ex.URL.RawQuery,
			Body: ex.ReqBody, ContentType: ex.ReqHeader.Get("Content-Type")})
	}
	for _, o := range s.Orgs() {
		if err := c.Sector(ctx, simclient.Org{Code: o.Code, Industry: o.Industry}, w.token, limit); err != nil {
			return fmt.Errorf("record mixed workload: %w", err)
		}
	}
	if len(w.Calls) == 0 {
		return fmt.Errorf("record mixed workload: no call answered 200")
	}
	return nil
}

// probe sends c once and returns its response size; anything but 200 fails.
func (w *Workload) probe(ctx context.Context, base string, hc *http.Client, c *Call) (int, error) {
	req, err := w.request(ctx, base, c, 0)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("probe %s %s: %w", c.Method, c.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("probe %s %s: %w", c.Method, c.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("probe %s %s: HTTP %d", c.Method, c.Path, resp.StatusCode)
	}
	return len(b), nil
}

// TranID is the x-api-tran-id of request n: operator code, M, 14 digits
// (AN(25)), unique per request of a bench run.
func TranID(n uint64) string { return fmt.Sprintf("TESTMD0001M%014d", n+1) }

func (w *Workload) request(ctx context.Context, base string, c *Call, n uint64) (*http.Request, error) {
	u := base + c.Path
	if c.RawQuery != "" {
		u += "?" + c.RawQuery
	}
	var body io.Reader
	if c.Body != nil {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("x-api-tran-id", TranID(n))
	if c.ContentType != "" {
		req.Header.Set("Content-Type", c.ContentType)
	}
	return req, nil
}

// Requests returns the request builder of a run against base (the
// simulator's URL; a proxy, if any, is the client's business).
func (w *Workload) Requests(base string) RequestFunc {
	base = strings.TrimRight(base, "/")
	return func(ctx context.Context, n uint64) (*http.Request, error) {
		return w.request(ctx, base, &w.Calls[n%uint64(len(w.Calls))], n)
	}
}
