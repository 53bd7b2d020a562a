package sim

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDeterminism(t *testing.T) {
	a := New(Options{Seed: 42, Customers: 20, Now: fixedClock})
	b := New(Options{Seed: 42, Customers: 20, Now: fixedClock})
	c := New(Options{Seed: 43, Customers: 20, Now: fixedClock})
	// Generate b's customers in another order: laziness must not matter.
	for i := 19; i >= 0; i-- {
		b.customer(i)
	}
	for i := 0; i < 20; i++ {
		ca, _ := a.Customer(i)
		cb, _ := b.Customer(i)
		if ca != cb {
			t.Fatalf("Customer(%d): same seed, got %+v and %+v", i, ca, cb)
		}
	}
	if !reflect.DeepEqual(a.SensitiveValues(0, 1, 2), b.SensitiveValues(0, 1, 2)) {
		t.Fatal("SensitiveValues: same seed, different values")
	}
	if reflect.DeepEqual(a.SensitiveValues(0, 1, 2), c.SensitiveValues(0, 1, 2)) {
		t.Fatal("SensitiveValues: different seeds, same values")
	}
	ca, _ := a.Customer(0)
	cc, _ := c.Customer(0)
	if ca.CI == cc.CI {
		t.Fatal("CI: different seeds, same CI")
	}

	// Same seed → byte-identical responses over HTTP.
	bodies := func(s *Simulator) [][]byte {
		e := &env{sim: s}
		e.srv, e.client = serveTLS(t, s)
		tok := s.IssueToken(loanCustomer(t, s), "")
		var out [][]byte
		for _, tc := range sectorCases(t, e, "/v1", tok) {
			out = append(out, e.do(t, req{method: tc.method, path: "/v1" + tc.path, token: tok, json: tc.body}).raw)
		}
		return out
	}
	ba, bb, bc := bodies(a), bodies(b), bodies(c)
	for i := range ba {
		if !bytes.Equal(ba[i], bb[i]) {
			t.Fatalf("response %d: same seed, different bodies", i)
		}
	}
	same := 0
	for i := range ba {
		if bytes.Equal(ba[i], bc[i]) {
			same++
		}
	}
	if same == len(ba) {
		t.Fatal("different seeds: every response identical")
	}

	// The data day moves with the clock; the seed alone does not.
	d := New(Options{Seed: 42, Customers: 20, Now: func() time.Time { return testNow.AddDate(0, 0, 1) }})
	if reflect.DeepEqual(a.depositTxs(a.customer(0), 0, 0), d.depositTxs(d.customer(0), 0, 0)) {
		t.Fatal("data day: a later clock gave the same dates")
	}
}

func TestCustomerLookups(t *testing.T) {
	s := New(Options{Seed: 5, Customers: 30, Now: fixedClock})
	for i := 0; i < 30; i++ {
		c, ok := s.Customer(i)
		if !ok {
			t.Fatalf("Customer(%d): not found", i)
		}
		if raw, err := base64.StdEncoding.DecodeString(c.CI); err != nil || len(raw) != 64 {
			t.Fatalf("Customer(%d).CI: %v, %d bytes", i, err, len(raw))
		}
		if j, ok := s.customerByCI(c.CI); !ok || j != i {
			t.Fatalf("customerByCI(Customer(%d).CI): got %d, %v", i, j, ok)
		}
		if c.BirthDate >= "20040315" || c.BirthDate < "19480101" {
			t.Errorf("Customer(%d).BirthDate: got %s, want 20–76 years before the data day", i, c.BirthDate)
		}
	}
	for _, i := range []int{-1, 30} {
		if _, ok := s.Customer(i); ok {
			t.Errorf("Customer(%d): found, want out of range", i)
		}
	}
	other := New(Options{Seed: 5, Customers: 30, Now: fixedClock})
	spread := map[int]bool{}
	for k := 0; k < 200; k++ {
		key := strconv.Itoa(k)
		n := s.customerFromKey("client", key)
		if n < 0 || n >= 30 || n != other.customerFromKey("client", key) {
			t.Fatalf("customerFromKey(%q): got %d, want a stable index in [0,30)", key, n)
		}
		spread[n] = true
	}
	if len(spread) < 20 {
		t.Errorf("customerFromKey: 200 keys reach only %d of 30 customers", len(spread))
	}
}

func TestEveryCustomerHasEverySector(t *testing.T) {
	s := New(Options{Seed: 9, Customers: 200, Now: fixedClock})
	for i := 0; i < s.Customers(); i++ {
		c := s.customer(i)
		for oi, o := range s.orgs {
			a := c.assets[oi]
			n := map[string]int{"bank": len(a.bank), "card": len(a.cards), "invest": len(a.invest), "insu": len(a.policies), "telecom": len(a.lines)}
			if a.efin != nil {
				n["efin"] = len(a.efin.accounts)
			}
			if n[o.Industry] == 0 {
				t.Fatalf("customer %d: no %s assets at %s", i, o.Industry, o.Code)
			}
		}
	}
	// Only the documented big lists are that long.
	oi, _ := s.org(BigDepositOrg)
	if got := len(s.depositTxs(s.customer(BigCustomer), oi, 0)); got != BigDepositTransactions {
		t.Fatalf("big account rows: got %d, want %d", got, BigDepositTransactions)
	}
}

