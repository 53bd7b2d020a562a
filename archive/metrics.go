package archive

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the reason label of mdtap_archive_errors_total.
const (
	// ErrReasonInvalidRecord: a message was not a protected record and went
	// to a dead-letter object (one count per message).
	ErrReasonInvalidRecord = "invalid_record"
	// ErrReasonStore: an object-store request failed; the batch is retried.
	ErrReasonStore = "store"
	// ErrReasonChainConflict: another writer took the chain position this
	// archiver was about to write (two archivers share a chain id); it moves on.
	ErrReasonChainConflict = "chain_conflict"
	// ErrReasonChain: the chain read back at start is broken (a gap, a
	// manifest that does not link, a tail missing from the store).
	ErrReasonChain = "chain"
	// ErrReasonHead: the chain head could not be read or stored in the
	// head store.
	ErrReasonHead = "head"
	// ErrReasonFetch: fetching messages failed.
	ErrReasonFetch = "fetch"
	// ErrReasonAck: acknowledging stored messages failed; they will be
	// delivered and archived again.
	ErrReasonAck = "ack"
	// ErrReasonLag: the source could not report its lag.
	ErrReasonLag = "lag"
)

var errReasons = []string{
	ErrReasonInvalidRecord, ErrReasonStore, ErrReasonChainConflict, ErrReasonChain,
	ErrReasonHead, ErrReasonFetch, ErrReasonAck, ErrReasonLag,
}

// metrics are the archiver's Prometheus metrics; docs/metrics.md lists them.
type metrics struct {
	records prometheus.Counter
	objects prometheus.Counter
	bytes   prometheus.Counter
	batch   prometheus.Histogram
	lag     prometheus.Gauge
	errors  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mdtap_archive_records_total",
			Help: "Records archived: stored in an object with its manifest, then acknowledged.",
		}),
		objects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mdtap_archive_objects_total",
			Help: "Objects written (records and dead-letter objects), each with its manifest.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mdtap_archive_bytes_total",
			Help: "Compressed bytes of the objects written.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mdtap_archive_batch_seconds",
			Help:    "Time to write a batch: encoding, objects, manifests and chain head, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms … 41 s
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mdtap_archive_lag_records",
			Help: "Records waiting in the consumer: not yet delivered, or delivered and not yet acknowledged.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdtap_archive_errors_total",
			Help: "Archiver errors by reason (invalid_record, store, chain_conflict, chain, head, fetch, ack, lag).",
		}, []string{"reason"}),
	}
	if reg != nil {
		var err error
		if m.records, err = register(reg, m.records); err != nil {
			return nil, err
		}
		if m.objects, err = register(reg, m.objects); err != nil {
			return nil, err
		}
		if m.bytes, err = register(reg, m.bytes); err != nil {
			return nil, err
		}
		if m.batch, err = register(reg, m.batch); err != nil {
			return nil, err
		}
		if m.lag, err = register(reg, m.lag); err != nil {
			return nil, err
		}
		if m.errors, err = register(reg, m.errors); err != nil {
			return nil, err
		}
	}
	for _, r := range errReasons {
		m.errors.WithLabelValues(r) // export zeros, so rate() works from the start
	}
	return m, nil
}

// register registers c, or returns the collector registered before under
// the same name: two archivers in one process add to the same series.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
