package redact

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestUnclassifiedCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := NewUnclassifiedCounter(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := New(builtin(t), &fakeKeys{})
	r.OnUnclassified = c.Observe
	rec := record("GET", "/v1/bank/accounts", nil, "", "", "application/json", `{"account_list":[{"new_field":"SECRET-VALUE"},{"new_field":"x"}],"account_cnt":2}`)
	if _, err := r.Protect(rec); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.vec.WithLabelValues("new_field")); got != 2 {
		t.Fatalf("new_field count = %v, want 2", got)
	}
	for i := 0; i < MaxFieldLabels+10; i++ {
		c.Observe(fmt.Sprint("f", i))
	}
	if n := testutil.CollectAndCount(c.vec); n > MaxFieldLabels+1 {
		t.Fatalf("%d label values, want at most %d", n, MaxFieldLabels+1)
	}
	if testutil.ToFloat64(c.vec.WithLabelValues("_other")) == 0 {
		t.Fatal("names beyond the cap were not counted under _other")
	}
}
