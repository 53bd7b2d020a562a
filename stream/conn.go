package stream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Connection defaults.
const (
	// DefaultURL is where NATS is expected when no URL is given.
	DefaultURL = "nats://127.0.0.1:4222"
	// DefaultConnName is the connection name the server shows in its
	// monitoring when none is given.
	DefaultConnName = "mdtap"
	// DefaultReconnectWait is the pause between reconnect attempts to the
	// same server.
	DefaultReconnectWait = 2 * time.Second
	// DefaultReconnectJitter is the most added at random to each pause, so
	// a fleet of sidecars does not reconnect in step after an outage.
	DefaultReconnectJitter = time.Second
)

// ConnOptions say how to reach and authenticate to NATS. At most one of
// CredsFile, NKeyFile, User/Password and Token may be set.
type ConnOptions struct {
	// URL is one server URL or several, comma-separated (nats://, tls://);
	// default DefaultURL. Credentials in it are honoured but never logged.
	URL string
	// Name is the connection name shown in server monitoring; default
	// DefaultConnName.
	Name string

	CredsFile string // a .creds file: user JWT and nkey seed (decentralised auth)
	NKeyFile  string // a file holding an nkey seed
	User      string
	Password  string
	Token     string

	// InboxPrefix replaces _INBOX as the prefix of this connection's reply
	// subjects (publish acks, pull deliveries), so NATS permissions can
	// give each role only its own replies (docs/stream.md). Empty: _INBOX.
	InboxPrefix string

	CAFile   string // PEM roots to verify the server with; implies TLS
	CertFile string // client certificate (PEM), with KeyFile; implies TLS
	KeyFile  string

	// ReconnectWait and ReconnectJitter pace reconnects; defaults
	// DefaultReconnectWait and DefaultReconnectJitter.
	ReconnectWait   time.Duration
	ReconnectJitter time.Duration

	// FailFast makes Connect fail when no server answers now, for one-shot
	// commands. Without it Connect returns at once and keeps trying in the
	// background, so a sidecar can start before NATS.
	FailFast bool
}

// Validate reports conflicting or incomplete settings.
func (o ConnOptions) Validate() error {
	auth := 0
	for _, set := range []bool{o.CredsFile != "", o.NKeyFile != "", o.User != "" || o.Password != "", o.Token != ""} {
		if set {
			auth++
		}
	}
	switch {
	case auth > 1:
		return errors.New("nats options: use one of credentials file, nkey file, user and password, or token")
	case o.Password != "" && o.User == "":
		return errors.New("nats options: a password needs a user")
	case (o.CertFile == "") != (o.KeyFile == ""):
		return errors.New("nats options: a client certificate and its key go together")
	case o.ReconnectWait < 0 || o.ReconnectJitter < 0:
		return errors.New("nats options: reconnect wait and jitter cannot be negative")
	}
	return nil
}

// Connect connects to NATS. Unless o.FailFast is set it returns at once even
// when no server answers yet (RetryOnFailedConnect) and then reconnects for
// ever. Disconnects, reconnects and asynchronous errors are logged with the
// server's URL stripped of credentials; payloads are never logged.
func Connect(o ConnOptions, log zerolog.Logger) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// "connected" is logged once: here when the first attempt succeeds,
	// else by the handler when a deferred connection comes up. nats.go
	// calls the handler in both cases, asynchronously.
	var connected sync.Once
	logConnected := func(nc *nats.Conn) {
		connected.Do(func() { withServer(log.Info(), nc).Msg("nats connected") })
	}
	opts, err := o.natsOptions(log, logConnected)
	if err != nil {
		return nil, err
	}
	url := o.URL
	if url == "" {
		url = DefaultURL
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", RedactURL(url), err)
	}
	if nc.IsConnected() {
		logConnected(nc)
	} else {
		log.Warn().Str("url", RedactURL(url)).Msg("nats not reachable yet; retrying in the background")
	}
	return nc, nil
}

func (o ConnOptions) natsOptions(log zerolog.Logger, onConnect func(*nats.Conn)) ([]nats.Option, error) {
	name := o.Name
	if name == "" {
		name = DefaultConnName
	}
	wait := o.ReconnectWait
	if wait == 0 {
		wait = DefaultReconnectWait
	}
	jitter := o.ReconnectJitter
	if jitter == 0 {
		jitter = DefaultReconnectJitter
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(jitter, jitter),
		nats.RetryOnFailedConnect(!o.FailFast),
		nats.ConnectHandler(onConnect),
		// Our own Close is a shutdown the caller knows about; logging it
		// from nats.go's goroutines would race the end of the process.
		nats.NoCallbacksAfterClientClose(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			ev := log.Warn()
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			withServer(log.Info(), nc).Msg("nats reconnected")
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Debug().Err(err).Msg("nats reconnect attempt failed")
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			ev := log.Info()
			if err := nc.LastError(); err != nil {
				ev = log.Warn().Err(err)
			}
			ev.Msg("nats connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subscription", sub.Subject)
			}
			ev.Msg("nats error")
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			withServer(log.Warn(), nc).Msg("nats server entering lame duck mode; will reconnect elsewhere")
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file: %w", err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts, nil
}

// withServer adds the connected server's URL, without credentials. Handlers
// run asynchronously: by then the connection may be gone again.
func withServer(ev *zerolog.Event, nc *nats.Conn) *zerolog.Event {
	if u := nc.ConnectedUrl(); u != "" {
		ev = ev.Str("server", RedactURL(u))
	}
	return ev
}

// RedactURL removes user information (a user and password, or a token) from
// each URL of a comma-separated NATS URL list, for logs and errors. A URL
// that does not parse is replaced by a placeholder rather than risk logging
// a secret in it.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "@") {
			parts[i] = p
			continue
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			parts[i] = "(unparsable url)"
			continue
		}
		u.User = nil
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
