package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults taken by a zero Options field.
const (
	// DefaultSeed is the data seed used when Options.Seed is zero.
	DefaultSeed int64 = 1
	// DefaultCustomers is the customer count used when Options.Customers is
	// zero or negative.
	DefaultCustomers = 1000
	// DefaultSlowDelay is how long "x-sim-fault: slow" holds a request when
	// Options.SlowDelay is zero.
	DefaultSlowDelay = 2 * time.Second
)

// maxBodyBytes bounds request bodies; the largest legitimate one, an
// integrated-auth token request with its consent documents, is a few KiB.
const maxBodyBytes = 1 << 20

// Options configures a Simulator. The zero value is usable.
type Options struct {
	// Seed selects the generated data set; zero means DefaultSeed.
	Seed int64
	// Customers is the number of simulated customers; zero or negative means
	// DefaultCustomers.
	Customers int
	// SlowDelay is the delay of "x-sim-fault: slow"; zero means
	// DefaultSlowDelay.
	SlowDelay time.Duration
	// Logger receives one debug event per request. The zero Logger is
	// disabled. Payload values are never logged.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now. Its KST day at New fixes the
	// "data day" that all generated dates lie before, so a fixed clock gives
	// fully reproducible data.
	Now func() time.Time
}

// Simulator is a simulated MyData information provider. It is safe for
// concurrent use; all state (issued codes, tokens, signature requests) is in
// memory and lost with the value.
type Simulator struct {
	seed      int64
	nCust     int
	slowDelay time.Duration
	log       zerolog.Logger
	now       func() time.Time
	// anchor is midnight KST of the data day: every generated date is before
	// it, so data never lies in the future and does not move while running.
	anchor time.Time

	orgs      []Org
	orgByCode map[string]int
	operators []operator
	caCreds   []operator
	merchants []merchant

	slots   []custSlot
	ciOnce  sync.Once
	ciIndex map[string]int

	auth *authStore

	handler http.Handler
}

// New returns a Simulator for opts. It does no data generation up front, so
// it is cheap whatever opts.Customers is.
func New(opts Options) *Simulator {
	if opts.Seed == 0 {
		opts.Seed = DefaultSeed
	}
	if opts.Customers <= 0 {
		opts.Customers = DefaultCustomers
	}
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = DefaultSlowDelay
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Simulator{
		seed:      opts.Seed,
		nCust:     opts.Customers,
		slowDelay: opts.SlowDelay,
		log:       opts.Logger,
		now:       opts.Now,
		slots:     make([]custSlot, opts.Customers),
		auth:      newAuthStore(),
	}
	t := opts.Now().In(kst)
	s.anchor = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, kst)
	s.orgs = defaultOrgs()
	s.orgByCode = make(map[string]int, len(s.orgs))
	for i, o := range s.orgs {
		s.orgByCode[o.Code] = i
	}
	s.operators, s.caCreds = s.genOperators()
	s.merchants = s.genMerchants()
	s.handler = s.routes()
	return s
}

// Handler returns the simulator's HTTP handler. It can be served over plain
// HTTP (httptest.NewServer) as well as TLS; only the reset fault needs a
// hijackable HTTP/1.1 connection to send a real RST.
func (s *Simulator) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Customers returns the number of simulated customers.
func (s *Simulator) Customers() int { return s.nCust }

// authKind says which token a route needs.
type authKind int

const (
	authNone   authKind = iota // OAuth endpoints: no bearer token
	authUser                   // resource APIs: a customer token with the route's scope
	authCA                     // /ca/*: a client_credentials token with scope "ca"
	authManage                 // /mgmts/*: a client_credentials token with scope "manage"
)

// call is what the auth layer hands a resource handler: the customer the
// bearer token is bound to.
type call struct {
	customer int
}

// apiFunc answers a JSON API: a value to encode with HTTP 200, or an error
// (an *apiError selects the rsp_code; anything else is a 50001).
type apiFunc func(r *http.Request, c *call) (any, error)

type route struct {
	path    string // ServeMux pattern without method; /v1/ routes are mirrored under /v2/
	methods []string
	auth    authKind
	scope   string // user scope the route needs (authUser only)
	api     apiFunc
	raw     http.HandlerFunc // OAuth endpoints, which answer in OAuth's own shape
}

