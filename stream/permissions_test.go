package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap/internal/natstest"
)

// docsConf returns the NATS configuration block of docs/stream.md.
func docsConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "stream.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```conf\n")
	if !ok {
		t.Fatal("docs/stream.md has no ```conf block")
	}
	conf, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatal("docs/stream.md: unterminated ```conf block")
	}
	return conf
}

// The permission block of docs/stream.md, as written, lets each role do its
// job and no more.
func TestDocumentedPermissions(t *testing.T) {
	pw := map[string]string{"admin": "adm1n-pw", "proxy": "pr0xy-pw", "archive": "arch1ve-pw"}
	for role, p := range pw {
		t.Setenv("MDTAP_"+strings.ToUpper(role)+"_PASSWORD", p)
	}
	// natstest's readiness check connects without credentials; let it in
	// as a user of its own account.
	conf := strings.Replace(docsConf(t), "accounts {\n",
		"accounts {\n  NATSTEST { jetstream: enabled, users: [{user: natstest}] }\n", 1)
	conf += "\nno_auth_user: natstest\n"
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("docs/stream.md configuration: %v", err)
	}
	srv := natstest.Start(t, natstest.WithServerOptions(func(o *server.Options) {
		o.Accounts, o.Users, o.NoAuthUser = parsed.Accounts, parsed.Users, parsed.NoAuthUser
	}))
	connect := func(role string) *nats.Conn {
		t.Helper()
		nc, err := Connect(ConnOptions{
			URL: srv.URL(), User: "mdtap-" + role, Password: pw[role],
			InboxPrefix: "_INBOX_mdtap_" + role, FailFast: true,
		}, testLogger(t))
		if err != nil {
			t.Fatalf("connect as %s: %v", role, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Admin: stream init.
	admin := connect("admin")
	if _, err := Provision(ctx, admin, StreamConfig{}, ""); err != nil {
		t.Fatalf("stream init as mdtap-admin: %v", err)
	}

	// Proxy: publishes and gets its acks, nothing else.
	proxy := connect("proxy")
	f := &failures{}
	p, err := NewPublisher(proxy, PublisherOptions{OnFailure: f.add, Logger: testLogger(t), AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 10
	for i := range n {
		mustPublish(t, p, testRecord(i))
	}
	flush(t, p)
	if _, errs := f.snapshot(); len(errs) != 0 {
		t.Fatalf("publish as mdtap-proxy: %v", errs)
	}
	pjs, _ := jetstream.New(proxy)
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	if _, err := pjs.CreateStream(short, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
		t.Error("mdtap-proxy created a stream")
	}
	cancelShort()
	for _, subj := range []string{"mdtap.records.>", "_INBOX_mdtap_archive.>", "_INBOX.>"} {
		if err := subscribeDenied(t, proxy, subj); err != nil {
			t.Errorf("mdtap-proxy: %v", err)
		}
	}

	// Archive: consumes and acknowledges through the durable consumer.
	archive := connect("archive")
	ajs, _ := jetstream.New(archive)
	c, err := ajs.Consumer(ctx, DefaultStreamName, DefaultConsumerName)
	if err != nil {
		t.Fatalf("consumer as mdtap-archive: %v", err)
	}
	got := 0
	for got < n && ctx.Err() == nil {
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch as mdtap-archive: %v", err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("ack as mdtap-archive: %v", err)
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("mdtap-archive consumed %d records, want %d", got, n)
	}
	ajsAdmin, _ := jetstream.New(admin)
	waitFor(t, 5*time.Second, "stream drained", func() error {
		if m := streamMsgs(t, ajsAdmin, DefaultStreamName); m != 0 {
			return fmt.Errorf("%d messages left", m)
		}
		return nil
	})
	if err := subscribeDenied(t, archive, "mdtap.records.>"); err != nil {
		t.Errorf("mdtap-archive: %v", err)
	}
}

// subscribeDenied reports an error unless the server refuses nc a
// subscription to subj.
func subscribeDenied(t *testing.T, nc *nats.Conn, subj string) error {
	t.Helper()
	denied := make(chan error, 1)
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
		// nats.go reports it without the subscription; the text names it.
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "Subscription to \""+subj+"\"") {
			select {
			case denied <- err:
			default:
			}
			return
		}
		if prev != nil {
			prev(c, s, err)
		}
	})
	defer nc.SetErrorHandler(prev)
	sub, err := nc.SubscribeSync(subj)
	if err != nil {
		return nil // refused locally
	}
	defer sub.Unsubscribe()
	select {
	case <-denied:
		return nil
	case <-time.After(2 * time.Second):
		return fmt.Errorf("subscribing to %s was allowed", subj)
	}
}
