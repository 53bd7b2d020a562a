package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// TestPaginationDeposit walks BigCustomer's 1,200-row account with the
// body's limit and next_page: every row exactly once, in order, and the
// walk ends.
func TestPaginationDeposit(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(BigCustomer, "bank.list bank.deposit")
	org, acct, seqno := e.sim.BigDepositAccount()

	var got []depositTx
	next := ""
	for pages := 0; ; pages++ {
		if pages > BigDepositTransactions/100+2 {
			t.Fatalf("deposit transactions: still paging after %d pages", pages)
		}
		body := map[string]any{"org_code": org, "account_num": acct, "seqno": seqno, "from_date": "20000101", "to_date": "20991231", "limit": 100}
		if next != "" {
			body["next_page"] = next
		}
		r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: body})
		wantCode(t, "deposit transactions page", r, http.StatusOK, codeOK)
		var page transResponse[depositTx]
		if err := json.Unmarshal(r.raw, &page); err != nil {
			t.Fatalf("decode page: %v", err)
		}
		if page.TransCnt != len(page.TransList) {
			t.Fatalf("trans_cnt: got %d, want %d (rows on the page)", page.TransCnt, len(page.TransList))
		}
		got = append(got, page.TransList...)
		if page.NextPage == "" {
			break
		}
		next = page.NextPage
	}
	if len(got) != BigDepositTransactions {
		t.Fatalf("rows: got %d, want %d", len(got), BigDepositTransactions)
	}
	seen := map[string]bool{}
	for _, tx := range got {
		if seen[tx.TransNo] {
			t.Fatalf("trans_no %s returned twice", tx.TransNo)
		}
		seen[tx.TransNo] = true
	}
	oi, _ := e.sim.org(org)
	if want := e.sim.depositTxs(e.sim.customer(BigCustomer), oi, 0); !reflect.DeepEqual(got, want) {
		t.Fatal("paged rows differ from the account's rows")
	}

	// A date window pages too and keeps only rows inside it.
	first, last := got[len(got)-1].TransDtime[:8], got[0].TransDtime[:8]
	if first >= "20230101" || last < "20231231" {
		t.Fatalf("rows span %s–%s, want a window wider than 2023", first, last)
	}
	n, next := 0, ""
	for {
		body := map[string]any{"org_code": org, "account_num": acct, "from_date": "20230101", "to_date": "20231231", "limit": "150"}
		if next != "" {
			body["next_page"] = next
		}
		r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: body})
		wantCode(t, "windowed page", r, http.StatusOK, codeOK)
		for _, row := range list(t, r.body, "trans_list") {
			if d := row["trans_dtime"].(string)[:8]; d < "20230101" || d > "20231231" {
				t.Fatalf("trans_dtime %s outside 2023", d)
			}
			n++
		}
		if next = r.str("next_page"); next == "" {
			break
		}
	}
	want := 0
	for _, tx := range got {
		if tx.TransDtime[:4] == "2023" {
			want++
		}
	}
	if n != want || n == 0 {
		t.Fatalf("2023 rows: got %d, want %d", n, want)
	}
}

// TestPaginationCardApprovals walks the 1,050 approvals with limit and
// next_page in the query string.
func TestPaginationCardApprovals(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(BigCustomer, "")
	org, cardID := e.sim.BigCard()
	var got []approval
	next := ""
	for pages := 0; ; pages++ {
		if pages > BigCardApprovals/77+2 {
			t.Fatalf("approvals: still paging after %d pages", pages)
		}
		q := url.Values{"org_code": {org}, "limit": {"77"}}
		if next != "" {
			q.Set("next_page", next)
		}
		r := e.do(t, req{path: "/v1/card/cards/" + cardID + "/approval-domestic?" + q.Encode(), token: tok})
		wantCode(t, "approvals page", r, http.StatusOK, codeOK)
		var page approvalsResponse
		if err := json.Unmarshal(r.raw, &page); err != nil {
			t.Fatalf("decode page: %v", err)
		}
		if page.ApprovedCnt != len(page.ApprovedList) {
			t.Fatalf("approved_cnt: got %d, want %d", page.ApprovedCnt, len(page.ApprovedList))
		}
		got = append(got, page.ApprovedList...)
		if next = page.NextPage; next == "" {
			break
		}
	}
	if len(got) != BigCardApprovals {
		t.Fatalf("rows: got %d, want %d", len(got), BigCardApprovals)
	}
	seen := map[string]bool{}
	for _, a := range got {
		k := a.ApprovedDtime + a.ApprovedNum
		if seen[k] {
			t.Fatalf("approval %s returned twice", k)
		}
		seen[k] = true
	}
	oi, _ := e.sim.org(org)
	if want := e.sim.approvals(e.sim.customer(BigCustomer), oi, 0); !reflect.DeepEqual(got, want) {
		t.Fatal("paged approvals differ from the card's approvals")
	}
}