func (s *Simulator) routeTable() []route {
	get, post, both := []string{http.MethodGet}, []string{http.MethodPost}, []string{http.MethodGet, http.MethodPost}
	return []route{
		{path: "/oauth/2.0/authorize", methods: get, raw: s.authorize},
		{path: "/oauth/2.0/token", methods: both, raw: s.token},
		{path: "/oauth/2.0/revoke", methods: both, raw: s.revoke},
		// The portal token endpoint as S4 and S8 spell it.
		{path: "/support/oauth/2.0/token", methods: both, raw: s.token},
		{path: "/v2/mgmts/oauth/2.0/token", methods: both, raw: s.token},

		{path: "/ca/sign_request", methods: post, auth: authCA, api: s.signRequest},
		{path: "/ca/sign_result", methods: post, auth: authCA, api: s.signResult},

		{path: "/mgmts/orgs", methods: get, auth: authManage, api: s.mgmtsOrgs},
		{path: "/mgmts/services", methods: both, auth: authManage, api: s.mgmtsServices},
		{path: "/mgmts/ca_credentials", methods: get, auth: authManage, api: s.mgmtsCACredentials},

		{path: "/v1/bank/accounts", methods: get, auth: authUser, scope: "bank.list", api: s.bankAccounts},
		{path: "/v1/bank/accounts/deposit/basic", methods: post, auth: authUser, scope: "bank.deposit", api: s.depositBasic},
		{path: "/v1/bank/accounts/deposit/detail", methods: post, auth: authUser, scope: "bank.deposit", api: s.depositDetail},
		{path: "/v1/bank/accounts/deposit/transactions", methods: post, auth: authUser, scope: "bank.deposit", api: s.depositTransactions},
		{path: "/v1/bank/accounts/loan/basic", methods: post, auth: authUser, scope: "bank.loan", api: s.loanBasic},

		{path: "/v1/card/cards", methods: get, auth: authUser, scope: "card.list", api: s.cardList},
		{path: "/v1/card/cards/bills", methods: get, auth: authUser, scope: "card.bill", api: s.cardBills},
		{path: "/v1/card/cards/{card_id}", methods: get, auth: authUser, scope: "card.card", api: s.cardBasic},
		{path: "/v1/card/cards/{card_id}/approval-domestic", methods: get, auth: authUser, scope: "card.card", api: s.cardApprovals},

		{path: "/v1/invest/accounts", methods: get, auth: authUser, scope: "invest.list", api: s.investAccounts},
		{path: "/v1/invest/accounts/transactions", methods: post, auth: authUser, scope: "invest.account", api: s.investTransactions},

		{path: "/v1/insu/insurances", methods: get, auth: authUser, scope: "insu.list", api: s.insuList},
		{path: "/v1/insu/insurances/basic", methods: post, auth: authUser, scope: "insu.insurance", api: s.insuBasic},

		{path: "/v1/efin/accounts", methods: get, auth: authUser, scope: "efin.list", api: s.efinAccounts},
		{path: "/v1/efin/accounts/transactions", methods: post, auth: authUser, scope: "efin.paid", api: s.efinTransactions},

		{path: "/v1/telecom/telecoms", methods: get, auth: authUser, scope: "telecom.list", api: s.telecomList},
	}
}

// routes builds the mux. Patterns carry no method so that a wrong method
// reaches our handler and gets a JSON 40301 instead of ServeMux's plain 405.
func (s *Simulator) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		h := s.wrap(rt)
		mux.Handle(rt.path, h)
		if strings.HasPrefix(rt.path, "/v1/") {
			mux.Handle("/v2/"+strings.TrimPrefix(rt.path, "/v1/"), h)
		}
		if strings.HasPrefix(rt.path, "/mgmts/") || strings.HasPrefix(rt.path, "/ca/") {
			mux.Handle("/v2"+rt.path, h)
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errf(codeNoEndpoint, "no such API"))
	})
	return mux
}

// wrap applies the method check and the bearer check of rt.
func (s *Simulator) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		st.route = rt.path
		if !methodAllowed(r.Method, rt.methods) {
			w.Header().Set("Allow", strings.Join(rt.methods, ", "))
			s.writeError(w, r, errf(codeInvalidCall, "method not allowed"))
			return
		}
		if rt.raw != nil {
			rt.raw(w, r)
			return
		}
		c, err := s.authenticate(r, rt)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		v, err := rt.api(r, c)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, codeOK, v)
	})
}

func methodAllowed(m string, allowed []string) bool {
	for _, a := range allowed {
		if m == a {
			return true
		}
	}
	return false
}

// authenticate applies SPEC §1.3 and §5: both headers present (40002), a
// bearer token we issued (40101), not revoked (40103), of the right kind and
// scope (40104).
func (s *Simulator) authenticate(r *http.Request, rt route) (*call, error) {
	if r.Header.Get("x-api-tran-id") == "" {
		return nil, errf(codeMissingHeader, "x-api-tran-id header missing")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errf(codeMissingHeader, "Authorization header missing")
	}
	scheme, value, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(value) == "" {
		return nil, errf(codeBadToken, "not a bearer token")
	}
	tok, err := s.auth.lookupAccess(strings.TrimSpace(value), s.now())
	if err != nil {
		return nil, err
	}
	switch rt.auth {
	case authCA:
		if !tok.g.hasScope(scopeCA) {
			return nil, errf(codeNoAPIPermission, "token lacks scope ca")
		}
	case authManage:
		if !tok.g.hasScope(scopeManage) {
			return nil, errf(codeNoAPIPermission, "token lacks scope manage")
		}
	case authUser:
		if tok.g.customer < 0 || !tok.g.hasScope(rt.scope) {
			return nil, errf(codeNoAPIPermission, "token lacks scope "+rt.scope)
		}
	}
	return &call{customer: tok.g.customer}, nil
}

