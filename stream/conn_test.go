package stream

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/internal/natstest"
)

// syncBuffer is a log sink safe for the nats.go callback goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	testUser     = "mdtapuser"
	testPassword = "s3cretpass"
)

// startAuthServer starts a server that requires a user and password from
// clients that offer credentials (natstest's own readiness check offers none
// and is let in as the no-auth user).
func startAuthServer(t *testing.T) *natstest.Server {
	return natstest.Start(t, natstest.WithServerOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: testUser, Password: testPassword}}
		o.NoAuthUser = testUser
	}))
}

func withUserinfo(url, userinfo string) string {
	return strings.Replace(url, "nats://", "nats://"+userinfo+"@", 1)
}

// Credentials in the URL or the options never reach the log, through
// connect, disconnect, reconnect and close.
func TestConnectLogsNoSecrets(t *testing.T) {
	srv := startAuthServer(t)
	hostPort := strings.TrimPrefix(srv.URL(), "nats://")

	tests := []struct {
		name string
		o    ConnOptions
	}{
		{"userinfo in url", ConnOptions{URL: withUserinfo(srv.URL(), testUser+":"+testPassword)}},
		{"user and password options", ConnOptions{URL: srv.URL(), User: testUser, Password: testPassword}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			log := zerolog.New(&logs).Level(zerolog.DebugLevel)
			tt.o.ReconnectWait, tt.o.ReconnectJitter = 20*time.Millisecond, time.Millisecond
			nc, err := Connect(tt.o, log)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			waitFor(t, 5*time.Second, "connected", func() error {
				if !nc.IsConnected() {
					return errors.New("not connected")
				}
				return nil
			})
			srv.Stop()
			waitFor(t, 5*time.Second, "disconnect logged", func() error { return contains(logs.String(), "nats disconnected") })
			srv.Restart()
			waitFor(t, 10*time.Second, "reconnect logged", func() error { return contains(logs.String(), "nats reconnected") })
			nc.Close()

			out := logs.String()
			t.Logf("log:\n%s", out)
			if strings.Contains(out, testPassword) || strings.Contains(out, testUser) {
				t.Errorf("log carries credentials:\n%s", out)
			}
			if !strings.Contains(out, hostPort) {
				t.Errorf("log does not name the server %s:\n%s", hostPort, out)
			}
		})
	}
}

// The server really checks the password (so the test above used it), and a
// refused connection's error does not quote it.
func TestConnectFailFastWrongPassword(t *testing.T) {
	srv := startAuthServer(t)
	var logs syncBuffer
	_, err := Connect(ConnOptions{URL: withUserinfo(srv.URL(), testUser+":wrong-"+testPassword), FailFast: true}, zerolog.New(&logs))
	if err == nil {
		t.Fatal("Connect with a wrong password: got nil error")
	}
	if strings.Contains(err.Error(), testPassword) || strings.Contains(logs.String(), testPassword) {
		t.Errorf("error or log carries the password: %v\n%s", err, logs.String())
	}
}

func TestConnectFailFastNoServer(t *testing.T) {
	srv := natstest.Start(t)
	url := srv.URL()
	srv.Stop()
	start := time.Now()
	_, err := Connect(ConnOptions{URL: url, FailFast: true}, zerolog.Nop())
	if err == nil {
		t.Fatal("Connect to a stopped server with FailFast: got nil error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("FailFast took %s", d)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:pass@nats.example:4222", "nats://nats.example:4222"},
		{"nats://s3cr3tt0k3n@nats.example:4222", "nats://nats.example:4222"},
		{"tls://a:b@n1:4222, tls://c:d@n2:4222", "tls://n1:4222,tls://n2:4222"},
		{"user:pass@nats.example:4222", "(unparsable url)"},
		{"nats://us%zz:pass@host", "(unparsable url)"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConnOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    ConnOptions
		ok   bool
	}{
		{"none", ConnOptions{}, true},
		{"creds", ConnOptions{CredsFile: "x.creds"}, true},
		{"user password", ConnOptions{User: "u", Password: "p"}, true},
		{"token", ConnOptions{Token: "t"}, true},
		{"tls", ConnOptions{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, true},
		{"creds and token", ConnOptions{CredsFile: "x.creds", Token: "t"}, false},
		{"nkey and user", ConnOptions{NKeyFile: "n.seed", User: "u"}, false},
		{"password alone", ConnOptions{Password: "p"}, false},
		{"cert without key", ConnOptions{CertFile: "c.pem"}, false},
		{"key without cert", ConnOptions{KeyFile: "k.pem"}, false},
		{"negative wait", ConnOptions{ReconnectWait: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate: got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
