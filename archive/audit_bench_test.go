package archive_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
	"github.com/mdtap/mdtap/archive/s3store"
	"github.com/mdtap/mdtap/internal/s3test"
)

// The audit benchmark needs an archive of a million records, which takes a
// while to make (about a minute on two cores), so it is made only by
// BenchmarkAudit itself, never by a plain `go test`:
//
//	go test -run '^$' -bench Audit -benchtime 5x ./archive/
//
// MDTAP_BENCH_AUDIT_DIR keeps the archive in that directory and reuses it
// on later runs (it is about 0.4 GB); without it, it goes to a temporary
// directory removed at the end.
const (
	benchAuditRecords  = 1_000_000
	benchAuditSubjects = 100_000 // customers: ten exchanges each on the day
	benchAuditOrgs     = 120
	benchAuditVersion  = "v1" // bump when the generated archive changes
)

var benchAuditDay = time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)

// benchSector draws a sector with the rough weights of MyData traffic.
func benchSector(r *rand.Rand) mdtap.Sector {
	switch n := r.IntN(100); {
	case n < 35:
		return mdtap.SectorBank
	case n < 55:
		return mdtap.SectorCard
	case n < 65:
		return mdtap.SectorInvest
	case n < 73:
		return mdtap.SectorInsu
	case n < 78:
		return mdtap.SectorEfin
	case n < 81:
		return mdtap.SectorTelecom
	case n < 93:
		return mdtap.SectorAuth
	case n < 96:
		return mdtap.SectorCA
	}
	return mdtap.SectorMgmts
}

// benchAuditArchive returns a file store holding the benchmark archive, and
// the subject index of customer 42 with how many of its records it holds.
func benchAuditArchive(b *testing.B) (*archive.FileStore, string, int) {
	b.Helper()
	dir := os.Getenv("MDTAP_BENCH_AUDIT_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		dir = filepath.Join(dir, "audit-"+benchAuditVersion)
	}
	store, err := archive.NewFileStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	subject := archivetest.Subject(42)
	marker := filepath.Join(dir, "complete")
	if n, err := os.ReadFile(marker); err == nil {
		var count int
		fmt.Sscan(string(n), &count)
		return store, subject, count
	}

	// Records in time order over the day (with some jitter), as archivers
	// see them, in chunks generated on every core.
	start := time.Now()
	src := archivetest.NewSource()
	a, err := archive.New(src, store, archivetest.NewHeads(), archive.Options{
		Chain: "bench-archiver", BatchMaxAge: 500 * time.Millisecond, Logger: zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	const chunk = 50_000
	step := 24 * time.Hour / benchAuditRecords
	count := 0
	for base := 0; base < benchAuditRecords; base += chunk {
		recs := make([][]byte, chunk)
		subjects := make([]int, chunk)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < chunk; i += workers {
					n := base + i
					r := rand.New(rand.NewPCG(uint64(n), 7))
					subjects[i] = r.IntN(benchAuditSubjects)
					spec := archivetest.Spec{
						Time:    benchAuditDay.Add(time.Duration(n)*step + time.Duration(r.IntN(2000))*time.Millisecond),
						Sector:  benchSector(r),
						Org:     fmt.Sprintf("TESTORG%03d", r.IntN(benchAuditOrgs)),
						Subject: archivetest.Subject(subjects[i]),
						Size:    1024 + r.IntN(1024),
					}
					if spec.Time.After(benchAuditDay.Add(24*time.Hour - time.Millisecond)) {
						spec.Time = benchAuditDay.Add(24*time.Hour - time.Millisecond)
					}
					if r.IntN(20) == 0 {
						spec.Subject = "" // no x-mdtap-subject header
						subjects[i] = -1
					}
					recs[i] = archivetest.Record(spec, uint64(n+1))
				}
			})
		}
		wg.Wait()
		for _, s := range subjects {
			if s == 42 {
				count++
			}
		}
		src.Publish(recs...)
		for src.AckedCount() < base+chunk {
			select {
			case err := <-done:
				b.Fatalf("archiver stopped: %v", err)
			case <-time.After(10 * time.Millisecond): // poll pacing
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(marker, []byte(fmt.Sprint(count)), 0o640); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d records in %s into %s", benchAuditRecords, time.Since(start).Round(time.Second), dir)
	return store, subject, count
}

// noManifests hides every manifest, so a query reads every object whole:
// the full scan that manifest pruning avoids.
type noManifests struct{ archive.Store }

func (s noManifests) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, archive.ManifestsDir+"/") {
		return nil, archive.ErrNotFound
	}
	return s.Store.Get(ctx, key)
}