func TestSensitiveValues(t *testing.T) {
	e := newEnv(t, testOptions(t))
	c, _ := e.sim.Customer(4)
	vals := e.sim.SensitiveValues(4)
	set := map[string]bool{}
	for i, v := range vals {
		if v == "" || (i > 0 && vals[i-1] >= v) {
			t.Fatalf("SensitiveValues: not sorted and unique at %d", i)
		}
		set[v] = true
	}
	for _, v := range []string{c.Name, c.CI, c.Phone, c.PhoneIntl, strings.ReplaceAll(c.Phone, "-", "")} {
		if !set[v] {
			t.Errorf("SensitiveValues(4): missing %q", v)
		}
	}
	for _, op := range e.sim.operators {
		for _, sv := range op.services {
			if !set[sv.clientSecret] {
				t.Error("SensitiveValues: missing a client secret")
			}
		}
	}
	tok := e.sim.IssueToken(4, "")
	if !contains(e.sim.SensitiveValues(4), tok) {
		t.Error("SensitiveValues: missing an issued token")
	}
	if contains(vals, tok) {
		t.Error("SensitiveValues before issuing: already had the token")
	}
	other, _ := e.sim.Customer(5)
	if set[other.CI] {
		t.Error("SensitiveValues(4): has customer 5's CI")
	}
	if got := e.sim.SensitiveValues(-1, 1000); len(got) == 0 || contains(got, c.CI) {
		t.Error("SensitiveValues(out of range): want only global secrets")
	}
	// No argument means everyone.
	all := e.sim.SensitiveValues()
	if !contains(all, other.CI) || !contains(all, c.CI) || len(all) <= len(vals) {
		t.Error("SensitiveValues(): does not cover all customers")
	}
}

func contains(sorted []string, v string) bool {
	for _, s := range sorted {
		if s == v {
			return true
		}
	}
	return false
}

// TestLogsCarryNoPayload runs the whole conformance set with debug logging
// into a buffer and then looks for every sensitive value in it.
func TestLogsCarryNoPayload(t *testing.T) {
	var buf bytes.Buffer
	opts := testOptions(t)
	opts.Logger = zerolog.New(&syncWriter{w: &buf}).Level(zerolog.DebugLevel)
	e := newEnv(t, opts)
	cust := loanCustomer(t, e.sim)
	tok := e.sim.IssueToken(cust, "")
	for _, tc := range sectorCases(t, e, "/v1", tok) {
		e.do(t, req{method: tc.method, path: "/v1" + tc.path, token: tok, json: tc.body})
	}
	e.do(t, req{path: "/v1/card/cards/" + "NOPE?org_code=TESTCD0001", token: tok})
	e.do(t, req{path: "/mgmts/services", token: e.sim.IssueToken(0, "manage")})
	e.srv.Close() // flush: all handlers done
	logs := buf.String()
	if !strings.Contains(logs, `"route":"/v1/bank/accounts"`) || !strings.Contains(logs, `"rsp_code":"00000"`) {
		t.Fatalf("logs: want route and rsp_code per request, got %.300s", logs)
	}
	for _, v := range e.sim.SensitiveValues(cust) {
		if len(v) >= 4 && strings.Contains(logs, v) {
			t.Errorf("logs contain a sensitive value (%d bytes)", len(v))
		}
	}
}

func TestNewIsCheap(t *testing.T) {
	start := time.Now()
	s := New(Options{})
	if s.Customers() != DefaultCustomers || s.seed != DefaultSeed || s.slowDelay != DefaultSlowDelay {
		t.Fatalf("defaults: got %d customers, seed %d, slow %v", s.Customers(), s.seed, s.slowDelay)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("New: took %v, want well under a second", took)
	}
	for i := range s.slots {
		if s.slots[i].c != nil {
			t.Fatal("New: generated customers eagerly")
		}
	}
	_ = s.Handler()
	if len(s.Orgs()) != 7 {
		t.Fatalf("Orgs: got %d", len(s.Orgs()))
	}
	for _, o := range s.Orgs() {
		if len(o.Code) != 10 {
			t.Errorf("org_code %q: want 10 characters", o.Code)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for code, want := range map[string]int{"00000": 200, "40001": 400, "40101": 401, "40303": 403, "40401": 404, "42901": 429, "50001": 500, "x": 500, "4x001": 500} {
		if got := statusOf(code); got != want {
			t.Errorf("statusOf(%q): got %d, want %d", code, got, want)
		}
	}
}

// TestHandlerWithoutTLS: the plain handler works under httptest.NewServer
// and reports an http:// domain.
func TestHandlerWithoutTLS(t *testing.T) {
	s := New(testOptions(t))
	srv := httptestServer(t, s)
	resp, err := get(t, http.DefaultClient, srv+"/mgmts/orgs", s.IssueToken(0, "manage"), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mgmts/orgs: %v", err)
	}
}
