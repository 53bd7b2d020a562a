package stream

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster starts n embedded JetStream servers clustered over loopback
// routes, each with its own store, and waits for a JetStream meta leader.
// internal/natstest runs single servers only: it waits for JetStream on each
// server before returning, which a cluster member cannot give alone.
func startCluster(t *testing.T, n int) string {
	t.Helper()
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var urls string
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("mdtap-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "mdtap-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		if err != nil {
			t.Fatalf("new server %d: %v", i, err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server %d not ready", i)
		}
		if urls != "" {
			urls += ","
		}
		urls += s.ClientURL()
	}
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "jetstream cluster ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return urls
}

// Replicas can only be shown changing on a cluster: a single server refuses
// more than one.
func TestEnsureChangesReplicasInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	urls := startCluster(t, 3)
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := Ensure(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatalf("Ensure R1: %v", err)
	}
	checkStreamConfig(t, s.CachedInfo().Config, DefaultStreamConfig())

	want := StreamConfig{Name: DefaultStreamName, Replicas: 3, MaxBytes: 8 << 20, Duplicates: time.Hour}
	s, err = Ensure(ctx, js, want)
	if err != nil {
		t.Fatalf("Ensure R3: %v", err)
	}
	checkStreamConfig(t, s.CachedInfo().Config, want)
	waitFor(t, 20*time.Second, "three replicas", func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("cluster info %+v", info.Cluster)
		}
		return nil
	})

	// And records go through it.
	p, err := NewPublisher(nc, PublisherOptions{Logger: testLogger(t), OnFailure: func(m Message, err error) {
		t.Errorf("OnFailure(%s): %v", m.ID, err)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 100 {
		mustPublish(t, p, testRecord(i))
	}
	flush(t, p)
	if got := streamMsgs(t, js, DefaultStreamName); got != 100 {
		t.Errorf("stream: got %d messages, want 100", got)
	}
}