// BenchmarkAudit measures the audit query over a day of a million-record
// archive (1–2 KiB protected records, 9 sectors, 120 orgs, 100,000
// customers; see benchAuditArchive):
//
//   - scan: a query that reads every record of the day and matches none (a
//     tran id that is not there): the scan rate, in records/s.
//   - all: every record of the day, de-duplicated, sorted and emitted.
//   - subject: one customer's records over the day, with manifest pruning.
//   - subject-full-scan: the same query with the manifests hidden, so every
//     object is read.
func BenchmarkAudit(b *testing.B) {
	store, subject, want := benchAuditArchive(b)
	day := archive.Filter{From: benchAuditDay, To: benchAuditDay.Add(24 * time.Hour)}
	run := func(b *testing.B, s archive.Store, f archive.Filter, wantMatched int) {
		var st archive.QueryStats
		var err error
		for b.Loop() {
			st, err = archive.Query(context.Background(), s, f, archive.QueryOptions{}, func([]byte) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
		}
		if wantMatched >= 0 && st.Matched != wantMatched {
			b.Fatalf("matched %d records, want %d", st.Matched, wantMatched)
		}
		if len(st.Unmanifested) > 0 && s == archive.Store(store) || len(st.Altered)+len(st.Corrupt)+st.Unreadable > 0 {
			b.Fatalf("archive trouble: %+v", st)
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(float64(st.Records)/sec, "records/s")
		b.ReportMetric(float64(st.RawBytes)/sec/1e6, "MB/s")
		b.ReportMetric(float64(st.Scanned), "objects-read")
		b.ReportMetric(float64(st.Objects), "objects")
		b.ReportMetric(float64(st.Matched), "matched")
	}
	b.Run("scan", func(b *testing.B) {
		f := day
		f.TranIDs = []string{"NOT-THERE"}
		run(b, store, f, 0)
	})
	b.Run("all", func(b *testing.B) {
		run(b, store, day, benchAuditRecords)
	})
	b.Run("subject", func(b *testing.B) {
		f := day
		f.Subjects = []string{subject, archivetest.Subject(benchAuditSubjects + 1)} // as under two PRF keys
		run(b, store, f, want)
	})
	b.Run("subject-full-scan", func(b *testing.B) {
		f := day
		f.Subjects = []string{subject, archivetest.Subject(benchAuditSubjects + 1)}
		run(b, noManifests{store}, f, want)
	})
	b.Run("verify", func(b *testing.B) {
		var r archive.VerifyAllReport
		for b.Loop() {
			var err error
			if r, err = archive.VerifyAll(context.Background(), store, archive.VerifyOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if !r.OK() {
			b.Fatalf("verify: %d problems", r.Problems())
		}
		var recs uint64
		for _, c := range r.Chains {
			recs += c.Records
		}
		b.ReportMetric(float64(recs)/(b.Elapsed().Seconds()/float64(b.N)), "records/s")
	})
}

// BenchmarkAuditS3 runs the one-customer query and the scan against the
// same archive in versitygw (on the same machine): every manifest and
// object is one HTTP request.
func BenchmarkAuditS3(b *testing.B) {
	files, subject, want := benchAuditArchive(b)
	srv := s3test.Start(b)
	srv.CreateBucket(b, "audit")
	u, err := mdtap.ParseStoreURL(srv.StoreURL("audit", "prod"))
	if err != nil {
		b.Fatal(err)
	}
	store, err := s3store.New(u, s3store.Options{AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()})
	if err != nil {
		b.Fatal(err)
	}
	// Copy the archive over, a few objects at a time.
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var copyErr error
	var mu sync.Mutex
	for _, dir := range []string{archive.RecordsDir + "/", archive.ManifestsDir + "/"} {
		for info, err := range archive.Walk(ctx, files, dir, "") {
			if err != nil {
				b.Fatal(err)
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				data, err := files.Get(ctx, info.Key)
				if err == nil {
					err = store.Put(ctx, info.Key, data)
				}
				if err != nil {
					mu.Lock()
					copyErr = err
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if copyErr != nil {
		b.Fatal(copyErr)
	}
	b.Logf("copied the archive to versitygw in %s", time.Since(start).Round(time.Second))
	day := archive.Filter{From: benchAuditDay, To: benchAuditDay.Add(24 * time.Hour)}
	run := func(b *testing.B, f archive.Filter, wantMatched int) {
		var st archive.QueryStats
		for b.Loop() {
			var err error
			if st, err = archive.Query(ctx, store, f, archive.QueryOptions{}, func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
		if st.Matched != wantMatched || len(st.Unmanifested)+len(st.Altered) > 0 {
			b.Fatalf("stats %+v, want %d matched", st, wantMatched)
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(float64(st.Records)/sec, "records/s")
		b.ReportMetric(float64(st.Scanned), "objects-read")
	}
	b.Run("subject", func(b *testing.B) {
		f := day
		f.Subjects = []string{subject, archivetest.Subject(benchAuditSubjects + 1)}
		run(b, f, want)
	})
	b.Run("scan", func(b *testing.B) {
		f := day
		f.TranIDs = []string{"NOT-THERE"}
		run(b, f, 0)
	})
}
