package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdtap/mdtap"
)

// metrics are the proxy's Prometheus metrics (docs/metrics.md). A nil
// *metrics counts nothing, for tests that do not look.
type metrics struct {
	requests  *prometheus.CounterVec // sector, org, rsp_code, outcome
	provider  *prometheus.CounterVec // org, api, rsp_code
	truncated *prometheus.CounterVec // part
	echo      *prometheus.CounterVec // org, echoed
	refused   *prometheus.CounterVec // reason
	upstream  *prometheus.CounterVec // status
	limits    *prometheus.CounterVec // limit
	smuggle   *prometheus.CounterVec // kind
	conns     prometheus.Gauge

	orgs  *labelSet
	codes *labelSet
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_requests_total",
			Help: "Exchanges through the proxy by sector, provider org, MyData rsp_code (none when the body has none) and outcome (ok, provider_error, upstream_error, incomplete).",
		}, []string{"sector", "org", "rsp_code", "outcome"}),
		provider: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_provider_responses_total",
			Help: "Provider responses by org, API template and rsp_code: provider health.",
		}, []string{"org", "api", "rsp_code"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_capture_truncated_total",
			Help: "Bodies captured only up to --max-capture-bytes, by part (request, response).",
		}, []string{"part"}),
		echo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_tran_id_echo_total",
			Help: "Responses to requests with x-api-tran-id, by org and whether the provider echoed it (true, false) as the standard requires.",
		}, []string{"org", "echoed"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_refused_total",
			Help: "Requests the proxy refused before forwarding, by reason (host_not_allowed, not_a_proxy_request, …).",
		}, []string{"reason"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_upstream_errors_total",
			Help: "Upstream calls that failed before a response (refused, timed out, bad certificate), by the status the client got (502, 504).",
		}, []string{"status"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_limit_total",
			Help: "Times a proxy limit was hit, by limit (header_bytes, header_count, request_line, body_bytes, connections, client_header_timeout, client_tls_timeout, client_read_timeout, client_write_timeout, upstream_timeout, upstream_read_timeout).",
		}, []string{"limit"}),
		smuggle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_proxy_smuggling_total",
			Help: "Requests refused for ambiguous or malformed framing (cl_te, duplicate_content_length, bad_content_length, bad_transfer_encoding, obs_fold, bare_lf, bad_header, bad_chunk).",
		}, []string{"kind"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mdtap_proxy_client_connections",
			Help: "Open client connections (a MITM tunnel counts once), bounded by --max-conns.",
		}),
		orgs:  newLabelSet(1000),
		codes: newLabelSet(500),
	}
	for _, c := range []prometheus.Collector{m.requests, m.provider, m.truncated, m.echo, m.refused, m.upstream, m.limits, m.smuggle, m.conns} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) limit(name string) {
	if m != nil {
		m.limits.WithLabelValues(name).Inc()
	}
}

func (m *metrics) smuggling(kind string) {
	if m != nil {
		m.smuggle.WithLabelValues(kind).Inc()
	}
}

func (m *metrics) connOpened() {
	if m != nil {
		m.conns.Inc()
	}
}

func (m *metrics) connClosed() {
	if m != nil {
		m.conns.Dec()
	}
}

func (m *metrics) upstreamError(status int) {
	if m != nil {
		m.upstream.WithLabelValues(statusLabel(status)).Inc()
	}
}

// completed counts an exchange once its record knows sector, org and rsp_code.
func (m *metrics) completed(rec *mdtap.Record) {
	if m == nil {
		return
	}
	org := m.orgs.label(rec.OrgCode, validOrg)
	code, outcome := "none", "ok"
	switch {
	case rec.Response == nil:
		outcome = "upstream_error"
	case rec.Error != "":
		outcome = "incomplete"
	case rec.Response.Status >= 400:
		outcome = "provider_error"
	}
	if rec.Response != nil {
		if rec.Response.RspCode != "" {
			code = m.codes.label(rec.Response.RspCode, validRspCode)
		}
		m.provider.WithLabelValues(org, rec.API, code).Inc()
		if rec.TranIDEchoed != nil {
			echoed := "false"
			if *rec.TranIDEchoed {
				echoed = "true"
			}
			m.echo.WithLabelValues(org, echoed).Inc()
		}
		if rec.Response.Truncated {
			m.truncated.WithLabelValues("response").Inc()
		}
	}
	if rec.Request.Truncated {
		m.truncated.WithLabelValues("request").Inc()
	}
	m.requests.WithLabelValues(string(rec.Sector), org, code, outcome).Inc()
}

func statusLabel(s int) string {
	switch s {
	case 502:
		return "502"
	case 504:
		return "504"
	}
	return "other"
}

// labelSet keeps a label's distinct values bounded: values that fail valid,
// or arrive after max distinct ones, count as "other". Org codes and rsp
// codes come from traffic, and traffic must not be able to grow the metrics.
type labelSet struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func newLabelSet(max int) *labelSet { return &labelSet{max: max, seen: map[string]bool{}} }

func (l *labelSet) label(v string, valid func(string) bool) string {
	if v == "" {
		return "_"
	}
	if !valid(v) {
		return "other"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[v] {
		return v
	}
	if len(l.seen) >= l.max {
		return "other"
	}
	l.seen[v] = true
	return v
}

func validOrg(s string) bool { return len(s) <= 10 && alnum(s) }

func validRspCode(s string) bool { return len(s) == 5 && alnum(s) }

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
