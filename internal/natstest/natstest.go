// Package natstest runs an embedded nats-server with JetStream for tests.
//
// Every server listens on a random loopback port (127.0.0.1, port -1) and keeps
// its JetStream store in a t.TempDir() directory; it is shut down in t.Cleanup.
// Restart brings it back on the same port with the same store, so a test can
// check that clients reconnect and that stored messages survive. Kill simulates
// a crash instead of a clean shutdown.
//
// The server writes nothing to stdout; WithLogs routes its log to t.Log.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReadyTimeout bounds how long Start and Restart wait for the server to accept
// connections and answer JetStream requests.
const ReadyTimeout = 10 * time.Second

// Option configures a Server before its first start. Restart reuses the same
// configuration, with the port fixed to the one first assigned.
type Option func(*config)

type config struct {
	opts  *server.Options
	logs  bool
	debug bool
}

// WithMaxPayload sets the largest message the server accepts (default 1 MiB).
func WithMaxPayload(n int32) Option {
	return func(c *config) { c.opts.MaxPayload = n }
}

// WithJetStreamLimits caps JetStream memory and file storage in bytes; zero
// leaves a limit at the server default (derived from the machine).
func WithJetStreamLimits(maxMemory, maxStore int64) Option {
	return func(c *config) {
		if maxMemory != 0 {
			c.opts.JetStreamMaxMemory = maxMemory
		}
		if maxStore != 0 {
			c.opts.JetStreamMaxStore = maxStore
		}
	}
}

// WithServerName sets the server name reported to clients.
func WithServerName(name string) Option {
	return func(c *config) { c.opts.ServerName = name }
}

// WithSyncAlways makes the file store write and fsync every message before it
// is acknowledged. Without it the store buffers writes for a few milliseconds,
// so Kill may lose acknowledged messages, as a real crash would.
func WithSyncAlways() Option {
	return func(c *config) { c.opts.SyncAlways = true }
}

// WithLogs routes the server's log to t.Log; debug adds its debug and trace
// output. By default the server logs nothing.
func WithLogs(debug bool) Option {
	return func(c *config) { c.logs, c.debug = true, debug }
}

// WithServerOptions changes any other server option. Host, Port, NoLog, NoSigs
// and StoreDir are set again afterwards: the server always listens on
// loopback, never logs to stdout, never handles signals and keeps its store
// under t.TempDir().
func WithServerOptions(f func(*server.Options)) Option {
	return func(c *config) { f(c.opts) }
}

// Server is an embedded nats-server with JetStream. Its methods must be called
// from the test goroutine (they may call t.Fatal).
type Server struct {
	t        testing.TB
	opts     *server.Options // template; Port is fixed after the first start
	storeDir string
	logs     bool
	debug    bool

	mu  sync.Mutex
	srv *server.Server // nil while stopped
	log *testLogger    // logger of srv
}

// Start starts an embedded nats-server with JetStream on a random loopback
// port (127.0.0.1, port -1) and a store dir under t.TempDir(); it is shut down
// in t.Cleanup. Start returns once the server accepts connections and
// JetStream answers.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	c := config{opts: &server.Options{
		MaxControlLine:        4096,
		DisableShortFirstPing: true,
		JetStream:             true,
	}}
	for _, opt := range opts {
		opt(&c)
	}
	s := &Server{t: t, opts: c.opts, storeDir: t.TempDir(), logs: c.logs, debug: c.debug}
	s.opts.Host = "127.0.0.1"
	s.opts.Port = server.RANDOM_PORT
	s.opts.NoLog = true  // the server's own logger writes to stderr; ours goes to t.Log
	s.opts.NoSigs = true // never install signal handlers in a test binary
	s.opts.StoreDir = s.storeDir
	t.Cleanup(s.Stop)

	srv, err := s.start()
	if err != nil {
		t.Fatalf("natstest: start server: %v", err)
	}
	// Restart must come back on the port we were given.
	s.opts.Port = srv.Addr().(*net.TCPAddr).Port
	return s
}

// URL returns nats://127.0.0.1:PORT; it stays the same across restarts.
func (s *Server) URL() string {
	return fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port)
}

// StoreDir returns the directory holding the JetStream store (the server
// keeps its data in a "jetstream" directory inside it).
func (s *Server) StoreDir() string { return s.storeDir }

// Server returns the running nats-server, or nil while it is stopped.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Stop shuts the server down cleanly and waits until it has exited: the file
// store flushes its buffers and writes its state files, and clients see their
// connection closed. Stop on a stopped server does nothing.
func (s *Server) Stop() {
	srv, log := s.take()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	log.close()
}

// Restart stops the server if it is running and starts it again on the same
// port with the same store dir and options. It returns once the server
// accepts connections and JetStream answers, with the streams recovered from
// the store. If the port has been taken in between, it retries until
// ReadyTimeout.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		_, err := s.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errListen) || time.Now().After(deadline) {
			s.t.Fatalf("natstest: restart server on %s: %v", s.URL(), err)
		}
		time.Sleep(50 * time.Millisecond) // retry pacing while someone else holds the port
	}
}

