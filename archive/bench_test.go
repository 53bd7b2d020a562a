package archive_test

import (
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// BenchmarkArchiverFile measures the archiver into the local-directory
// store (fsync per object and manifest) with 2 KiB records; see
// archive/s3store for the same into versitygw, and docs/archive.md for the
// numbers.
func BenchmarkArchiverFile(b *testing.B) {
	newStore := func(b *testing.B) archive.Store {
		s, err := archive.NewFileStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run(level.String(), func(b *testing.B) {
			archivetest.BenchArchiver(b, newStore, 2<<10, archive.Options{Compression: level})
		})
	}
}

// BenchmarkEncodeBatch isolates parsing and compression of one full batch.
func BenchmarkEncodeBatch(b *testing.B) {
	recs := archivetest.Records(4000, t0, 2<<10, nil, nil, nil)
	var raw int64
	for _, r := range recs {
		raw += int64(len(r) + 1)
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run(level.String(), func(b *testing.B) {
			b.SetBytes(raw)
			var out int
			for b.Loop() {
				out = archive.EncodeBatchForBench(recs, level)
			}
			b.ReportMetric(float64(raw)/float64(out), "ratio")
		})
	}
}
