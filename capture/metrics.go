package capture

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdtap/mdtap"
)

type metrics struct {
	total    *prometheus.CounterVec // sector, outcome
	degrade  *prometheus.CounterVec // reason
	drop     *prometheus.CounterVec // reason
	fullWait prometheus.Counter
	depthFn  func() float64
	lat      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_capture_total",
			Help: "Records leaving the capture queue by sector and outcome (published, degraded, failed).",
		}, []string{"sector", "outcome"}),
		degrade: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_capture_degraded_total",
			Help: "Records degraded to metadata, by reason (too_large, protect_error, spool_full).",
		}, []string{"reason"}),
		drop: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_capture_dropped_total",
			Help: "Records that could not be kept at all, by reason.",
		}, []string{"reason"}),
		fullWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mdtap_capture_queue_full_total",
			Help: "Times a finished exchange waited because the capture queue was full.",
		}),
		lat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mdtap_capture_latency_seconds",
			Help:    "From the end of an exchange to its record handed to the stream.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mdtap_capture_queue_depth",
		Help: "Records waiting in the capture queue.",
	}, func() float64 {
		if m.depthFn == nil {
			return 0
		}
		return m.depthFn()
	})
	for _, c := range []prometheus.Collector{m.total, m.degrade, m.drop, m.fullWait, m.lat, depth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) outcome(rec *mdtap.Record, outcome string) {
	if m != nil {
		m.total.WithLabelValues(string(rec.Sector), outcome).Inc()
	}
}

func (m *metrics) degraded(reason string) {
	if m != nil {
		m.degrade.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) dropped(reason string) {
	if m != nil {
		m.drop.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) full() {
	if m != nil {
		m.fullWait.Inc()
	}
}

func (m *metrics) latency(d time.Duration) {
	if m != nil {
		m.lat.Observe(d.Seconds())
	}
}
