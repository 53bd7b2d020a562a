package stream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is a NATS server with JetStream running inside this process, on a
// loopback port, for `mdtap demo` and trials on one machine. Production runs
// a NATS cluster; nothing else in mdtap depends on this.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a server on 127.0.0.1 (port 0 picks a free one) with
// its JetStream store in storeDir.
func StartEmbedded(storeDir string, port int) (*Embedded, error) {
	if port == 0 {
		port = -1
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "mdtap-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL of the server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
