package sim

import (
	"net/http"
)

type telecomListResponse struct {
	rsp
	SearchTimestamp string        `json:"search_timestamp"`
	NextPage        string        `json:"next_page"`
	TelecomCnt      int           `json:"telecom_cnt"`
	TelecomList     []telecomLine `json:"telecom_list"`
}

// telecomList is TC01; the mobile line's telecom_num is the customer's
// phone number.
func (s *Simulator) telecomList(r *http.Request, c *call) (any, error) {
	oi, p, err := s.listQuery(r, "telecom")
	if err != nil {
		return nil, err
	}
	items, next := paginate(s.customer(c.customer).assets[oi].lines, p, nil)
	return telecomListResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), NextPage: next, TelecomCnt: len(items), TelecomList: items}, nil
}
