package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
)

func checkStreamConfig(t *testing.T, got jetstream.StreamConfig, want StreamConfig) {
	t.Helper()
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", got.Name, want.Name},
		{"subjects", strings.Join(got.Subjects, ","), mdtap.StreamSubjects},
		{"storage", got.Storage, jetstream.FileStorage},
		{"retention", got.Retention, jetstream.WorkQueuePolicy},
		{"discard", got.Discard, jetstream.DiscardNew},
		{"max age", got.MaxAge, time.Duration(0)},
		{"duplicates", got.Duplicates, want.Duplicates},
		{"replicas", got.Replicas, want.Replicas},
		{"max bytes", got.MaxBytes, want.MaxBytes},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("stream %s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestEnsureCreatesStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()

	s, err := Ensure(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	checkStreamConfig(t, s.CachedInfo().Config, DefaultStreamConfig())

	// What the server holds, not only what it answered.
	info, err := js.Stream(ctx, DefaultStreamName)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	checkStreamConfig(t, info.CachedInfo().Config, DefaultStreamConfig())
}

func TestEnsureUpdatesStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()

	ensureStream(t, js, StreamConfig{Name: "RECORDS"})
	// An operator's own tuning, which mdtap does not manage, survives.
	s, err := js.Stream(ctx, "RECORDS")
	if err != nil {
		t.Fatal(err)
	}
	tuned := s.CachedInfo().Config
	tuned.Compression = jetstream.S2Compression
	tuned.MaxMsgSize = 512 << 10
	if _, err := js.UpdateStream(ctx, tuned); err != nil {
		t.Fatalf("UpdateStream: %v", err)
	}

	want := StreamConfig{Name: "RECORDS", Replicas: 1, MaxBytes: 64 << 20, Duplicates: 30 * time.Minute}
	s, err = Ensure(ctx, js, want)
	if err != nil {
		t.Fatalf("Ensure (update): %v", err)
	}
	got := s.CachedInfo().Config
	checkStreamConfig(t, got, want)
	if got.Compression != jetstream.S2Compression || got.MaxMsgSize != 512<<10 {
		t.Errorf("operator settings: got compression %v, max msg size %d; want s2, %d", got.Compression, got.MaxMsgSize, 512<<10)
	}

	// Back to unlimited.
	want.MaxBytes = Unlimited
	s, err = Ensure(ctx, js, want)
	if err != nil {
		t.Fatalf("Ensure (unlimited): %v", err)
	}
	checkStreamConfig(t, s.CachedInfo().Config, want)
}

func TestEnsureRefusesIncompatibleStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()

	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: DefaultStreamName, Subjects: []string{mdtap.StreamSubjects},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.MemoryStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(ctx, js, StreamConfig{})
	if !errors.Is(err, ErrIncompatibleStream) {
		t.Fatalf("Ensure over a limits/memory stream: got %v, want ErrIncompatibleStream", err)
	}
	if err := contains(err.Error(), "retention is limits, want workqueue", "storage is memory, want file"); err != nil {
		t.Errorf("Ensure error does not say which settings: %v", err)
	}
	// And it left the stream alone.
	s, _ := js.Stream(ctx, DefaultStreamName)
	if got := s.CachedInfo().Config.Retention; got != jetstream.LimitsPolicy {
		t.Errorf("retention after refused Ensure: got %v, want limits", got)
	}
}

func TestEnsureNamesOverlappingStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEGACY", Subjects: []string{"mdtap.records.bank.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(ctx, js, StreamConfig{})
	if err == nil || !strings.Contains(err.Error(), "stream LEGACY already takes subjects") {
		t.Fatalf("Ensure with an overlapping stream: got %v, want it to name LEGACY", err)
	}
}

func TestStreamConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  StreamConfig
		want string // "" valid
	}{
		{"zero", StreamConfig{}, ""},
		{"defaults", DefaultStreamConfig(), ""},
		{"three replicas", StreamConfig{Replicas: 3, MaxBytes: 1 << 30}, ""},
		{"dot in name", StreamConfig{Name: "MD.TAP"}, "name"},
		{"wildcard in name", StreamConfig{Name: "MD*"}, "name"},
		{"space in name", StreamConfig{Name: "MD TAP"}, "name"},
		{"slash in name", StreamConfig{Name: "../x"}, "name"},
		{"six replicas", StreamConfig{Replicas: 6}, "replicas"},
		{"negative replicas", StreamConfig{Replicas: -1}, "replicas"},
		{"max bytes -2", StreamConfig{MaxBytes: -2}, "max bytes"},
		{"negative duplicates", StreamConfig{Duplicates: -time.Second}, "duplicate window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// A work-queue stream keeps records until the archive consumer acknowledges
// them, even those published before the consumer existed; each is delivered
// once and gone after its ack.
func TestEnsureConsumerWorkQueue(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()
	ensureStream(t, js, StreamConfig{})

	p := newTestPublisher(t, srv, PublisherOptions{})
	const n = 25
	for i := range n {
		mustPublish(t, p.Publisher, testRecord(i))
	}
	flush(t, p.Publisher)
	if got := streamMsgs(t, js, DefaultStreamName); got != n {
		t.Fatalf("stream before any consumer: got %d messages, want %d", got, n)
	}

	c, err := EnsureConsumer(ctx, js, DefaultStreamName, "")
	if err != nil {
		t.Fatalf("EnsureConsumer: %v", err)
	}
	cfg := c.CachedInfo().Config
	if cfg.Durable != DefaultConsumerName || cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.AckWait != DefaultAckWait ||
		cfg.MaxDeliver != -1 || cfg.MaxAckPending != DefaultMaxAckPending || cfg.FilterSubject != mdtap.StreamSubjects {
		t.Errorf("consumer config: got durable %q ack %v wait %s max deliver %d max ack pending %d filter %q",
			cfg.Durable, cfg.AckPolicy, cfg.AckWait, cfg.MaxDeliver, cfg.MaxAckPending, cfg.FilterSubject)
	}
	// Idempotent.
	if _, err := EnsureConsumer(ctx, js, DefaultStreamName, DefaultConsumerName); err != nil {
		t.Fatalf("EnsureConsumer again: %v", err)
	}

	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for m := range batch.Messages() {
			id := m.Headers().Get(jetstream.MsgIDHeader)
			if seen[id] {
				t.Errorf("record %s delivered twice", id)
			}
			seen[id] = true
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if batch.Error() != nil {
			t.Fatalf("fetch: %v", batch.Error())
		}
	}
	if len(seen) != n {
		t.Fatalf("consumed %d records, want %d", len(seen), n)
	}
	waitFor(t, 5*time.Second, "stream empty after acks", func() error {
		if got := streamMsgs(t, js, DefaultStreamName); got != 0 {
			return fmt.Errorf("%d messages left", got)
		}
		return nil
	})
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		t.Errorf("record %s delivered again after its ack", m.Headers().Get(jetstream.MsgIDHeader))
	}
}

// Work-queue streams allow one consumer per subject: a second archive
// consumer under another name is refused, naming the first.
func TestEnsureConsumerRefusesSecondConsumer(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()
	ensureStream(t, js, StreamConfig{})
	if _, err := EnsureConsumer(ctx, js, DefaultStreamName, DefaultConsumerName); err != nil {
		t.Fatalf("EnsureConsumer: %v", err)
	}
	_, err := EnsureConsumer(ctx, js, DefaultStreamName, "archive-2")
	if err == nil {
		t.Fatal("EnsureConsumer with a second name: got nil, want an error")
	}
	if err := contains(err.Error(), "one consumer per subject", "consumer "+DefaultConsumerName); err != nil {
		t.Errorf("EnsureConsumer error: %v", err)
	}
}

func TestEnsureConsumerMissingStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	_, err := EnsureConsumer(context.Background(), js, "NOPE", "")
	if err == nil || !strings.Contains(err.Error(), "stream NOPE") {
		t.Fatalf("EnsureConsumer on a missing stream: got %v", err)
	}
}

func TestProvision(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Conn(t)
	ctx := context.Background()

	sum, err := Provision(ctx, nc, StreamConfig{MaxBytes: 1 << 30}, "")
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if !sum.Created || sum.Stream != DefaultStreamName || sum.Storage != "file" || sum.Retention != "workqueue" ||
		sum.Discard != "new" || sum.MaxBytes != 1<<30 || sum.Replicas != 1 || sum.Duplicates != DefaultDuplicates ||
		sum.Consumer != DefaultConsumerName || sum.MaxDeliver != -1 {
		t.Errorf("Provision summary: %+v", sum)
	}
	sum, err = Provision(ctx, nc, StreamConfig{}, "")
	if err != nil {
		t.Fatalf("Provision again: %v", err)
	}
	if sum.Created || sum.MaxBytes != Unlimited {
		t.Errorf("Provision again: got created %v max bytes %d, want false, %d", sum.Created, sum.MaxBytes, Unlimited)
	}
}
