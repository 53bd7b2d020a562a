package sim

import (
	"net/http"
)

// orgFor resolves the org_code of a sector request: 40001 when absent,
// 40303 when no such institution or one of another sector (SPEC §5: the
// institution code could not be verified).
func (s *Simulator) orgFor(industry, code string) (int, error) {
	if code == "" {
		return 0, errf(codeBadParam, "org_code required")
	}
	oi, o := s.org(code)
	if o == nil || o.Industry != industry {
		return 0, errf(codeUnknownOrg, "org_code not a "+industry+" institution")
	}
	return oi, nil
}

// listQuery reads the query of a GET list API: org_code, limit, next_page.
func (s *Simulator) listQuery(r *http.Request, industry string) (int, page, error) {
	q := r.URL.Query()
	oi, err := s.orgFor(industry, q.Get("org_code"))
	if err != nil {
		return 0, page{}, err
	}
	p, err := parsePage(q.Get("limit"), q.Get("next_page"))
	if err != nil {
		return 0, page{}, err
	}
	return oi, p, nil
}

// postQuery decodes a resource POST body and resolves its org_code.
func (s *Simulator) postQuery(r *http.Request, industry string) (postReq, int, error) {
	var b postReq
	if err := decodeBody(r, &b); err != nil {
		return b, 0, err
	}
	oi, err := s.orgFor(industry, b.OrgCode.String())
	return b, oi, err
}

// transQuery adds the transaction-list parameters to postQuery: the date
// window and the page, both in the body (SPEC §1.5).
func (s *Simulator) transQuery(r *http.Request, industry string) (postReq, int, dateRange, page, error) {
	b, oi, err := s.postQuery(r, industry)
	if err != nil {
		return b, 0, dateRange{}, page{}, err
	}
	dr, err := parseDates(b.FromDate.String(), b.ToDate.String())
	if err != nil {
		return b, 0, dateRange{}, page{}, err
	}
	p, err := parsePage(b.Limit.String(), b.NextPage.String())
	if err != nil {
		return b, 0, dateRange{}, page{}, err
	}
	return b, oi, dr, p, nil
}

// transResponse is the shape of every transaction list: count of this
// page, the rows, and the key of the next page ("" on the last).
type transResponse[T any] struct {
	rsp
	NextPage  string `json:"next_page"`
	TransCnt  int    `json:"trans_cnt"`
	TransList []T    `json:"trans_list"`
}

// filterDates keeps the rows whose 14-digit time falls in dr.
func filterDates[T any](rows []T, dr dateRange, stamp func(T) string) []T {
	if dr.from == "" && dr.to == "" {
		return rows
	}
	out := make([]T, 0, len(rows))
	for _, row := range rows {
		if dr.contains(stamp(row)) {
			out = append(out, row)
		}
	}
	return out
}

func transPage[T any](rows []T, dr dateRange, p page, stamp func(T) string) transResponse[T] {
	rows, next := paginate(filterDates(rows, dr, stamp), p, stamp)
	return transResponse[T]{rsp: success(), NextPage: next, TransCnt: len(rows), TransList: rows}
}