func TestPagingErrors(t *testing.T) {
	e := newEnv(t, testOptions(t))
	tok := e.sim.IssueToken(BigCustomer, "")
	org, acct, _ := e.sim.BigDepositAccount()
	cardOrg, cardID := e.sim.BigCard()
	cases := []struct {
		name   string
		limit  any
		next   string
		status int
		code   string
	}{
		{"limit 501", 501, "", http.StatusTooManyRequests, codeRateLimited},
		{"limit 500", 500, "", http.StatusOK, codeOK},
		{"limit 0", 0, "", http.StatusBadRequest, codeBadParam},
		{"limit -1", -1, "", http.StatusBadRequest, codeBadParam},
		{"limit text", "ten", "", http.StatusBadRequest, codeBadParam},
		{"next_page garbage", 10, "abc", http.StatusBadRequest, codeBadParam},
		{"next_page past the end", 10, "00000000000000999999", http.StatusOK, codeOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"org_code": org, "account_num": acct, "limit": tc.limit, "next_page": tc.next}
			r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: body})
			wantCode(t, "POST deposit/transactions", r, tc.status, tc.code)
			q := url.Values{"org_code": {cardOrg}, "limit": {fmt.Sprint(tc.limit)}, "next_page": {tc.next}}
			r = e.do(t, req{path: "/v1/card/cards/" + cardID + "/approval-domestic?" + q.Encode(), token: tok})
			wantCode(t, "GET approval-domestic", r, tc.status, tc.code)
		})
	}
	t.Run("no limit means 500", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: map[string]any{"org_code": org, "account_num": acct}})
		wantCode(t, "POST deposit/transactions", r, http.StatusOK, codeOK)
		if n := len(list(t, r.body, "trans_list")); n != DefaultLimit {
			t.Fatalf("rows: got %d, want %d", n, DefaultLimit)
		}
	})
	for _, d := range []struct{ from, to string }{{"2024011", "20240131"}, {"20240230", "20240301"}, {"20240301", "20240201"}} {
		r := e.do(t, req{method: "POST", path: "/v1/bank/accounts/deposit/transactions", token: tok, json: map[string]any{"org_code": org, "account_num": acct, "from_date": d.from, "to_date": d.to}})
		wantCode(t, "dates "+d.from+"–"+d.to, r, http.StatusBadRequest, codeBadParam)
	}
}

func TestPaginateUnit(t *testing.T) {
	items := []int{1, 2, 3, 4, 5}
	var got []int
	p := page{limit: 2}
	for i := 0; ; i++ {
		if i > 5 {
			t.Fatal("paginate: does not terminate")
		}
		rows, next := paginate(items, p, nil)
		got = append(got, rows...)
		if next == "" {
			break
		}
		var err error
		if p, err = parsePage("2", next); err != nil {
			t.Fatalf("parsePage(%q): %v", next, err)
		}
	}
	if !reflect.DeepEqual(got, items) {
		t.Fatalf("paginate: got %v, want %v", got, items)
	}
	if rows, next := paginate([]int{}, page{limit: 10}, nil); len(rows) != 0 || next != "" {
		t.Fatalf("paginate(empty): got %v %q", rows, next)
	}
}
