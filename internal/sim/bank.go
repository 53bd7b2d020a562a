package sim

import (
	"net/http"
)

type bankAccountItem struct {
	AccountNum       string `json:"account_num"`
	IsConsent        bool   `json:"is_consent"`
	Seqno            string `json:"seqno"`
	IsForeignDeposit bool   `json:"is_foreign_deposit"`
	ProdName         string `json:"prod_name"`
	IsMinus          bool   `json:"is_minus"`
	AccountType      string `json:"account_type"`
	AccountStatus    string `json:"account_status"`
}

type bankAccountsResponse struct {
	rsp
	SearchTimestamp string            `json:"search_timestamp"`
	RegDate         string            `json:"reg_date"`
	NextPage        string            `json:"next_page"`
	AccountCnt      int               `json:"account_cnt"`
	AccountList     []bankAccountItem `json:"account_list"`
}

// bankAccounts is BA01: deposit and loan accounts in one list.
func (s *Simulator) bankAccounts(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "bank")
	if err != nil {
		return nil, err
	}
	a := s.customer(c.customer).assets[oi]
	items := make([]bankAccountItem, 0, len(a.bank))
	for _, acc := range a.bank {
		items = append(items, bankAccountItem{
			AccountNum: acc.num, IsConsent: true, Seqno: acc.seqno, ProdName: acc.prodName,
			IsMinus: acc.accountType == "3100", AccountType: acc.accountType, AccountStatus: acc.status,
		})
	}
	items, next := paginate(items, p, nil)
	return bankAccountsResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), RegDate: a.regDate, NextPage: next, AccountCnt: len(items), AccountList: items}, nil
}

// findBankAccount looks up account_num (and seqno when sent) among the
// customer's deposit or loan accounts at org oi: 40402 when not there.
func (s *Simulator) findBankAccount(c *customer, oi int, b postReq, loan bool) (int, error) {
	if err := required("account_num", b.AccountNum.String()); err != nil {
		return 0, err
	}
	for i, acc := range c.assets[oi].bank {
		if acc.num == b.AccountNum.String() && acc.loan == loan && (b.Seqno == "" || b.Seqno.String() == acc.seqno) {
			return i, nil
		}
	}
	return 0, errf(codeNotFound, "no such account")
}

// savingMethods maps account_type to saving_method (codes unverified).
var savingMethods = map[string]string{"1001": "03", "1002": "01", "1003": "02"}

type depositBasicResponse struct {
	rsp
	SearchTimestamp  string `json:"search_timestamp"`
	SavingMethod     string `json:"saving_method"`
	HolderName       string `json:"holder_name"`
	IssueDate        string `json:"issue_date"`
	ExpDate          string `json:"exp_date,omitempty"`
	CurrencyCode     string `json:"currency_code"`
	CommitAmt        int64  `json:"commit_amt"`
	MonthlyPaidInAmt int64  `json:"monthly_paid_in_amt"`
}

// depositBasic is BA02.
func (s *Simulator) depositBasic(r *http.Request, c *call) (any, error) {
	b, oi, err := s.postQuery(r, "bank")
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ai, err := s.findBankAccount(cu, oi, b, false)
	if err != nil {
		return nil, err
	}
	acc := cu.assets[oi].bank[ai]
	return depositBasicResponse{
		rsp: success(), SearchTimestamp: s.searchTimestamp(), SavingMethod: savingMethods[acc.accountType],
		HolderName: cu.name, IssueDate: acc.issueDate, ExpDate: acc.expDate, CurrencyCode: "KRW",
		CommitAmt: acc.commitAmt, MonthlyPaidInAmt: acc.commitAmt,
	}, nil
}

type depositDetailItem struct {
	CurrencyCode    string  `json:"currency_code"`
	BalanceAmt      int64   `json:"balance_amt"`
	WithdrawableAmt int64   `json:"withdrawable_amt"`
	OfferedRate     float64 `json:"offered_rate"`
	LastPaidInCnt   int     `json:"last_paid_in_cnt"`
}

type depositDetailResponse struct {
	rsp
	SearchTimestamp string              `json:"search_timestamp"`
	DetailCnt       int                 `json:"detail_cnt"`
	DetailList      []depositDetailItem `json:"detail_list"`
}

// depositDetail is BA03; the balance is that after the last transaction.
func (s *Simulator) depositDetail(r *http.Request, c *call) (any, error) {
	b, oi, err := s.postQuery(r, "bank")
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ai, err := s.findBankAccount(cu, oi, b, false)
	if err != nil {
		return nil, err
	}
	acc := cu.assets[oi].bank[ai]
	bal := s.balanceOf(cu, oi, ai)
	item := depositDetailItem{CurrencyCode: "KRW", BalanceAmt: bal, WithdrawableAmt: bal, OfferedRate: acc.rate}
	if acc.accountType != "1001" {
		item.WithdrawableAmt = 0 // term deposits cannot be drawn before maturity
	}
	if acc.accountType == "1003" {
		item.LastPaidInCnt = acc.nTrans
	}
	return depositDetailResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), DetailCnt: 1, DetailList: []depositDetailItem{item}}, nil
}

// depositTransactions is BA04, newest first, paged by the body's limit and
// next_page.
func (s *Simulator) depositTransactions(r *http.Request, c *call) (any, error) {
	b, oi, dr, p, err := s.transQuery(r, "bank")
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ai, err := s.findBankAccount(cu, oi, b, false)
	if err != nil {
		return nil, err
	}
	return transPage(s.depositTxs(cu, oi, ai), dr, p, func(t depositTx) string { return t.TransDtime }), nil
}

type loanBasicResponse struct {
	rsp
	SearchTimestamp string  `json:"search_timestamp"`
	HolderName      string  `json:"holder_name"`
	IssueDate       string  `json:"issue_date"`
	ExpDate         string  `json:"exp_date"`
	LastOfferedRate float64 `json:"last_offered_rate"`
	RepayDate       string  `json:"repay_date"`
	RepayMethod     string  `json:"repay_method"`
	RepayOrgCode    string  `json:"repay_org_code"`
	RepayAccountNum string  `json:"repay_account_num"`
}

// loanBasic is BA21. Loans are repaid from the customer's first deposit
// account at the same bank.
func (s *Simulator) loanBasic(r *http.Request, c *call) (any, error) {
	b, oi, err := s.postQuery(r, "bank")
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ai, err := s.findBankAccount(cu, oi, b, true)
	if err != nil {
		return nil, err
	}
	acc := cu.assets[oi].bank[ai]
	return loanBasicResponse{
		rsp: success(), SearchTimestamp: s.searchTimestamp(), HolderName: cu.name, IssueDate: acc.issueDate,
		ExpDate: acc.expDate, LastOfferedRate: acc.rate, RepayDate: acc.repayDate, RepayMethod: acc.repayMethod,
		RepayOrgCode: s.orgs[oi].Code, RepayAccountNum: acc.repayAccount,
	}, nil
}

// BigDepositAccount names the account with BigDepositTransactions rows:
// its institution, account_num and seqno.
func (s *Simulator) BigDepositAccount() (orgCode, accountNum, seqno string) {
	oi, _ := s.org(BigDepositOrg)
	acc := s.customer(BigCustomer).assets[oi].bank[0]
	return BigDepositOrg, acc.num, acc.seqno
}
