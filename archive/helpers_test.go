package archive_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

const testChain = "mdtap-archive.test-host"

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)

// env is one archiver's surroundings: fake source, clock and head store, a
// file store behind a fault injector, and a metrics registry.
type env struct {
	t     testing.TB
	clock *archivetest.Clock
	src   *archivetest.Source
	heads *archivetest.Heads
	fs    *archive.FileStore
	store *archivetest.FaultStore
	reg   *prometheus.Registry
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{
		t:     t,
		clock: archivetest.NewClock(t0),
		src:   archivetest.NewSource(),
		heads: archivetest.NewHeads(),
		fs:    newFileStore(t),
		reg:   prometheus.NewRegistry(),
	}
	e.src.Clock = e.clock
	e.store = archivetest.NewFaultStore(e.fs)
	return e
}

// options returns test options: the fake clock and sleep, a test logger,
// and batches that flush on the clock only.
func (e *env) options() archive.Options {
	return archive.Options{
		Chain:       testChain,
		BatchMaxAge: time.Hour,
		Now:         e.clock.Now,
		Sleep:       e.clock.Sleep,
		Logger:      zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.InfoLevel),
		Registerer:  e.reg,
	}
}

func (e *env) archiver(o archive.Options) *archive.Archiver {
	e.t.Helper()
	a, err := archive.New(e.src, e.store, e.heads, o)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	return a
}

// run runs a until done reports true (polled, with a deadline), then stops
// it and checks that Run returned nil.
func (e *env) run(a *archive.Archiver, done func() bool) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			cancel()
			<-errc
			e.t.Fatalf("archiver did not get there within 20s (acked %d, pending %d)", e.src.AckedCount(), e.src.Pending())
		}
		select {
		case err := <-errc:
			e.t.Fatalf("Run returned early: %v", err)
		case <-time.After(time.Millisecond): // poll pacing
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			e.t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		e.t.Fatal("Run did not return within 20s of its context ending")
	}
}

func (e *env) ackedAll(n int) func() bool {
	return func() bool { return e.src.AckedCount() >= n }
}

// manifests reads a chain's manifests in order.
func manifests(t *testing.T, s archive.Store, chain string) ([]*archive.Manifest, []string) {
	t.Helper()
	ctx := context.Background()
	refs, err := archive.ListManifests(ctx, s, chain)
	if err != nil {
		t.Fatalf("ListManifests: %v", err)
	}
	var ms []*archive.Manifest
	var hashes []string
	for _, r := range refs {
		m, h, err := archive.ReadManifest(ctx, s, r.Key)
		if err != nil {
			t.Fatalf("ReadManifest(%s): %v", r.Key, err)
		}
		ms = append(ms, m)
		hashes = append(hashes, h)
	}
	return ms, hashes
}

// readRecords reads every records object named by the chain's manifests,
// in chain order.
func readRecords(t *testing.T, s archive.Store, chain string) [][]byte {
	t.Helper()
	ms, _ := manifests(t, s, chain)
	var out [][]byte
	for _, m := range ms {
		if m.Kind != archive.KindRecords {
			continue
		}
		lines, err := archive.ReadObject(context.Background(), s, m.Object)
		if err != nil {
			t.Fatalf("ReadObject(%s): %v", m.Object, err)
		}
		out = append(out, lines...)
	}
	return out
}

// metric returns the value of a counter or gauge (with the given label
// value, if any) from reg; for a histogram, its sample count.
func metric(t *testing.T, reg *prometheus.Registry, name string, labelValue ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(labelValue) > 0 && !hasLabelValue(m, labelValue[0]) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labelValue)
	return 0
}

func hasLabelValue(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

var errBoom = errors.New("boom")
