package simclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
)

func TestWalkCallsEveryAPI(t *testing.T) {
	s := sim.New(sim.Options{Customers: 20})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := simclient.New(srv.URL, &http.Client{Transport: &http.Transport{DisableCompression: true}})
	c.Sim = s
	seen := map[string]int{}
	c.OnExchange = func(ex simclient.Exchange) {
		seen[ex.Method+" "+ex.URL.Path]++
		if ex.Status >= 400 {
			t.Errorf("%s answered %d", ex.Name, ex.Status)
		}
	}
	if err := c.Walk(context.Background(), 3, 50); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"GET /oauth/2.0/authorize", "POST /oauth/2.0/token", "GET /oauth/2.0/token", "GET /oauth/2.0/revoke", "POST /oauth/2.0/revoke",
		"POST /ca/sign_request", "POST /ca/sign_result", "GET /mgmts/services", "GET /mgmts/orgs",
		"GET /v1/bank/accounts", "POST /v1/bank/accounts/deposit/basic", "POST /v1/bank/accounts/deposit/detail",
		"POST /v1/bank/accounts/deposit/transactions", "POST /v1/bank/accounts/loan/basic",
		"GET /v1/card/cards", "GET /v1/card/cards/bills", "GET /v1/invest/accounts", "POST /v1/invest/accounts/transactions",
		"GET /v1/insu/insurances", "POST /v1/insu/insurances/basic", "GET /v1/efin/accounts", "POST /v1/efin/accounts/transactions",
		"GET /v1/telecom/telecoms",
	} {
		if seen[want] == 0 {
			t.Errorf("walk never called %s", want)
		}
	}
	cardPaths := 0
	for k := range seen {
		if len(k) > len("GET /v1/card/cards/") && k[:len("GET /v1/card/cards/")] == "GET /v1/card/cards/" && k != "GET /v1/card/cards/bills" {
			cardPaths++
		}
	}
	if cardPaths < 2 {
		t.Errorf("walk called %d card detail paths, want basic and approvals", cardPaths)
	}
}
