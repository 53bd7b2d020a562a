package sim

import (
	"net/http"
)

type cardItem struct {
	CardID     string `json:"card_id"`
	CardNum    string `json:"card_num"`
	IsConsent  bool   `json:"is_consent"`
	CardName   string `json:"card_name"`
	CardMember string `json:"card_member"`
	CardType   string `json:"card_type"`
}

type cardListResponse struct {
	rsp
	SearchTimestamp string     `json:"search_timestamp"`
	NextPage        string     `json:"next_page"`
	CardCnt         int        `json:"card_cnt"`
	CardList        []cardItem `json:"card_list"`
}

// cardList is CD01; card_num is masked as providers send it.
func (s *Simulator) cardList(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "card")
	if err != nil {
		return nil, err
	}
	cards := s.customer(c.customer).assets[oi].cards
	items := make([]cardItem, 0, len(cards))
	for _, cd := range cards {
		items = append(items, cardItem{CardID: cd.id, CardNum: maskCard(cd.num), IsConsent: true, CardName: cd.name, CardMember: "1", CardType: cd.cardType})
	}
	items, next := paginate(items, p, nil)
	return cardListResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), NextPage: next, CardCnt: len(items), CardList: items}, nil
}

// findCard resolves the {card_id} path segment: 40402 when not the
// customer's card at org oi.
func (s *Simulator) findCard(r *http.Request, cu *customer, oi int) (int, error) {
	id := r.PathValue("card_id")
	for i, cd := range cu.assets[oi].cards {
		if cd.id == id {
			return i, nil
		}
	}
	return 0, errf(codeNotFound, "no such card")
}

type cardBasicResponse struct {
	rsp
	SearchTimestamp string `json:"search_timestamp"`
	CardType        string `json:"card_type"`
	IsTransPayable  bool   `json:"is_trans_payable"`
	IsCashCard      bool   `json:"is_cash_card"`
	LinkedBankCode  string `json:"linked_bank_code"`
	CardBrand       string `json:"card_brand"`
	AnnualFee       int64  `json:"annual_fee"`
	IssueDate       string `json:"issue_date"`
	AccountNum      string `json:"account_num"`
}

// cardBasic is CD02, with 2.0's settlement account_num.
func (s *Simulator) cardBasic(r *http.Request, c *call) (any, error) {
	oi, err := s.orgFor("card", r.URL.Query().Get("org_code"))
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ci, err := s.findCard(r, cu, oi)
	if err != nil {
		return nil, err
	}
	cd := cu.assets[oi].cards[ci]
	return cardBasicResponse{
		rsp: success(), SearchTimestamp: s.searchTimestamp(), CardType: cd.cardType, IsTransPayable: cd.cardType == "01",
		IsCashCard: cd.cardType == "02", LinkedBankCode: cd.linkedBank, CardBrand: cd.brand, AnnualFee: cd.annualFee,
		IssueDate: cd.issueDate, AccountNum: cd.account,
	}, nil
}

type approvalsResponse struct {
	rsp
	NextPage     string     `json:"next_page"`
	ApprovedCnt  int        `json:"approved_cnt"`
	ApprovedList []approval `json:"approved_list"`
}

// cardApprovals is CD03, newest first, paged by the query's limit and
// next_page.
func (s *Simulator) cardApprovals(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "card")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dr, err := parseDates(q.Get("from_date"), q.Get("to_date"))
	if err != nil {
		return nil, err
	}
	cu := s.customer(c.customer)
	ci, err := s.findCard(r, cu, oi)
	if err != nil {
		return nil, err
	}
	stamp := func(a approval) string { return a.ApprovedDtime }
	rows, next := paginate(filterDates(s.approvals(cu, oi, ci), dr, stamp), p, stamp)
	return approvalsResponse{rsp: success(), NextPage: next, ApprovedCnt: len(rows), ApprovedList: rows}, nil
}

type billsResponse struct {
	rsp
	NextPage string     `json:"next_page"`
	BillCnt  int        `json:"bill_cnt"`
	BillList []cardBill `json:"bill_list"`
}

// cardBills is CD21, filtered by from_month/to_month.
func (s *Simulator) cardBills(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "card")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	mr, err := parseMonths(q.Get("from_month"), q.Get("to_month"))
	if err != nil {
		return nil, err
	}
	rows := filterDates(s.bills(s.customer(c.customer), oi), mr, func(b cardBill) string { return b.ChargeMonth })
	rows, next := paginate(rows, p, nil)
	return billsResponse{rsp: success(), NextPage: next, BillCnt: len(rows), BillList: rows}, nil
}

// BigCard names the card with BigCardApprovals approvals: its institution
// and card_id.
func (s *Simulator) BigCard() (orgCode, cardID string) {
	oi, _ := s.org(BigCardOrg)
	return BigCardOrg, s.customer(BigCustomer).assets[oi].cards[0].id
}