// Kill stops the server as abruptly as an in-process server allows, to
// simulate a crash. nats-server has no API to die without a clean shutdown, so
// Kill first copies the store dir as it is on disk at this moment (what the
// OS would hold if the process died now), then shuts the server down (which
// closes every client connection, as a crash would) and puts that copy in
// place of the store dir. Restart then recovers from the copy: messages still
// in the file store's write buffer (flushed within milliseconds unless
// WithSyncAlways is set), consumer state not yet written and the state files
// a clean shutdown writes are all lost, and the server rebuilds its state from
// the message blocks. The copy is not atomic: a file written during the copy
// may be caught half-written, much like a write in flight at a crash.
func (s *Server) Kill() {
	s.t.Helper()
	srv, log := s.take()
	if srv == nil {
		return
	}
	image, err := crashImage(s.storeDir)
	srv.Shutdown()
	srv.WaitForShutdown()
	log.close()
	if err != nil {
		s.t.Fatalf("natstest: kill: %v", err)
	}
	if err := replaceDir(s.storeDir, image); err != nil {
		s.t.Fatalf("natstest: kill: %v", err)
	}
}

// Conn connects to the server and closes the connection in t.Cleanup. The
// connection reconnects forever, every 20 ms, so it survives Stop, Kill and
// Restart; opts are applied after these defaults.
func (s *Server) Conn(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)
	nc, err := nats.Connect(s.URL(), all...)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", s.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection from Conn.
func (s *Server) JetStream(t testing.TB, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Conn(t, opts...))
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// take detaches the running server, if any.
func (s *Server) take() (*server.Server, *testLogger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, log := s.srv, s.log
	s.srv, s.log = nil, nil
	return srv, log
}

// errListen marks a start that failed because the port could not be bound.
var errListen = errors.New("listen")

// start starts a server from the options template and waits until it is
// ready. On error nothing is left running.
func (s *Server) start() (*server.Server, error) {
	o := s.opts.Clone()
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	// Always install our logger, even when logs are not wanted: it never calls
	// os.Exit on a fatal error (the server's own logger does), and it keeps
	// the fatal errors so that waitReady can report them.
	log := &testLogger{t: s.t, verbose: s.logs}
	srv.SetLogger(log, s.debug, s.debug)
	srv.Start()
	if err := waitReady(srv, log); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		log.close()
		return nil, err
	}
	s.mu.Lock()
	s.srv, s.log = srv, log
	s.mu.Unlock()
	return srv, nil
}

// waitReady waits until srv accepts connections and JetStream answers an
// account info request, which it does once every stream in the store has been
// recovered.
func waitReady(srv *server.Server, log *testLogger) error {
	deadline := time.Now().Add(ReadyTimeout)
	for srv.Addr() == nil {
		if err := log.fatal(); err != nil {
			if strings.Contains(err.Error(), "Error listening on port") {
				return fmt.Errorf("%w: %v", errListen, err)
			}
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("server not listening within " + ReadyTimeout.String())
		}
		time.Sleep(10 * time.Millisecond) // poll pacing
	}
	if !srv.ReadyForConnections(time.Until(deadline)) {
		return errors.New("server not ready for connections within " + ReadyTimeout.String())
	}
	if !srv.JetStreamEnabled() {
		if err := log.fatal(); err != nil {
			return fmt.Errorf("jetstream not enabled: %w", err)
		}
		return errors.New("jetstream not enabled (natstest.WithLogs shows the server log)")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("natstest-ready"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for {
		_, err := js.AccountInfo(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("jetstream not ready: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond): // poll pacing
		}
	}
}

// testLogger is the server's logger: it writes to t.Log when verbose, until
// it is closed (nothing may log to t after the test has finished), and keeps
// the first fatal error.
type testLogger struct {
	t       testing.TB
	verbose bool

	mu       sync.Mutex
	closed   bool
	fatalErr error
}

func (l *testLogger) logf(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.verbose && !l.closed {
		l.t.Logf("nats-server: "+level+format, v...)
	}
}

func (l *testLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalErr
}

func (l *testLogger) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

func (l *testLogger) Fatalf(format string, v ...any) {
	l.mu.Lock()
	if l.fatalErr == nil {
		l.fatalErr = fmt.Errorf(format, v...)
	}
	l.mu.Unlock()
	l.logf("[FTL] ", format, v...)
}

func (l *testLogger) Noticef(format string, v ...any) { l.logf("", format, v...) }
func (l *testLogger) Warnf(format string, v ...any)   { l.logf("[WRN] ", format, v...) }
func (l *testLogger) Errorf(format string, v ...any)  { l.logf("[ERR] ", format, v...) }
func (l *testLogger) Debugf(format string, v ...any)  { l.logf("[DBG] ", format, v...) }
func (l *testLogger) Tracef(format string, v ...any)  { l.logf("[TRC] ", format, v...) }
