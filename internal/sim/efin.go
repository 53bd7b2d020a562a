package sim

import (
	"net/http"
)

type efinAccountItem struct {
	SubKey        string    `json:"sub_key"`
	AccountID     string    `json:"account_id"`
	IsConsent     bool      `json:"is_consent"`
	AccountStatus string    `json:"account_status"`
	IsPayReg      bool      `json:"is_pay_reg"`
	PayCnt        int       `json:"pay_cnt"`
	PayList       []efinPay `json:"pay_list"`
}

type efinAccountsResponse struct {
	rsp
	SearchTimestamp string            `json:"search_timestamp"`
	RegDate         string            `json:"reg_date"`
	NextPage        string            `json:"next_page"`
	Name            string            `json:"name"`
	AccountCnt      int               `json:"account_cnt"`
	AccountList     []efinAccountItem `json:"account_list"`
}

// efinAccounts is EF01; name is the customer's name, as in samples.
func (s *Simulator) efinAccounts(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "efin")
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	a := cu.assets[oi]
	items := make([]efinAccountItem, 0, len(a.efin.accounts))
	for _, acc := range a.efin.accounts {
		items = append(items, efinAccountItem{
			SubKey: acc.subKey, AccountID: acc.accountID, IsConsent: true, AccountStatus: acc.status,
			IsPayReg: len(acc.pays) > 0, PayCnt: len(acc.pays), PayList: acc.pays,
		})
	}
	items, next := paginate(items, p, nil)
	return efinAccountsResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), RegDate: a.regDate, NextPage: next, Name: cu.name, AccountCnt: len(items), AccountList: items}, nil
}

// efinTransactions is EF05, selected by sub_key.
func (s *Simulator) efinTransactions(r *http.Request, c *call) (any, error) {
	b, oi, dr, p, err := s.transQuery(r, "efin")
	if err != nil {
		return nil, err
	}
	if err := required("sub_key", b.SubKey.String()); err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	for ai, acc := range cu.assets[oi].efin.accounts {
		if acc.subKey == b.SubKey.String() {
			return transPage(s.efinTxs(cu, oi, ai), dr, p, func(t efinTx) string { return t.TransDtime }), nil
		}
	}
	return nil, errf(codeNotFound, "no such sub_key")
}
