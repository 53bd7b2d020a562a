package sim

import (
	"net/http"
)

// orgItem is one org_list entry of /mgmts/orgs (SPEC §2.4).
type orgItem struct {
	OpType       string `json:"op_type"`
	OrgCode      string `json:"org_code"`
	OrgType      string `json:"org_type"`
	OrgName      string `json:"org_name"`
	OrgRegno     string `json:"org_regno"`
	CorpRegno    string `json:"corp_regno"`
	Address      string `json:"address"`
	Domain       string `json:"domain"`
	RelayOrgCode string `json:"relay_org_code"`
	Industry     string `json:"industry"`
	AuthType     string `json:"auth_type"`
}

type orgsResponse struct {
	rsp
	SearchTimestamp string    `json:"search_timestamp"`
	OrgCnt          int       `json:"org_cnt"`
	OrgList         []orgItem `json:"org_list"`
}

// mgmtsOrgs lists the simulated institutions. Every domain is the host the
// request reached, because that is where all of them are served.
func (s *Simulator) mgmtsOrgs(r *http.Request, _ *call) (any, error) {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	domain := scheme + "://" + r.Host
	out := orgsResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), OrgList: []orgItem{}}
	for _, o := range s.orgs {
		out.OrgList = append(out.OrgList, orgItem{
			OpType: "I", OrgCode: o.Code, OrgType: o.Type, OrgName: o.Name, OrgRegno: o.RegNo, CorpRegno: o.CorpRegNo,
			Address: o.Address, Domain: domain, RelayOrgCode: o.RelayOrgCode, Industry: o.Industry, AuthType: o.AuthType,
		})
	}
	out.OrgCnt = len(out.OrgList)
	return out, nil
}

type clientIP struct {
	ClientIP string `json:"client_ip"`
}

type serviceItem struct {
	ServiceName  string     `json:"service_name"`
	OpType       string     `json:"op_type"`
	ClientID     string     `json:"client_id"`
	ClientSecret string     `json:"client_secret"`
	RedirectURI  string     `json:"redirect_uri"`
	ClientIPCnt  int        `json:"client_ip_cnt"`
	ClientIPList []clientIP `json:"client_ip_list"`
}

type serviceOrg struct {
	OrgCode     string        `json:"org_code"`
	ServiceCnt  int           `json:"service_cnt"`
	ServiceList []serviceItem `json:"service_list"`
}

type servicesResponse struct {
	rsp
	SearchTimestamp string       `json:"search_timestamp"`
	OrgCnt          int          `json:"org_cnt"`
	OrgList         []serviceOrg `json:"org_list"`
}

func ipList(ips []string) []clientIP {
	out := make([]clientIP, len(ips))
	for i, ip := range ips {
		out[i] = clientIP{ClientIP: ip}
	}
	return out
}

// mgmtsServices lists the operators' registered services with their
// client secrets: the response richest in secrets (SPEC §2.4, §4.1).
func (s *Simulator) mgmtsServices(_ *http.Request, _ *call) (any, error) {
	out := servicesResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), OrgList: []serviceOrg{}}
	for _, op := range s.operators {
		so := serviceOrg{OrgCode: op.orgCode}
		for _, sv := range op.services {
			so.ServiceList = append(so.ServiceList, serviceItem{
				ServiceName: sv.name, OpType: "I", ClientID: sv.clientID, ClientSecret: sv.clientSecret,
				RedirectURI: sv.redirectURI, ClientIPCnt: len(sv.ips), ClientIPList: ipList(sv.ips),
			})
		}
		so.ServiceCnt = len(so.ServiceList)
		out.OrgList = append(out.OrgList, so)
	}
	out.OrgCnt = len(out.OrgList)
	return out, nil
}

type caCredItem struct {
	OrgCode      string     `json:"org_code"`
	OpType       string     `json:"op_type"`
	ClientID     string     `json:"client_id"`
	ClientSecret string     `json:"client_secret"`
	ClientIPCnt  int        `json:"client_ip_cnt"`
	ClientIPList []clientIP `json:"client_ip_list"`
}

type caCredsResponse struct {
	rsp
	SearchTimestamp string       `json:"search_timestamp"`
	OrgCnt          int          `json:"org_cnt"`
	OrgList         []caCredItem `json:"org_list"`
}

// mgmtsCACredentials is 통합인증 자격증명 조회: the CAs' credentials.
func (s *Simulator) mgmtsCACredentials(_ *http.Request, _ *call) (any, error) {
	out := caCredsResponse{rsp: success(), SearchTimestamp: s.searchTimestamp(), OrgList: []caCredItem{}}
	for _, op := range s.caCreds {
		for _, sv := range op.services {
			out.OrgList = append(out.OrgList, caCredItem{
				OrgCode: op.orgCode, OpType: "I", ClientID: sv.clientID, ClientSecret: sv.clientSecret,
				ClientIPCnt: len(sv.ips), ClientIPList: ipList(sv.ips),
			})
		}
	}
	out.OrgCnt = len(out.OrgList)
	return out, nil
}
