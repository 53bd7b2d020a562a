package sim

import (
	"fmt"
	"net/http"
)

type insuItem struct {
	InsuNum    string `json:"insu_num"`
	IsConsent  bool   `json:"is_consent"`
	ProdName   string `json:"prod_name"`
	InsuType   string `json:"insu_type"`
	InsuStatus string `json:"insu_status"`
}

type insuListResponse struct {
	rsp
	SearchTimestamp string     `json:"search_timestamp"`
	NextPage        string     `json:"next_page"`
	InsuCnt         int        `json:"insu_cnt"`
	InsuList        []insuItem `json:"insu_list"`
}

// insuList is IS01.
func (s *Simulator) insuList(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "insu")
	if err != nil {
		return nil, err
	}
	pols := s.customer(c.customer).assets[oi].policies
	items := make([]insuItem, 0, len(pols))
	for _, pl := range pols {
		items = append(items, insuItem{InsuNum: pl.num, IsConsent: true, ProdName: pl.prodName, InsuType: pl.insuType, InsuStatus: pl.status})
	}
	items, next := paginate(items, p, nil)
	return insuListResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), NextPage: next, InsuCnt: len(items), InsuList: items}, nil
}

type insured struct {
	InsuredNo   string `json:"insured_no"`
	InsuredName string `json:"insured_name"`
}

type insuBasicResponse struct {
	rsp
	SearchTimestamp     string    `json:"search_timestamp"`
	IsRenewable         bool      `json:"is_renewable"`
	IssueDate           string    `json:"issue_date"`
	ExpDate             string    `json:"exp_date"`
	FaceAmt             int64     `json:"face_amt"`
	CurrencyCode        string    `json:"currency_code"`
	IsVariable          bool      `json:"is_variable"`
	IsUniversal         bool      `json:"is_universal"`
	PensionRcvStartDate string    `json:"pension_rcv_start_date,omitempty"`
	PensionRcvCycle     string    `json:"pension_rcv_cycle,omitempty"`
	IsLoanable          bool      `json:"is_loanable"`
	InsuredCount        int       `json:"insured_count"`
	InsuredList         []insured `json:"insured_list"`
}

// insuBasic is IS02; the insured are the customer and sometimes a relative.
func (s *Simulator) insuBasic(r *http.Request, c *call) (any, error) {
	b, oi, err := s.postQuery(r, "insu")
	if err != nil {
		return nil, err
	}
	if err := required("insu_num", b.InsuNum.String()); err != nil {
		return nil, err
	}
	for _, pl := range s.customer(c.customer).assets[oi].policies {
		if pl.num != b.InsuNum.String() {
			continue
		}
		out := insuBasicResponse{
			rsp: success(), SearchTimestamp: s.searchTimestamp(), IsRenewable: pl.renewable, IssueDate: pl.issueDate,
			ExpDate: pl.expDate, FaceAmt: pl.faceAmt, CurrencyCode: "KRW", IsVariable: pl.variable,
			IsUniversal: pl.universal, IsLoanable: pl.loanable, InsuredCount: len(pl.insured),
		}
		if pl.pension {
			out.PensionRcvStartDate, out.PensionRcvCycle = pl.expDate, "1M"
		}
		for i, name := range pl.insured {
			out.InsuredList = append(out.InsuredList, insured{InsuredNo: fmt.Sprintf("%02d", i+1), InsuredName: name})
		}
		return out, nil
	}
	return nil, errf(codeNotFound, "no such policy")
}
