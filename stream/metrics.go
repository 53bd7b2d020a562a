package stream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdtap/mdtap"
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
		Help: "Records that could not be published to JetStream, by reason (unprotected, invalid_id, encode, too_large, stream_full, storage_full, no_stream, timeout, disconnected, closed, rejected, spool_full, error).",
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

// Reason labels of mdtap_spool_dropped_total: records not kept at all.
const (
	dropSpoolFull  = "spool_full"  // not even the metadata-only form fitted
	dropWriteError = "write_error" // the disk refused the write
	dropTorn       = "torn"        // cut off at recovery: a write a crash tore
	dropClosed     = "closed"      // handed to a closed spool
)

// spoolMetrics are the spool's Prometheus metrics (docs/metrics.md). A nil
// *spoolMetrics counts nothing.
type spoolMetrics struct {
	appends    *prometheus.CounterVec // reason
	drained    prometheus.Counter
	deadletter *prometheus.CounterVec // reason
	dropped    *prometheus.CounterVec // reason
	degraded   *prometheus.CounterVec // reason
	sync       prometheus.Histogram
}

func newSpoolMetrics(reg prometheus.Registerer, s *Spool) (*spoolMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &spoolMetrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_spool_appends_total",
			Help: "Records written to the spool, by why they could not be published (disconnected, stream_full, storage_full, no_stream, timeout, closed, flush, error, too_large).",
		}, []string{"reason"}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mdtap_spool_drained_total",
			Help: "Spooled records JetStream acknowledged on replay.",
		}),
		deadletter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_spool_deadletter_total",
			Help: "Records (or damaged spool bytes) moved to the dead-letter directory, by reason (too_large, rejected, corrupt).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_spool_dropped_total",
			Help: "Records the spool could not keep at all, by reason (spool_full, write_error, torn, closed).",
		}, []string{"reason"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_spool_degraded_total",
			Help: "Records the publisher degraded to metadata itself, by reason (spool_full, too_large).",
		}, []string{"reason"}),
		sync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mdtap_spool_fsync_seconds",
			Help: "Duration of each spool fsync (all files written since the last one).",
			// 50 µs … 3.3 s: tmpfs, SSD, network disks, a struggling disk.
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17),
		}),
	}
	for _, r := range []string{ReasonDisconnected, ReasonStreamFull, ReasonStorageFull, ReasonNoStream,
		ReasonTimeout, ReasonClosed, reasonFlush} {
		m.appends.WithLabelValues(r)
	}
	m.deadletter.WithLabelValues(ReasonTooLarge)
	m.deadletter.WithLabelValues(ReasonRejected)
	m.deadletter.WithLabelValues(reasonCorrupt)
	for _, r := range []string{dropSpoolFull, dropWriteError, dropTorn, dropClosed} {
		m.dropped.WithLabelValues(r)
	}
	m.degraded.WithLabelValues(mdtap.DegradeSpoolFull)
	stat := func(f func(SpoolStats) float64) func() float64 {
		return func() float64 { return f(s.Stats()) }
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mdtap_spool_bytes",
			Help: "Bytes of spool segments on disk (and room taken by records being written).",
		}, stat(func(st SpoolStats) float64 { return float64(st.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mdtap_spool_records",
			Help: "Spooled records not yet acknowledged by JetStream.",
		}, stat(func(st SpoolStats) float64 { return float64(st.Records) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mdtap_spool_accepting",
			Help: "1 while the spool takes full records, 0 once its regular part is full (until it is back under 90%); a fail-closed proxy refuses exchanges at 0.",
		}, func() float64 {
			if s.Accepting() {
				return 1
			}
			return 0
		}),
	}
	for _, c := range append([]prometheus.Collector{m.appends, m.drained, m.deadletter, m.dropped, m.degraded, m.sync}, gauges...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *spoolMetrics) appended(reason string) {
	if m != nil {
		m.appends.WithLabelValues(reason).Inc()
	}
}

func (m *spoolMetrics) drain(n int) {
	if m != nil && n > 0 {
		m.drained.Add(float64(n))
	}
}

func (m *spoolMetrics) deadLettered(reason string) {
	if m != nil {
		m.deadletter.WithLabelValues(reason).Inc()
	}
}

func (m *spoolMetrics) drop(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

func (m *spoolMetrics) degrade(reason string) {
	if m != nil {
		m.degraded.WithLabelValues(reason).Inc()
	}
}

func (m *spoolMetrics) synced(d time.Duration) {
	if m != nil {
		m.sync.Observe(d.Seconds())
	}
}
