package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream is an embedded nats-server with JetStream, its file store in a
// directory the caller owns.
type JetStream struct {
	srv *server.Server
}

// StartJetStream starts the server on host:port (port 0 picks one) and
// returns once it accepts connections.
func StartJetStream(listen, storeDir string) (*JetStream, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("start nats-server: listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("start nats-server: listen %q: bad port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: storeDir,
		NoLog: true, NoSigs: true, MaxControlLine: 4096,
	})
	if err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("start nats-server: not ready after 10s")
	}
	return &JetStream{srv: srv}, nil
}

// URL is nats://127.0.0.1:PORT.
func (j *JetStream) URL() string { return j.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (j *JetStream) Shutdown() {
	j.srv.Shutdown()
	j.srv.WaitForShutdown()
}

// StreamState returns the messages and bytes a stream holds on the NATS
// server at url.
func StreamState(ctx context.Context, url, name string) (msgs, bytes uint64, err error) {
	nc, err := nats.Connect(url, nats.Name("mdtap-bench"))
	if err != nil {
		return 0, 0, fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, fmt.Errorf("jetstream: %w", err)
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", name, err)
	}
	return info.State.Msgs, info.State.Bytes, nil
}
