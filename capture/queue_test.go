package capture

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mdtap/mdtap"
)

type fakeProtector struct{ fail bool }

func (f fakeProtector) Protect(raw *mdtap.Record) (*mdtap.Record, error) {
	if f.fail {
		return nil, errors.New("keys unavailable")
	}
	out := *raw
	out.Policy = "test@1"
	return &out, nil
}

func (f fakeProtector) Degrade(raw, prot *mdtap.Record, reason string) (*mdtap.Record, error) {
	base := prot
	if base == nil {
		c := *raw
		c.Policy = "test@1"
		base = &c
	}
	out := *base
	out.Degrade(reason)
	return &out, nil
}

type fakePublisher struct {
	mu       sync.Mutex
	got      []*mdtap.Record
	tooLarge func(*mdtap.Record) bool
	block    chan struct{}
}

func (f *fakePublisher) Publish(ctx context.Context, rec *mdtap.Record) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if rec.Policy == "" {
		return errors.New("raw record")
	}
	if f.tooLarge != nil && f.tooLarge(rec) {
		return mdtap.ErrTooLarge
	}
	f.mu.Lock()
	f.got = append(f.got, rec)
	f.mu.Unlock()
	return nil
}

func (f *fakePublisher) records() []*mdtap.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*mdtap.Record(nil), f.got...)
}

func raw(id string, body string) *mdtap.Record {
	return &mdtap.Record{V: 1, ID: id, Sector: mdtap.SectorBank, API: "/v1/bank/accounts", Transmission: mdtap.UserInitiated,
		Request:  mdtap.Request{Method: "GET", Path: "/v1/bank/accounts", Query: map[string][]string{"org_code": {"X"}}},
		Response: &mdtap.Response{Status: 200, Payload: mdtap.Payload{Body: []byte(body), BodyBytes: int64(len(body)), CapturedBytes: int64(len(body))}}}
}

func TestQueuePublishesProtectedRecords(t *testing.T) {
	pub := &fakePublisher{}
	prepared := 0
	var mu sync.Mutex
	q, err := New(fakeProtector{}, pub, Options{Workers: 2, Prepare: func(*mdtap.Record) { mu.Lock(); prepared++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		q.Submit(raw(ulidN(i), "{}"))
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(pub.records()); got != 100 || prepared != 100 {
		t.Fatalf("published %d, prepared %d, want 100", got, prepared)
	}
	for _, r := range pub.records() {
		if r.Policy == "" {
			t.Fatal("a raw record reached the publisher")
		}
	}
}

func TestQueueDegradesTooLargeAndUnprotectable(t *testing.T) {
	reg := prometheus.NewRegistry()
	pub := &fakePublisher{tooLarge: func(r *mdtap.Record) bool { return r.Degraded == "" && r.Response != nil && len(r.Response.Body) > 10 }}
	q, _ := New(fakeProtector{}, pub, Options{Registerer: reg})
	q.Submit(raw(ulidN(1), `{"big":"aaaaaaaaaaaaaaaaaa"}`))
	q.Close(context.Background())
	got := pub.records()
	if len(got) != 1 || got[0].Degraded != mdtap.DegradeTooLarge || got[0].Response.Body != nil {
		t.Fatalf("published %+v, want one degraded record without body", got)
	}
	if v := testutil.ToFloat64(q.m.degrade.WithLabelValues(mdtap.DegradeTooLarge)); v != 1 {
		t.Fatalf("degraded counter %v", v)
	}

	pub2 := &fakePublisher{}
	q2, _ := New(fakeProtector{fail: true}, pub2, Options{})
	q2.Submit(raw(ulidN(2), "{}"))
	q2.Close(context.Background())
	if got := pub2.records(); len(got) != 1 || got[0].Degraded != mdtap.DegradeProtectError || got[0].Response.Body != nil {
		t.Fatalf("unprotectable record published as %+v", got)
	}
}

// Close drains what is queued; a Close whose context ends abandons the rest
// and says so.
func TestQueueCloseDrainsWithinDeadline(t *testing.T) {
	pub := &fakePublisher{block: make(chan struct{})}
	q, _ := New(fakeProtector{}, pub, Options{Workers: 1, Size: 10})
	for i := range 5 {
		q.Submit(raw(ulidN(i), "{}"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Close(ctx); err == nil {
		t.Fatal("Close returned nil while the publisher was stuck")
	}
	q.Submit(raw(ulidN(9), "{}")) // after close: counted, not kept, no panic
}

func TestSubmitBlocksWhenFull(t *testing.T) {
	pub := &fakePublisher{block: make(chan struct{})}
	q, _ := New(fakeProtector{}, pub, Options{Workers: 1, Size: 1})
	q.Submit(raw(ulidN(1), "{}")) // taken by the worker, which blocks
	q.Submit(raw(ulidN(2), "{}")) // fills the queue
	done := make(chan struct{})
	go func() { q.Submit(raw(ulidN(3), "{}")); close(done) }()
	select {
	case <-done:
		t.Fatal("Submit returned while the queue was full")
	case <-time.After(50 * time.Millisecond):
	}
	close(pub.block)
	<-done
	q.Close(context.Background())
	if n := len(pub.records()); n != 3 {
		t.Fatalf("published %d, want 3: nothing lost", n)
	}
}

func ulidN(i int) string {
	const digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := []byte("01JQ0000000000000000000000")
	for p := len(b) - 1; i > 0; p-- {
		b[p] = digits[i%32]
		i /= 32
	}
	return string(b)
}

// Large bodies: the queue pushes back on bytes, not only on count.
func TestSubmitBlocksPastMaxBytes(t *testing.T) {
	pub := &fakePublisher{block: make(chan struct{})}
	q, _ := New(fakeProtector{}, pub, Options{Workers: 1, Size: 100, MaxBytes: 10 << 10})
	big := string(make([]byte, 6<<10))
	q.Submit(raw(ulidN(1), big)) // the worker takes it and blocks
	done := make(chan struct{})
	go func() { q.Submit(raw(ulidN(2), big)); close(done) }()
	select {
	case <-done:
		t.Fatal("Submit returned while the queued bytes were past MaxBytes")
	case <-time.After(50 * time.Millisecond):
	}
	close(pub.block)
	<-done
	q.Close(context.Background())
	if n := len(pub.records()); n != 2 {
		t.Fatalf("published %d, want 2", n)
	}
}
