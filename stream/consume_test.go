package stream_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/stream"
)

func TestConsumerFetchAckLag(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Conn(t)
	ctx := context.Background()
	if err := stream.EnsureOn(ctx, nc, stream.DefaultStreamConfig()); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		if err := nc.Publish("mdtap.records.bank.TESTBK0001", []byte(`{"n":`+string(rune('0'+i%10))+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	c, err := stream.OpenConsumer(ctx, nc, "", "", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []*stream.Delivery
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 25 && time.Now().Before(deadline) {
		ds, err := c.Fetch(ctx, 10, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds...)
	}
	if len(got) != 25 || got[0].Seq() != 1 || got[24].Seq() != 25 {
		t.Fatalf("fetched %d", len(got))
	}
	if lag, err := c.Lag(ctx); err != nil || lag != 25 {
		t.Fatalf("lag before ack = %d, %v; want 25 (delivered, unacknowledged)", lag, err)
	}
	if err := c.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		if lag, _ := c.Lag(ctx); lag == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	js := ns.JetStream(t)
	s, _ := js.Stream(ctx, stream.DefaultStreamName)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages left after ack; the work queue should be empty", info.State.Msgs)
	}
}

// A pull bounded by bytes returns no more than the budget allows, and never
// less than one record: the budget does not go below the server's max
// payload, so a record larger than it cannot be stranded.
func TestConsumerFetchBytes(t *testing.T) {
	ns := natstest.Start(t, natstest.WithMaxPayload(16<<10))
	nc := ns.Conn(t)
	ctx := context.Background()
	if err := stream.EnsureOn(ctx, nc, stream.DefaultStreamConfig()); err != nil {
		t.Fatal(err)
	}
	rec := bytes.Repeat([]byte("x"), 10<<10)
	for range 20 {
		if err := nc.Publish("mdtap.records.bank.TESTBK0001", rec); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	c, err := stream.OpenConsumer(ctx, nc, "", "", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 64 KiB holds six 10 KiB records with their subjects and headers.
	ds, err := c.FetchBytes(ctx, 100, 64<<10, 2*time.Second)
	if err != nil || len(ds) == 0 || len(ds) > 6 {
		t.Fatalf("FetchBytes(64KiB) = %d records, %v; want 1 to 6", len(ds), err)
	}
	// A budget below one record is raised to the max payload: still a record.
	ds, err = c.FetchBytes(ctx, 100, 1, 2*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("FetchBytes(1) = %d records, %v; want 1", len(ds), err)
	}
	// By count only, as before.
	ds, err = c.Fetch(ctx, 100, 2*time.Second)
	if err != nil || len(ds) == 0 {
		t.Fatalf("Fetch = %d records, %v", len(ds), err)
	}
}

func TestKVCompareAndSet(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Conn(t)
	ctx := context.Background()
	kv, err := stream.OpenKV(ctx, nc, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get(ctx, "chain.a"); !errors.Is(err, stream.ErrKeyNotFound) {
		t.Fatalf("Get of a new key = %v, want ErrKeyNotFound", err)
	}
	r1, err := kv.Put(ctx, "chain.a", []byte("h1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "chain.a", []byte("fork"), 0); !errors.Is(err, stream.ErrRevisionConflict) {
		t.Fatalf("second create = %v, want ErrRevisionConflict", err)
	}
	r2, err := kv.Put(ctx, "chain.a", []byte("h2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "chain.a", []byte("stale"), r1); !errors.Is(err, stream.ErrRevisionConflict) {
		t.Fatalf("update at a stale revision = %v, want ErrRevisionConflict", err)
	}
	v, rev, err := kv.Get(ctx, "chain.a")
	if err != nil || string(v) != "h2" || rev != r2 {
		t.Fatalf("Get = %q %d %v", v, rev, err)
	}
	ns.Restart()
	if v, _, err := kv.Get(ctx, "chain.a"); err != nil || string(v) != "h2" {
		t.Fatalf("after restart Get = %q %v", v, err)
	}
}
