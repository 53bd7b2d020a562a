package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/stream"
)

// runStream runs an mdtap command line and returns its output and exit code.
func runStream(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, args, strings.NewReader(""), &out, &errb, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	return out.String(), errb.String(), code
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	norm := strings.Join(strings.Fields(out), " ")
	for _, l := range lines {
		if !strings.Contains(norm, l) {
			t.Errorf("output lacks %q:\n%s", l, out)
		}
	}
}

func TestStreamInitCreatesAndUpdates(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)

	out, errOut, code := runStream(t, nil, "stream", "init", "--nats", srv.URL(), "--max-bytes", "1GiB")
	if code != exitOK {
		t.Fatalf("stream init: exit %d: %s", code, errOut)
	}
	wantLines(t, out,
		"stream MDTAP created", "subjects "+mdtap.StreamSubjects, "storage file", "retention workqueue",
		"discard new", "max age none", "replicas 1", "max bytes 1.0 GiB", "dup window 2h0m0s",
		"consumer mdtap-archive ready", "durable pull, explicit ack", "ack wait 2m0s",
		"max ack pending 100000", "max deliver unlimited", "filter "+mdtap.StreamSubjects)
	cfg := streamConfig(t, js, "MDTAP")
	if cfg.MaxBytes != 1<<30 || cfg.Retention != jetstream.WorkQueuePolicy || cfg.Discard != jetstream.DiscardNew ||
		cfg.Storage != jetstream.FileStorage || cfg.Duplicates != 2*time.Hour {
		t.Errorf("stream after init: %+v", cfg)
	}
	if _, err := js.Consumer(context.Background(), "MDTAP", "mdtap-archive"); err != nil {
		t.Errorf("consumer after init: %v", err)
	}

	// Again, with new settings: the stream is updated in place.
	out, errOut, code = runStream(t, nil, "stream", "init", "--nats", srv.URL(), "--max-bytes", "unlimited", "--dup-window", "30m")
	if code != exitOK {
		t.Fatalf("stream init again: exit %d: %s", code, errOut)
	}
	wantLines(t, out, "stream MDTAP updated", "max bytes unlimited", "dup window 30m0s")
	if cfg := streamConfig(t, js, "MDTAP"); cfg.MaxBytes != -1 || cfg.Duplicates != 30*time.Minute {
		t.Errorf("stream after second init: max bytes %d, dup window %s", cfg.MaxBytes, cfg.Duplicates)
	}

	// From the environment, as the configuration layering promises.
	env := map[string]string{"MDTAP_STREAM_INIT_NATS": srv.URL(), "MDTAP_STREAM_INIT_MAX_BYTES": "2GiB"}
	out, errOut, code = runStream(t, env, "stream", "init")
	if code != exitOK {
		t.Fatalf("stream init from env: exit %d: %s", code, errOut)
	}
	wantLines(t, out, "max bytes 2.0 GiB")
}

func TestStreamInitOtherNames(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	out, errOut, code := runStream(t, nil, "stream", "init", "--nats", srv.URL(), "--stream", "RECORDS", "--consumer", "arch", "--max-bytes", "-1")
	if code != exitOK {
		t.Fatalf("stream init: exit %d: %s", code, errOut)
	}
	wantLines(t, out, "stream RECORDS created", "consumer arch ready", "max bytes unlimited")
	if _, err := js.Consumer(context.Background(), "RECORDS", "arch"); err != nil {
		t.Errorf("consumer arch: %v", err)
	}
}

func TestStreamInitRefusesIncompatibleStream(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "MDTAP", Subjects: []string{mdtap.StreamSubjects}, Retention: jetstream.LimitsPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runStream(t, nil, "stream", "init", "--nats", srv.URL())
	if code != exitFailure {
		t.Fatalf("stream init over a limits stream: exit %d, want %d", code, exitFailure)
	}
	wantLines(t, errOut, "retention is limits, want workqueue", "hint:")
}

