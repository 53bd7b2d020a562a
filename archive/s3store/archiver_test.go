package s3store_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
	"github.com/mdtap/mdtap/internal/s3test"
)

// The archiver into a real S3 server that goes away and comes back: while
// it is down nothing is acknowledged and errors are counted; once it is
// back every record is stored once, acknowledged once, and the chain
// verifies.
func TestArchiverRidesOutServerRestart(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "arch")
	store := open(t, srv, "arch", "mdtap")
	src := archivetest.NewSource()
	heads := archivetest.NewHeads()
	reg := prometheus.NewRegistry()
	a, err := archive.New(src, store, heads, archive.Options{
		Chain:           "archive.test",
		BatchMaxRecords: 50,
		BatchMaxAge:     50 * time.Millisecond,
		BackoffMin:      10 * time.Millisecond,
		BackoffMax:      200 * time.Millisecond,
		Logger:          zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Registerer:      reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)
	recs := archivetest.Records(300, t0, 2<<10, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (acked %d)", what, src.AckedCount())
			}
			time.Sleep(5 * time.Millisecond) // poll pacing
		}
	}

	src.Publish(recs[:100]...)
	waitFor("first records archived", func() bool { return src.AckedCount() == 100 })

	srv.Stop()
	src.Publish(recs[100:200]...)
	waitFor("store errors counted", func() bool { return gathered(t, reg, "mdtap_archive_errors_total", archive.ErrReasonStore) >= 2 })
	if n := src.AckedCount(); n != 100 {
		t.Fatalf("acked %d with the server down, want still 100", n)
	}

	srv.Restart()
	src.Publish(recs[200:]...)
	waitFor("all records archived", func() bool { return src.AckedCount() == 300 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for seq, n := range src.Acked() {
		if n != 1 {
			t.Errorf("message %d acknowledged %d times", seq, n)
		}
	}
	r, err := archive.VerifyChain(context.Background(), store, heads, "archive.test")
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	for _, p := range r.Problems {
		t.Errorf("VerifyChain: %s", p)
	}
	if r.Records != 300 {
		t.Errorf("chain holds %d records, want 300", r.Records)
	}
}

func gathered(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label && m.Counter != nil {
					return m.Counter.GetValue()
				}
			}
		}
	}
	return 0
}
