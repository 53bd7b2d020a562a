package stream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the publisher's Prometheus metrics (docs/metrics.md). A nil
// *metrics counts nothing.
type metrics struct {
	errors   map[string]prometheus.Counter // by reason, made up front
	latency  prometheus.Histogram
	inFlight prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, inFlight func() float64) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mdtap_publish_errors_total",
		Help: "Records that could not be published to JetStream, by reason (unprotected, invalid_id, encode, too_large, stream_full, storage_full, no_stream, timeout, disconnected, closed, rejected, error).",
	}, []string{"reason"})
	m := &metrics{
		errors: make(map[string]prometheus.Counter, len(reasons)),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mdtap_publish_latency_seconds",
			Help: "Time from publishing a record to JetStream's acknowledgement that it is stored.",
			// 0.25 ms … 8 s: loopback acks take well under a millisecond,
			// a replicated stream a few, a struggling one seconds.
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mdtap_publish_in_flight",
			Help: "Records published and not yet acknowledged or failed.",
		}, inFlight),
	}
	for _, r := range reasons {
		m.errors[r] = errs.WithLabelValues(r) // every reason shows, at 0
	}
	for _, c := range []prometheus.Collector{errs, m.latency, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) fail(reason string) {
	if m == nil {
		return
	}
	c, ok := m.errors[reason]
	if !ok {
		c = m.errors[ReasonError]
	}
	c.Inc()
}

func (m *metrics) acked(d time.Duration) {
	if m != nil {
		m.latency.Observe(d.Seconds())
	}
}
