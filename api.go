package mdtap

import "strings"

// APIMatch is what the catalog knows of a request path.
type APIMatch struct {
	Sector Sector
	// API is the path template: the version prefix as the request had it
	// (/v1, /v2 or none), literal segments, and path parameters as {name}.
	// It is APIUnknown when no catalog entry matched.
	API string
	// Params holds the values of the template's path parameters by name.
	// They are payload: protect them like any other value.
	Params map[string]string
}

// APIUnknown is the api of a request the catalog does not know.
const APIUnknown = "unknown"

// The catalog lists resource templates relative to /v{n}/{industry}. The
// standard's 2.0 adds APIs whose paths are not verified; unknown paths are
// still captured, with api "unknown" and every path segment protected.
var (
	commonAPIs = []string{"apis", "consents"}
	irpAPIs    = []string{"irps", "irps/basic", "irps/detail", "irps/transactions"}

	industryAPIs = map[Sector][]string{
		SectorBank: {
			"accounts",
			"accounts/deposit/basic", "accounts/deposit/detail", "accounts/deposit/transactions",
			"accounts/invest/basic", "accounts/invest/detail", "accounts/invest/transactions",
			"accounts/loan/basic", "accounts/loan/detail", "accounts/loan/transactions",
		},
		SectorCard: {
			"cards", "cards/{card_id}",
			"cards/{card_id}/approval-domestic", "cards/{card_id}/approval-overseas",
			"cards/point", "cards/bills", "cards/bills/detail", "cards/payment",
			"loans", "loans/revolving", "loans/short-term", "loans/long-term",
		},
		SectorInvest: {
			"accounts", "accounts/basic", "accounts/transactions", "accounts/products",
		},
		SectorInsu: {
			"insurances", "insurances/basic", "insurances/contracts", "insurances/car",
			"insurances/payment", "insurances/transactions", "insurances/car/transactions",
			"loans", "loans/basic", "loans/detail", "loans/transactions",
		},
		SectorGinsu: {
			"insurances", "insurances/basic", "insurances/transactions",
		},
		SectorEfin: {
			"accounts", "accounts/balance", "accounts/charge",
			"accounts/prepaid-transactions", "accounts/transactions",
		},
		SectorTelecom: {
			"telecoms", "telecoms/bills", "telecoms/transactions", "telecoms/paid-transactions",
		},
		SectorCapital: {
			"loans", "loans/basic", "loans/detail", "loans/transactions",
			"loans/oplease/basic", "loans/oplease/transactions",
		},
	}

	// Templates of the non-industry APIs, from the path's first segment.
	rootAPIs = map[string]struct {
		sector    Sector
		templates []string
	}{
		"oauth": {SectorAuth, []string{"oauth/2.0/authorize", "oauth/2.0/token", "oauth/2.0/revoke"}},
		"ca":    {SectorCA, []string{"ca/sign_request", "ca/sign_result", "ca/sign_verification"}},
		"mgmts": {SectorMgmts, []string{
			"mgmts/oauth/2.0/token", "mgmts/orgs", "mgmts/services", "mgmts/ca_credentials",
			"mgmts/statistics", "mgmts/consents", "mgmts/status", "mgmts/req-statistics",
		}},
		// An early draft put the portal's token endpoint under /support.
		"support": {SectorMgmts, []string{"support/oauth/2.0/token"}},
	}
)

func init() {
	for _, s := range []Sector{SectorBank, SectorInvest, SectorInsu} {
		industryAPIs[s] = append(industryAPIs[s], irpAPIs...)
	}
	for _, s := range Sectors {
		if s.Industry() {
			industryAPIs[s] = append(industryAPIs[s], commonAPIs...)
		}
	}
}

// MatchAPI matches a decoded URL path against the MyData API catalog. It
// accepts /v1/…, /v2/… and unprefixed paths. A path whose industry segment is
// in the vocabulary keeps that sector even when the resource is unknown.
func MatchAPI(path string) APIMatch {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	version := ""
	if len(segs) > 0 && isVersion(segs[0]) {
		version, segs = segs[0], segs[1:]
	}
	if len(segs) == 0 || segs[0] == "" {
		return APIMatch{Sector: SectorUnknown, API: APIUnknown}
	}
	var (
		sector    Sector
		templates []string
		rest      = segs
		prefix    []string
	)
	if root, ok := rootAPIs[segs[0]]; ok {
		sector, templates = root.sector, root.templates
	} else if s := Sector(segs[0]); s.Industry() {
		sector, templates, rest, prefix = s, industryAPIs[s], segs[1:], segs[:1]
	} else {
		return APIMatch{Sector: SectorUnknown, API: APIUnknown}
	}
	m := APIMatch{Sector: sector, API: APIUnknown}
	best := -1
	for _, tpl := range templates {
		params, literals, ok := matchTemplate(tpl, rest)
		if ok && literals > best {
			best, m.Params = literals, params
			var b strings.Builder
			if version != "" {
				b.WriteString("/" + version)
			}
			for _, p := range prefix {
				b.WriteString("/" + p)
			}
			b.WriteString("/" + tpl)
			m.API = b.String()
		}
	}
	return m
}

// matchTemplate reports whether segs match tpl, with the parameters it binds
// and how many literal segments matched (literals win over parameters, so
// /cards/bills is not /cards/{card_id}).
func matchTemplate(tpl string, segs []string) (map[string]string, int, bool) {
	parts := strings.Split(tpl, "/")
	if len(parts) != len(segs) {
		return nil, 0, false
	}
	var params map[string]string
	literals := 0
	for i, p := range parts {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			if segs[i] == "" {
				return nil, 0, false
			}
			if params == nil {
				params = make(map[string]string, 1)
			}
			params[p[1:len(p)-1]] = segs[i]
			continue
		}
		if p != segs[i] {
			return nil, 0, false
		}
		literals++
	}
	return params, literals, true
}

func isVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
