package stream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/internal/natstest"
)

// Benchmarks publish a realistic ~2 KiB protected record to an embedded
// file-store JetStream server (R1) in the same process, as PERFORMANCE.md
// measured. allocs/op therefore include the server's own allocations;
// BenchmarkJetStreamPublishAsync is the baseline without mdtap, and
// BenchmarkEncode mdtap's own share.
//
//	go test -run '^$' -bench . -benchtime 200000x ./stream/

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = testID(i)
	}
	return ids
}

func benchPublisher(b *testing.B) (*Publisher, *atomic.Int64) {
	srv := natstest.Start(b)
	if _, err := Ensure(context.Background(), srv.JetStream(b), StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	p, err := NewPublisher(srv.Conn(b), PublisherOptions{
		Logger:    zerolog.Nop(),
		OnFailure: func(Message, error) { failed.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p, &failed
}

func benchDone(b *testing.B, p *Publisher, failed *atomic.Int64, start time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if n := failed.Load(); n != 0 {
		b.Fatalf("%d publishes failed", n)
	}
}

func BenchmarkPublish(b *testing.B) {
	p, failed := benchPublisher(b)
	rec := testRecord(0)
	data, _ := encode(rec)
	b.SetBytes(int64(len(data)))
	ids := benchIDs(b.N)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rec.ID = ids[i] // Publish keeps nothing of rec once it returns
		if err := p.Publish(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	benchDone(b, p, failed, start)
}

// Several capture workers publishing at once.
func BenchmarkPublishParallel(b *testing.B) {
	p, failed := benchPublisher(b)
	data, _ := encode(testRecord(0))
	b.SetBytes(int64(len(data)))
	ids := benchIDs(b.N)
	var next atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		rec := testRecord(0)
		for pb.Next() {
			rec.ID = ids[next.Add(1)-1]
			if err := p.Publish(ctx, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	benchDone(b, p, failed, start)
}

// The baseline: nats.go's async publish of the same bytes with a msg id,
// no mdtap in the way (what PERFORMANCE.md measured).
func BenchmarkJetStreamPublishAsync(b *testing.B) {
	srv := natstest.Start(b)
	js := srv.JetStream(b)
	if _, err := Ensure(context.Background(), js, StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	data, _ := encode(testRecord(0))
	b.SetBytes(int64(len(data)))
	ids := benchIDs(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		m := &nats.Msg{Subject: "mdtap.records.bank.TESTBK0001", Data: data, Header: nats.Header{jetstream.MsgIDHeader: {ids[i]}}}
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not come")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkEncode(b *testing.B) {
	rec := testRecord(0)
	data, _ := encode(rec)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(rec); err != nil {
			b.Fatal(err)
		}
	}
}
