package archivetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
)

// BenchRecords is how many records one benchmark iteration archives.
const BenchRecords = 100_000

// BenchArchiver measures an archiver's throughput into store: each
// iteration publishes BenchRecords records of recordSize bytes (distinct
// records, one hour, four sectors, a hundred orgs and ten thousand subjects)
// to an in-memory source and runs the archiver until all are acknowledged.
// It reports records/s, MB/s of records (uncompressed) and the compression
// ratio. o.Chain is set per iteration, and BatchMaxAge, if zero, to 200ms:
// the last, partial batch of an iteration would otherwise wait out the 5 s
// default. o's other fields are used as given.
func BenchArchiver(b *testing.B, newStore func(b *testing.B) archive.Store, recordSize int, o archive.Options) {
	const distinct = 20_000
	start := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)
	sectors := []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard, mdtap.SectorInvest, mdtap.SectorInsu}
	var orgs, subjects []string
	for i := range 100 {
		orgs = append(orgs, fmt.Sprintf("TESTORG%03d", i))
	}
	for i := range 10_000 {
		subjects = append(subjects, Subject(i))
	}
	pool := make([][]byte, distinct)
	for i := range pool {
		pool[i] = Record(Spec{
			Time:    start.Add(time.Duration(i) * 150 * time.Millisecond),
			Sector:  sectors[i%len(sectors)],
			Org:     orgs[i%len(orgs)],
			Subject: subjects[(i*7)%len(subjects)],
			Size:    recordSize,
		}, uint64(i+1))
	}
	var raw int64
	for i := range BenchRecords {
		raw += int64(len(pool[i%distinct]) + 1)
	}
	b.SetBytes(raw)
	b.ReportAllocs()

	var compressed float64
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		store := newStore(b)
		src := NewSource()
		reg := prometheus.NewRegistry()
		opts := o
		opts.Chain = fmt.Sprintf("bench-%d", i)
		opts.Registerer = reg
		if opts.BatchMaxAge == 0 {
			opts.BatchMaxAge = 200 * time.Millisecond
		}
		a, err := archive.New(src, store, NewHeads(), opts)
		if err != nil {
			b.Fatal(err)
		}
		recs := make([][]byte, BenchRecords)
		for j := range recs {
			recs[j] = pool[j%distinct]
		}
		src.Publish(recs...)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		t0 := time.Now()
		go func() { errc <- a.Run(ctx) }()
		for src.AckedCount() < BenchRecords {
			time.Sleep(200 * time.Microsecond) // poll pacing
		}
		elapsed += time.Since(t0)
		b.StopTimer()
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		compressed += counter(b, reg, "mdtap_archive_bytes_total")
		if errs := counter(b, reg, "mdtap_archive_errors_total"); errs > 0 {
			b.Fatalf("%v archive errors", errs)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(BenchRecords*n/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(raw)*n/compressed, "ratio")
	b.ReportMetric(compressed/n/BenchRecords, "B/record")
}

func counter(b *testing.B, reg *prometheus.Registry, name string) float64 {
	fams, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += counterValue(m)
		}
	}
	return sum
}

func counterValue(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return 0
}
