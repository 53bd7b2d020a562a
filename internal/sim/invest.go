package sim

import (
	"net/http"
)

type investAccountItem struct {
	AccountNum    string `json:"account_num"`
	IsConsent     bool   `json:"is_consent"`
	AccountName   string `json:"account_name"`
	AccountType   string `json:"account_type"`
	AccountStatus string `json:"account_status"`
}

type investAccountsResponse struct {
	rsp
	SearchTimestamp string              `json:"search_timestamp"`
	NextPage        string              `json:"next_page"`
	AccountCnt      int                 `json:"account_cnt"`
	AccountList     []investAccountItem `json:"account_list"`
}

// investAccounts is the invest account list (spec 6.4.1).
func (s *Simulator) investAccounts(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "invest")
	if err != nil {
		return nil, err
	}
	accts := s.customer(c.customer).assets[oi].invest
	items := make([]investAccountItem, 0, len(accts))
	for _, a := range accts {
		items = append(items, investAccountItem{AccountNum: a.num, IsConsent: true, AccountName: a.name, AccountType: a.accountType, AccountStatus: a.status})
	}
	items, next := paginate(items, p, nil)
	return investAccountsResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), NextPage: next, AccountCnt: len(items), AccountList: items}, nil
}

// investTransactions is the invest transaction list (spec 6.4.3).
func (s *Simulator) investTransactions(r *http.Request, c *call) (any, error) {
	b, oi, dr, p, err := s.transQuery(r, "invest")
	if err != nil {
		return nil, err
	}
	if err := required("account_num", b.AccountNum.String()); err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	for ai, a := range cu.assets[oi].invest {
		if a.num == b.AccountNum.String() {
			return transPage(s.investTxs(cu, oi, ai), dr, p, func(t investTx) string { return t.TransDtime }), nil
		}
	}
	return nil, errf(codeNotFound, "no such account")
}