func TestStreamInitNoServer(t *testing.T) {
	srv := natstest.Start(t)
	url := strings.Replace(srv.URL(), "nats://", "nats://admin:hunter2@", 1)
	srv.Stop()
	start := time.Now()
	_, errOut, code := runStream(t, nil, "stream", "init", "--nats", url)
	if code != exitFailure {
		t.Fatalf("stream init without a server: exit %d, want %d: %s", code, exitFailure, errOut)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("stream init without a server took %s", time.Since(start))
	}
	if strings.Contains(errOut, "hunter2") || strings.Contains(errOut, "admin") {
		t.Errorf("stderr carries credentials: %s", errOut)
	}
	wantLines(t, errOut, "connect to nats")
}

func TestStreamInitUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero replicas", []string{"--replicas", "0"}, "--replicas 0"},
		{"six replicas", []string{"--replicas", "6"}, "--replicas 6"},
		{"negative max bytes", []string{"--max-bytes", "-5"}, "max-bytes"},
		{"zero max bytes", []string{"--max-bytes", "0"}, "max-bytes"},
		{"zero dup window", []string{"--dup-window", "0"}, "--dup-window"},
		{"bad stream name", []string{"--stream", "MD.TAP"}, "--stream"},
		{"bad consumer name", []string{"--consumer", "a.b"}, "--consumer"},
		{"cert without key", []string{"--nats-cert", "c.pem"}, "--nats-cert needs --nats-key"},
		{"two auth methods", []string{"--nats-token", "t", "--nats-creds", "x.creds"}, "give one way to authenticate"},
		{"argument", []string{"extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"stream", "init", "--nats", "nats://127.0.0.1:1"}, tt.args...)
			_, errOut, code := runStream(t, nil, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d: %s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q lacks %q", errOut, tt.want)
			}
		})
	}
}

// A record the stream refused for good sits in the spool's dead-letter
// directory; `stream replay` lists it as refused until the cause is fixed,
// then publishes it once.
func TestStreamReplay(t *testing.T) {
	ns := natstest.Start(t)
	js := ns.JetStream(t)
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js, stream.StreamConfig{Name: "OTHER"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp, err := stream.OpenSpool(stream.SpoolOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewPublisher(ns.Conn(t), stream.PublisherOptions{Spool: sp}) // expects MDTAP
	if err != nil {
		t.Fatal(err)
	}
	rec := &mdtap.Record{V: 1, ID: "01JQ3V7ZC8M4W5X6Y7Z8A9B0CD", Time: mdtap.Timestamp{Time: time.Now()},
		Sector: mdtap.SectorBank, API: "/v1/bank/accounts", Transmission: mdtap.UserInitiated,
		Request: mdtap.Request{Method: "GET", Path: "/v1/bank/accounts"}, Policy: "builtin@test"}
	if err := p.Publish(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	sp.Close()

	args := []string{"stream", "replay", "--spool", dir, "--nats", ns.URL()}
	out, errOut, code := runStream(t, nil, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(out, "1 records, 1 to publish") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runStream(t, nil, args...)
	if code != 1 || !strings.Contains(out, "refused "+rec.ID) || !strings.Contains(out, "rejected") {
		t.Fatalf("replay before the fix: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if err := js.DeleteStream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runStream(t, nil, "stream", "init", "--nats", ns.URL()); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code = runStream(t, nil, args...)
	if code != 0 || !strings.Contains(out, "1 published") {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runStream(t, nil, append(args, "--json")...)
	if code != 0 || !strings.Contains(out, `"skipped":1`) || !strings.Contains(out, `"published":0`) {
		t.Fatalf("second replay: exit %d\n%s", code, out)
	}
	if _, _, code := runStream(t, nil, "stream", "replay", "--nats", ns.URL()); code != 2 {
		t.Errorf("without --spool: exit %d, want 2", code)
	}
}
