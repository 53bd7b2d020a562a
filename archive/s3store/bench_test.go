package s3store_test

import (
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
	"github.com/mdtap/mdtap/internal/s3test"
)

// BenchmarkArchiverS3 measures the archiver into a real versitygw (posix
// backend, on this machine's disk, sharing its CPUs) with 2 KiB records.
func BenchmarkArchiverS3(b *testing.B) {
	srv := s3test.Start(b)
	n := 0
	newStore := func(b *testing.B) archive.Store {
		n++
		bucket := fmt.Sprintf("bench-%d", n)
		srv.CreateBucket(b, bucket)
		return open(b, srv, bucket, "archive")
	}
	for _, c := range []struct {
		name    string
		level   zstd.EncoderLevel
		uploads int
	}{
		{"fastest", zstd.SpeedFastest, 4},
		{"default", zstd.SpeedDefault, 4},
		{"fastest-1upload", zstd.SpeedFastest, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			archivetest.BenchArchiver(b, newStore, 2<<10, archive.Options{Compression: c.level, Uploads: c.uploads})
		})
	}
}
