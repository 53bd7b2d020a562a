package sim

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// TestConcurrentUse drives lazy generation, the token store and revocation
// from many goroutines at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, testOptions(t))
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				cust := (g*10 + i) % e.sim.Customers()
				tok := e.sim.IssueToken(cust, "")
				r, err := e.try(req{path: "/v1/card/cards?org_code=TESTCD0001", token: tok})
				if err != nil || r.status != http.StatusOK {
					errs <- "card list: " + strconv.Itoa(r.status)
					return
				}
				r, err = e.try(req{method: "POST", path: "/oauth/2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "scope": {"ca"}}})
				if err != nil || r.status != http.StatusOK {
					errs <- "token"
					return
				}
				if _, err = e.try(req{method: "POST", path: "/oauth/2.0/revoke", form: url.Values{"token": {tok}}}); err != nil {
					errs <- "revoke"
					return
				}
				r, err = e.try(req{path: "/v1/card/cards?org_code=TESTCD0001", token: tok})
				if err != nil || r.status != http.StatusUnauthorized {
					errs <- "after revoke"
					return
				}
				_ = e.sim.SensitiveValues(cust)
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func BenchmarkDepositTransactionsPage(b *testing.B) {
	s := New(Options{Now: fixedClock})
	h := s.Handler()
	tok := s.IssueToken(BigCustomer, "")
	org, acct, _ := s.BigDepositAccount()
	body := `{"org_code":"` + org + `","account_num":"` + acct + `","limit":100}`
	b.ReportAllocs()
	for b.Loop() {
		w := newDiscardWriter()
		r, _ := http.NewRequest(http.MethodPost, "/v1/bank/accounts/deposit/transactions", stringsReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("x-api-tran-id", "TESTMD0001M00000000000001")
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

func BenchmarkSensitiveValuesAll(b *testing.B) {
	for b.Loop() {
		s := New(Options{Now: fixedClock})
		_ = s.SensitiveValues()
	}
}
