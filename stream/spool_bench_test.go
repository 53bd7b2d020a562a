package stream

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/internal/natstest"
)

// Spool benchmarks, on the records of bench_test.go (~2 KiB encoded):
//
//	go test -run '^$' -bench 'Spool|Drain' -benchtime 100000x ./stream/
//
// BenchmarkSpoolAppend: many goroutines each appending and waiting until the
// record is kept (group commit shares the fsyncs). BenchmarkPublishToSpool:
// the publisher's path while NATS is away — Publish hands the record to the
// spool and returns, Flush waits for the last fsync. BenchmarkDrain: a spool
// holding b.N records replayed into JetStream.

var policies = []FsyncPolicy{FsyncBatch, FsyncAlways, FsyncNone}

func benchSpool(b *testing.B, policy FsyncPolicy) *Spool {
	s, err := OpenSpool(SpoolOptions{
		Dir: filepath.Join(b.TempDir(), "spool"), MaxBytes: 64 << 30, Fsync: policy, Logger: zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkSpoolAppend(b *testing.B) {
	data, _ := encode(testRecord(0))
	for _, policy := range policies {
		b.Run(string(policy), func(b *testing.B) {
			s := benchSpool(b, policy)
			ids := benchIDs(b.N)
			var next atomic.Int64
			b.SetBytes(int64(len(data)))
			b.SetParallelism(32) // 64 appenders on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := Message{ID: ids[next.Add(1)-1], Subject: "mdtap.records.bank.TESTBK0001", Data: data}
					if err := s.appendSync(m, false, ReasonDisconnected); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}

func BenchmarkPublishToSpool(b *testing.B) {
	for _, policy := range policies {
		b.Run(string(policy), func(b *testing.B) {
			srv := natstest.Start(b)
			nc := srv.Conn(b)
			srv.Stop()
			for nc.IsConnected() {
				time.Sleep(time.Millisecond) // poll pacing
			}
			s := benchSpool(b, policy)
			p, err := NewPublisher(nc, PublisherOptions{Spool: s, Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			rec := testRecord(0)
			data, _ := encode(rec)
			ids := benchIDs(b.N)
			ctx := context.Background()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				rec.ID = ids[i]
				if err := p.Publish(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			if got := s.Stats().Records; got != int64(b.N) {
				b.Fatalf("spool holds %d records, want %d", got, b.N)
			}
		})
	}
}

func BenchmarkDrain(b *testing.B) {
	srv := natstest.Start(b)
	js := srv.JetStream(b)
	if _, err := Ensure(context.Background(), js, StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	s := benchSpool(b, FsyncNone)
	data, _ := encode(testRecord(0))
	ids := benchIDs(b.N)
	done := make(chan error, b.N)
	for i := range b.N {
		m := Message{ID: ids[i], Subject: "mdtap.records.bank.TESTBK0001", Data: data}
		if err := s.put(&job{kind: jobRecord, m: m, reserve: true, reason: ReasonDisconnected, done: func(err error) { done <- err }}); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	p, err := NewPublisher(srv.Conn(b), PublisherOptions{Spool: s, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	deadline := time.Now().Add(5 * time.Minute)
	for s.Stats().Records > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d records left in the spool", s.Stats().Records)
		}
		time.Sleep(time.Millisecond) // poll pacing
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	str, err := js.Stream(context.Background(), DefaultStreamName)
	if err != nil {
		b.Fatal(err)
	}
	if got := str.CachedInfo().State.Msgs; got != uint64(b.N) {
		b.Fatalf("stream holds %d records, want %d", got, b.N)
	}
}
