package redact

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxFieldLabels bounds the distinct field names the unclassified-fields
// metric keeps as labels; further names count under "_other", so a body with
// endless invented field names cannot grow the metric without end.
const MaxFieldLabels = 500

// UnclassifiedCounter counts, by field name (never value), the values that
// only the default rule caught: mdtap_redact_unclassified_fields_total.
// Its Observe method is a Redactor.OnUnclassified callback.
type UnclassifiedCounter struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	seen map[string]bool
}

// NewUnclassifiedCounter registers the counter with reg.
func NewUnclassifiedCounter(reg prometheus.Registerer) (*UnclassifiedCounter, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mdtap_redact_unclassified_fields_total",
		Help: "Values that no policy rule named, so the default rule encrypted them, by field name. Classify them with a policy rule.",
	}, []string{"field"})
	if err := reg.Register(vec); err != nil {
		return nil, err
	}
	return &UnclassifiedCounter{vec: vec, seen: map[string]bool{}}, nil
}

// Observe counts one value of field.
func (c *UnclassifiedCounter) Observe(field string) {
	c.mu.Lock()
	if !c.seen[field] {
		if len(c.seen) >= MaxFieldLabels {
			field = "_other"
		}
		c.seen[field] = true
	}
	c.mu.Unlock()
	c.vec.WithLabelValues(field).Inc()
}
