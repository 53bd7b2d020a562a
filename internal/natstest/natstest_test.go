package natstest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap/internal/natstest"
)

const (
	stream  = "TEST"
	subject = "test.records"
)

func TestStartPublishConsume(t *testing.T) {
	s := natstest.Start(t)
	if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") {
		t.Fatalf("URL() = %q, want nats://127.0.0.1:PORT", s.URL())
	}
	js := s.JetStream(t)
	ctx := testContext(t)
	createStream(ctx, t, js)
	publish(ctx, t, js, 0, 10)

	got := consume(ctx, t, js, "c1", 10)
	for i, m := range got {
		if want := payload(i); m != want {
			t.Errorf("message %d = %q, want %q", i, m, want)
		}
	}
	// The stream lives in the file store under StoreDir.
	if _, err := os.Stat(filepath.Join(s.StoreDir(), "jetstream")); err != nil {
		t.Errorf("stat store: %v", err)
	}
}

func TestRestartKeepsMessagesAndReconnects(t *testing.T) {
	s := natstest.Start(t)
	url := s.URL()
	nc := s.Conn(t)
	reconnected := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	createStream(ctx, t, js)
	publish(ctx, t, js, 0, 5)

	s.Stop()
	if s.Server() != nil {
		t.Fatalf("Server() after Stop = non-nil, want nil")
	}
	s.Restart()
	if s.URL() != url {
		t.Fatalf("URL() after Restart = %q, want %q", s.URL(), url)
	}

	// The client made before the restart reconnects by itself.
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatalf("client did not reconnect: %v", ctx.Err())
	}
	// Poll with a deadline: the first publishes may still race the reconnect.
	publishEventually(ctx, t, js, 5)
	publish(ctx, t, js, 6, 10)

	// A fresh client finds every message, old and new.
	got := consume(ctx, t, s.JetStream(t), "after-restart", 10)
	for i, m := range got {
		if want := payload(i); m != want {
			t.Errorf("message %d = %q, want %q", i, m, want)
		}
	}
}

func TestKillKeepsSyncedMessages(t *testing.T) {
	s := natstest.Start(t, natstest.WithSyncAlways(), natstest.WithServerName("killed"))
	js := s.JetStream(t)
	ctx := testContext(t)
	createStream(ctx, t, js)
	publish(ctx, t, js, 0, 20)

	s.Kill()
	s.Kill() // a second Kill (or Stop) on a stopped server does nothing
	s.Stop()
	s.Restart()

	got := consume(ctx, t, s.JetStream(t), "after-kill", 20)
	for i, m := range got {
		if want := payload(i); m != want {
			t.Errorf("message %d = %q, want %q", i, m, want)
		}
	}
}

func TestOptions(t *testing.T) {
	s := natstest.Start(t,
		natstest.WithMaxPayload(4096),
		natstest.WithJetStreamLimits(8<<20, 64<<20),
		natstest.WithServerName("opts"),
		natstest.WithLogs(false),
	)
	nc := s.Conn(t)
	if got := nc.MaxPayload(); got != 4096 {
		t.Errorf("MaxPayload() = %d, want 4096", got)
	}
	if err := nc.Publish("x", make([]byte, 4097)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("Publish(4097 bytes) = %v, want %v", err, nats.ErrMaxPayload)
	}
	if got := nc.ConnectedServerName(); got != "opts" {
		t.Errorf("ConnectedServerName() = %q, want %q", got, "opts")
	}
	cfg := s.Server().JetStreamConfig()
	if cfg == nil || cfg.MaxMemory != 8<<20 || cfg.MaxStore != 64<<20 {
		t.Errorf("JetStreamConfig() = %+v, want MaxMemory 8 MiB, MaxStore 64 MiB", cfg)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func payload(i int) string { return fmt.Sprintf("record-%03d", i) }

func createStream(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     stream,
		Subjects: []string{subject},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
}

// publish publishes payloads [from, to) and waits for each ack.
func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ack, err := js.Publish(ctx, subject, []byte(payload(i)))
		if err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
		if want := uint64(i + 1); ack.Sequence != want {
			t.Fatalf("Publish(%d) sequence = %d, want %d", i, ack.Sequence, want)
		}
	}
}

// publishEventually publishes payload i, retrying until it is acknowledged or
// ctx ends. The message id makes a retry after a lost ack harmless.
func publishEventually(ctx context.Context, t *testing.T, js jetstream.JetStream, i int) {
	t.Helper()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(pctx, subject, []byte(payload(i)), jetstream.WithMsgID(payload(i)))
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Publish(%d) after restart: %v (last error %v)", i, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond): // retry pacing
		}
	}
}

// consume reads n messages through a new durable pull consumer and acks them.
func consume(ctx context.Context, t *testing.T, js jetstream.JetStream, durable string, n int) []string {
	t.Helper()
	c, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:   durable,
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("CreateOrUpdateConsumer(%s): %v", durable, err)
	}
	var got []string
	for len(got) < n && ctx.Err() == nil {
		batch, err := c.Fetch(n-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
			if err := m.Ack(); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
	}
	if len(got) != n {
		t.Fatalf("consumed %d messages, want %d: %q", len(got), n, got)
	}
	return got
}

// TestRestartWaitsForBusyPort holds the server's port while it restarts; the
// server fails to bind, and Restart tries again until the port is free.
func TestRestartWaitsForBusyPort(t *testing.T) {
	s := natstest.Start(t)
	s.Stop()
	l, err := net.Listen("tcp", strings.TrimPrefix(s.URL(), "nats://"))
	if err != nil {
		t.Fatalf("hold port: %v", err)
	}
	// Fault injection, not synchronisation: Restart's first attempt runs at
	// once and fails; the port frees up while it retries.
	release := time.AfterFunc(200*time.Millisecond, func() { l.Close() })
	t.Cleanup(func() { release.Stop(); l.Close() })

	start := time.Now()
	s.Restart()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Restart returned after %s, before the port was free", d)
	}
	js := s.JetStream(t)
	if _, err := js.AccountInfo(testContext(t)); err != nil {
		t.Fatalf("AccountInfo after restart: %v", err)
	}
}