// reqState is per-request bookkeeping shared by the layers: the fault to
// inject and what to log.
type reqState struct {
	tranID  string
	fault   fault
	route   string
	status  int
	rspCode string
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		return st
	}
	// Only reached when a handler is called without serveHTTP (never in this
	// package); a throwaway state keeps callers nil-free.
	return &reqState{}
}

func (s *Simulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &reqState{tranID: r.Header.Get("x-api-tran-id"), route: "(none)"}
	// Echo first, so that every answer, errors and faults included, carries it.
	if st.tranID != "" {
		w.Header().Set("x-api-tran-id", st.tranID)
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { // the reset fault's way out; net/http handles it
				panic(v)
			}
			s.log.Error().Str("route", st.route).Str("panic", fmt.Sprint(v)).Msg("sim handler panic")
			s.writeError(w, r, errf(codeSystem, "internal error"))
		}
		s.log.Debug().Str("method", r.Method).Str("route", st.route).Int("status", st.status).
			Str("rsp_code", st.rspCode).Str("tran_id", st.tranID).Dur("took", time.Since(start)).Msg("sim request")
	}()

	f, err := parseFault(r.Header.Get(FaultHeader))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st.fault = f
	if f.slow {
		t := time.NewTimer(s.slowDelay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			// The client is gone. Abort rather than return: a handler that
			// returns has answered 200 with an empty body, and a client whose
			// read side is still open would take that as a success.
			st.status = 499
			panic(http.ErrAbortHandler)
		}
	}
	switch {
	case f.reset:
		st.status = 0
		resetConnection(w)
		return
	case f.status == http.StatusTooManyRequests:
		s.writeError(w, r, errf(codeRateLimited, "injected rate limit"))
		return
	case f.status == http.StatusInternalServerError:
		s.writeError(w, r, errf(codeSystem, "injected failure"))
		return
	}
	s.handler.ServeHTTP(w, r)
}

// apiError is a SPEC §5 error: rsp_code and a Korean rsp_msg. Detail names
// the offending parameter, never its value.
type apiError struct {
	code   string
	detail string
}

func (e *apiError) Error() string { return "rsp_code " + e.code + ": " + e.detail }

func errf(code, detail string) error { return &apiError{code: code, detail: detail} }

// Response codes used here (SPEC §5).
const (
	codeOK              = "00000"
	codeBadParam        = "40001"
	codeMissingHeader   = "40002"
	codeBadToken        = "40101"
	codeRevokedToken    = "40103"
	codeNoAPIPermission = "40104"
	codeInvalidCall     = "40301"
	codeUnknownOrg      = "40303"
	codeNoEndpoint      = "40401"
	codeNotFound        = "40402"
	codeRateLimited     = "42901"
	codeSystem          = "50001"
)

var rspMsgs = map[string]string{
	codeOK:              "성공",
	codeBadParam:        "요청 파라미터 오류",
	codeMissingHeader:   "필수 헤더 누락",
	codeBadToken:        "유효하지 않은 접근토큰",
	codeRevokedToken:    "폐기된 접근토큰",
	codeNoAPIPermission: "API 접근 권한 없음",
	codeInvalidCall:     "유효하지 않은 API 호출",
	codeUnknownOrg:      "기관코드 확인 불가",
	codeNoEndpoint:      "존재하지 않는 API",
	codeNotFound:        "요청한 정보가 존재하지 않음",
	codeRateLimited:     "정보제공 요청한도 초과",
	codeSystem:          "시스템 장애",
}

// rsp is the common head of every resource response (SPEC §1.4).
type rsp struct {
	RspCode string `json:"rsp_code"`
	RspMsg  string `json:"rsp_msg"`
}

func success() rsp { return rsp{RspCode: codeOK, RspMsg: rspMsgs[codeOK]} }

func (s *Simulator) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error().Str("route", stateOf(r).route).Err(err).Msg("sim handler failed")
		ae = &apiError{code: codeSystem, detail: "internal error"}
	}
	msg := rspMsgs[ae.code]
	if ae.detail != "" {
		msg += ": " + ae.detail
	}
	s.writeJSON(w, r, statusOf(ae.code), ae.code, rsp{RspCode: ae.code, RspMsg: msg})
}

// statusOf maps a rsp_code to the HTTP status of its first three digits.
func statusOf(code string) int {
	if len(code) < 3 {
		return http.StatusInternalServerError
	}
	n := 0
	for _, c := range code[:3] {
		if c < '0' || c > '9' {
			return http.StatusInternalServerError
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 {
		return http.StatusOK
	}
	return n
}

// searchTimestamp is the N(14) reference time answered on list APIs.
func (s *Simulator) searchTimestamp() string { return s.now().In(kst).Format(dtimeLayout) }
