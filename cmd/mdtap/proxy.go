package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	oklogrun "github.com/oklog/run"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/capture"
	"github.com/mdtap/mdtap/internal/admin"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/proxy"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

type proxyConfig struct {
	listen, adminListen, caDir, keyDir, policy, service string
	streamName                                          string
	createStream                                        bool
	nats                                                natsFlags
	allow                                               []string
	upstreamCA, clientCert, clientKey, upstream         string
	upstreamMinTLS                                      string
	maxCapture                                          byteSize
	queueSize                                           int
	queueMaxBytes                                       byteSize
	shutdownGrace                                       time.Duration
	keysWatch                                           time.Duration
	spoolDir, spoolFsync, onFull                        string
	spoolMaxBytes                                       byteSize
	kek, subjectsBucket                                 string
	subjectKeys                                         bool
	subjectCache                                        int
	limits                                              proxyLimits
}

// proxyLimits are the hardening flags (proxy.Limits and the upstream
// progress deadlines).
type proxyLimits struct {
	maxHeaderBytes, maxRequestLine, maxBodyBytes                            byteSize
	maxHeaderCount, maxConns                                                int
	clientHeaderTimeout, clientIdleTimeout, clientReadTimeout, clientWrite  time.Duration
	clientTLSTimeout                                                        time.Duration
	upstreamHeaderTimeout, upstreamReadTimeout, upstreamWriteTimeout, dialT time.Duration
}

func (l *proxyLimits) register(f *pflag.FlagSet) {
	l.maxHeaderBytes, l.maxRequestLine, l.maxBodyBytes = proxy.DefaultMaxHeaderBytes, proxy.DefaultMaxRequestLine, proxy.DefaultMaxBodyBytes
	f.Var(&l.maxHeaderBytes, "max-header-bytes", "largest request head (request line and headers) a client may send; 431 beyond")
	f.IntVar(&l.maxHeaderCount, "max-header-count", proxy.DefaultMaxHeaderCount, "most header fields per request; 431 beyond")
	f.Var(&l.maxRequestLine, "max-request-line", "longest request line; 414 beyond")
	f.Var(&l.maxBodyBytes, "max-body-bytes", "largest request body the sidecar accepts; 413 beyond")
	f.IntVar(&l.maxConns, "max-conns", proxy.DefaultMaxConns, "most concurrent client connections (a tunnel is one); past it new ones get 503 and are closed")
	f.DurationVar(&l.clientHeaderTimeout, "client-header-timeout", proxy.DefaultClientHeaderTimeout, "time a client has to send a request head")
	f.DurationVar(&l.clientIdleTimeout, "client-idle-timeout", proxy.DefaultClientIdleTimeout, "time a keep-alive client connection may wait for its next request")
	f.DurationVar(&l.clientReadTimeout, "client-read-timeout", proxy.DefaultClientReadTimeout, "longest wait for the next bytes of a request body (progress, not total)")
	f.DurationVar(&l.clientWrite, "client-write-timeout", proxy.DefaultClientWriteTimeout, "longest wait for a client to take the next bytes of a response (progress, not total: long streams pass)")
	f.DurationVar(&l.clientTLSTimeout, "client-tls-timeout", proxy.DefaultClientTLSTimeout, "time a client has to finish the TLS handshake inside a CONNECT tunnel")
	f.DurationVar(&l.dialT, "upstream-dial-timeout", proxy.DefaultDialTimeout, "time to connect to a provider")
	f.DurationVar(&l.upstreamHeaderTimeout, "upstream-header-timeout", proxy.DefaultResponseHeaderTimeout, "time a provider has to answer with response headers (504 beyond)")
	f.DurationVar(&l.upstreamReadTimeout, "upstream-read-timeout", proxy.DefaultUpstreamReadTimeout, "longest wait for the next bytes from a provider (progress, not total)")
	f.DurationVar(&l.upstreamWriteTimeout, "upstream-write-timeout", proxy.DefaultUpstreamWriteTimeout, "longest wait for a provider to take the next bytes of a request")
}

func (l *proxyLimits) proxyLimits() proxy.Limits {
	return proxy.Limits{MaxHeaderBytes: int(l.maxHeaderBytes), MaxHeaderCount: l.maxHeaderCount, MaxRequestLine: int(l.maxRequestLine),
		MaxBodyBytes: int64(l.maxBodyBytes), MaxConns: l.maxConns, ClientHeaderTimeout: l.clientHeaderTimeout,
		ClientIdleTimeout: l.clientIdleTimeout, ClientReadTimeout: l.clientReadTimeout, ClientWriteTimeout: l.clientWrite,
		TLSHandshakeTimeout: l.clientTLSTimeout}
}

func newProxyCmd(a *app) *cobra.Command {
	c := proxyConfig{maxCapture: proxy.DefaultMaxCaptureBytes, spoolMaxBytes: byteSize(stream.DefaultSpoolMaxBytes),
		queueMaxBytes: capture.DefaultMaxBytes}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the capture sidecar: forward MyData calls, record them protected to JetStream",
		Long: `Run the capture sidecar next to a client service.

  client service ──HTTPS_PROXY──▶ proxy ──TLS 1.3 / mTLS──▶ information provider
                                    │ after the response: decode, protect (policy, keys)
                                    ▼
                          capture queue ──▶ JetStream (mdtap.records.<sector>.<org>)

Forward mode: clients set HTTPS_PROXY=http://<listen> and trust DIR/ca.crt
(mdtap ca init); CONNECT to a host in --allow-host is intercepted and captured,
anything else gets 403. Reverse mode (--upstream URL): clients call the sidecar
over plain HTTP as if it were the provider.

A request may carry x-mdtap-subject: <internal user id>; the sidecar removes
it before forwarding and records only its blind index.

Per-host settings go in the configuration file, under proxy.hosts:
  proxy:
    hosts:
      mydata-api.bank.example: {org_code: BANK000001, client_cert: /etc/mdtap/bank.crt, client_key: /etc/mdtap/bank.key}`,
		Annotations: map[string]string{annotationExtraKeys: "hosts"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var hosts map[string]proxy.HostConfig
			if a.config != nil {
				if _, err := a.config.decodeExtra(cmd, "hosts", &hosts); err != nil {
					return usagef("%w", err)
				}
			}
			return runProxy(cmd.Context(), a, c, hosts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "proxy listen `address`")
	f.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:9090", "admin `address`: /healthz, /readyz, /metrics")
	f.StringVar(&c.caDir, "ca-dir", "", "MITM CA `dir` (mdtap ca init); forward mode")
	f.StringVar(&c.keyDir, "keys", "", "key `dir` (mdtap keys init), or nats://HOST:PORT/BUCKET that 'mdtap keys publish' fills")
	f.StringVar(&c.kek, "kek", "", "KEK `URI` to unwrap keysets read from --keys nats://… (default: the one their metadata records)")
	f.BoolVar(&c.subjectKeys, "subject-keys", false, "encrypt and tokenize records tagged with x-mdtap-subject under the subject's own keys (NATS bucket), so 'mdtap keys forget' can erase one customer")
	f.StringVar(&c.subjectsBucket, "subjects-bucket", stream.DefaultSubjectsBucket, "NATS key-value `bucket` of the per-subject keysets")
	f.IntVar(&c.subjectCache, "subject-cache", keys.DefaultSubjectCacheSize, "per-subject keysets kept in memory")
	f.StringVar(&c.policy, "policy", "", policyFlagHelp)
	f.StringVar(&c.service, "service", "", "`name` of the client service, recorded in every record")
	f.StringVar(&c.streamName, "stream", stream.DefaultStreamName, "JetStream stream `name`")
	f.BoolVar(&c.createStream, "create-stream", true, "create the stream if absent (false where sidecars have publish rights only)")
	c.nats.register(f)
	f.StringSliceVar(&c.allow, "allow-host", nil, "provider `host` to forward to: host, host:port or *.domain (repeatable)")
	f.StringVar(&c.upstreamCA, "upstream-ca", "", "extra trusted roots for providers, PEM `file` (system roots otherwise)")
	f.StringVar(&c.clientCert, "client-cert", "", "upstream mTLS client certificate PEM `file` (reloaded when it changes)")
	f.StringVar(&c.clientKey, "client-key", "", "upstream mTLS client key PEM `file`")
	f.StringVar(&c.upstream, "upstream", "", "reverse mode: the provider's base `URL` (https://…)")
	f.StringVar(&c.upstreamMinTLS, "upstream-min-tls", "1.3", "minimum TLS `version` towards providers: 1.3 (the MyData standard) or 1.2")
	f.Var(&c.maxCapture, "max-capture-bytes", "bytes captured per body; the exchange passes in full beyond it")
	f.IntVar(&c.queueSize, "queue-size", capture.DefaultSize, "records waiting to be protected and published (the loss window at a hard kill)")
	f.Var(&c.queueMaxBytes, "queue-max-bytes", "captured bytes waiting to be protected and published; past it, finished exchanges wait")
	f.DurationVar(&c.shutdownGrace, "shutdown-grace", 25*time.Second, "on SIGTERM: time to finish exchanges under way and flush records")
	f.DurationVar(&c.keysWatch, "keys-watch", keys.DefaultWatchInterval, "how often to look for rotated keysets (0: never)")
	f.StringVar(&c.spoolDir, "spool", "", "local spool `dir` for records NATS cannot take now (without one they are counted and lost)")
	f.Var(&c.spoolMaxBytes, "spool-max-bytes", "spool size cap; its last 5% holds only metadata-only records")
	f.StringVar(&c.spoolFsync, "spool-fsync", string(stream.FsyncBatch), "spool fsync `policy`: batch (group commit every 50ms), always, none (see docs/stream.md)")
	c.limits.register(f)
	f.StringVar(&c.onFull, "on-full", "fail-open", "when the spool is full: fail-open (keep metadata only) or fail-closed (503 new exchanges before forwarding)")
	return cmd
}

// runProxy wires keys, policy, stream, capture queue and proxy, and runs
// them until a signal, then shuts down in order: refuse new exchanges, let
// those under way finish, drain the queue, wait for the stream's acks.
func runProxy(ctx context.Context, a *app, c proxyConfig, hosts map[string]proxy.HostConfig) error {
	if c.keyDir == "" {
		return usagef("--keys is required")
	}
	var reverse *url.URL
	var ca *tls.Certificate
	if c.upstream != "" {
		u, err := url.Parse(c.upstream)
		if err != nil || u.Host == "" {
			return usagef("--upstream %q: want https://host[:port]", c.upstream)
		}
		reverse = u
	} else {
		if c.caDir == "" {
			return usagef("--ca-dir is required in forward mode (or give --upstream for reverse mode)")
		}
		if len(c.allow) == 0 {
			return usagef("--allow-host is required: the sidecar forwards only to listed provider hosts")
		}
		loaded, groupReadable, err := proxy.LoadCA(c.caDir)
		if err != nil {
			return err
		}
		if groupReadable {
			a.log.Warn().Str("file", c.caDir+"/"+proxy.CAKeyFile).Msg("the MITM CA key is readable by its group")
		}
		ca = loaded
	}
	minTLS := uint16(tls.VersionTLS13)
	switch c.upstreamMinTLS {
	case "1.3":
	case "1.2":
		minTLS = tls.VersionTLS12
	default:
		return usagef("--upstream-min-tls %q: want 1.3 or 1.2", c.upstreamMinTLS)
	}
	fsync, err := stream.ParseFsyncPolicy(c.spoolFsync)
	if err != nil {
		return usagef("--spool-fsync: %w", err)
	}
	switch {
	case c.onFull != "fail-open" && c.onFull != "fail-closed":
		return usagef("--on-full %q: want fail-open or fail-closed", c.onFull)
	case c.onFull == "fail-closed" && c.spoolDir == "":
		return usagef("--on-full fail-closed needs --spool")
	}
	policy, err := redact.Load(c.policy)
	if err != nil {
		return usagef("%w", err)
	}
	keySet, err := loadKeys(ctx, a.log, c.keyDir, c.kek, &c.nats)
	if err != nil {
		return err
	}
	defer keySet.Close()
	reg := admin.NewRegistry()
	redactor := redact.New(policy, keySet.Set)
	unclassified, err := redact.NewUnclassifiedCounter(reg)
	if err != nil {
		return err
	}
	redactor.OnUnclassified = unclassified.Observe

	nc, err := stream.Connect(c.nats.options(), a.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	var subjects *keys.SubjectKeys
	if c.subjectKeys {
		subjects, err = openSubjectKeys(ctx, nc, c.subjectsBucket, keySet.Set, true, keys.SubjectOptions{CacheSize: c.subjectCache})
		if err != nil {
			return err
		}
		redactor.Subjects = subjectSealers{subjects}
	}
	var spool *stream.Spool
	if c.spoolDir != "" {
		spool, err = stream.OpenSpool(stream.SpoolOptions{Dir: c.spoolDir, MaxBytes: int64(c.spoolMaxBytes),
			Fsync: fsync, Logger: a.log, Registerer: reg})
		if err != nil {
			return err
		}
		defer spool.Close() // idempotent; after the publisher, before the connection
	} else {
		a.log.Warn().Msg("no --spool: records NATS cannot take while it is down are counted and lost")
	}
	pub, err := stream.NewPublisher(nc, stream.PublisherOptions{Stream: c.streamName, Logger: a.log, Registerer: reg, Spool: spool})
	if err != nil {
		return err
	}
	var admit func() error
	if c.onFull == "fail-closed" {
		admit = func() error {
			if !spool.Accepting() {
				return errors.New("records cannot be made durable now (NATS unavailable and the spool is full)")
			}
			return nil
		}
	}
	// The proxy's completer runs on the queue; the queue is built before the
	// proxy, so hand it over through a small indirection.
	var complete func(*mdtap.Record)
	queue, err := capture.New(redactor, pub, capture.Options{
		Size: c.queueSize, MaxBytes: int64(c.queueMaxBytes), Logger: a.log, Registerer: reg,
		Prepare: func(r *mdtap.Record) { complete(r) },
	})
	if err != nil {
		return err
	}
	srv, err := proxy.New(proxy.Options{
		Allow: c.allow, CA: ca, Reverse: reverse, Service: c.service, MaxCaptureBytes: int(c.maxCapture),
		Upstream: proxy.UpstreamOptions{RootCAFile: c.upstreamCA, MinTLS: minTLS,
			ClientCert: proxy.ClientCert{CertFile: c.clientCert, KeyFile: c.clientKey}, Hosts: hosts,
			DialTimeout: c.limits.dialT, ResponseHeaderTimeout: c.limits.upstreamHeaderTimeout,
			ReadTimeout: c.limits.upstreamReadTimeout, WriteTimeout: c.limits.upstreamWriteTimeout},
		Limits: c.limits.proxyLimits(), Own: []string{c.listen, c.adminListen},
		Admit: admit, Logger: a.log, Registerer: reg,
	}, queue)
	if err != nil {
		return usagef("%w", err)
	}
	complete = srv.Completer().Complete

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.listen, err)
	}
	adminLn, err := net.Listen("tcp", c.adminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin listen %s: %w", c.adminListen, err)
	}
	var provisioned atomic.Bool
	provisioned.Store(!c.createStream)
	adminSrv := &http.Server{Handler: admin.Handler(reg, map[string]admin.Check{
		// Readiness is "an exchange sent now keeps its record". With a spool
		// that holds while NATS is away, so a NATS outage alone does not take
		// the sidecar — and, as a native sidecar, its whole pod — out of
		// service; fail-closed with the spool full does (it answers 503).
		"nats": func(context.Context) error {
			if !nc.IsConnected() && !spoolCovers(spool, c.onFull) {
				return errors.New(notReadyCause("not connected", spool))
			}
			return nil
		},
		"stream": func(context.Context) error {
			if !provisioned.Load() && !spoolCovers(spool, c.onFull) {
				return errors.New(notReadyCause("not provisioned yet", spool))
			}
			return nil
		},
	}), ReadHeaderTimeout: 5 * time.Second}

	var g oklogrun.Group
	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) {})
	g.Add(func() error {
		a.log.Info().Str("listen", ln.Addr().String()).Bool("reverse", reverse != nil).Str("stream", c.streamName).
			Str("policy", policy.ID).Msg("proxy serving")
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("proxy: %w", err)
		}
		return nil
	}, func(error) {
		shutdownProxy(a, c, srv, queue, pub, spool)
	})
	if c.createStream {
		// A sidecar may start before NATS: provision in the background while
		// records spool.
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			if err := ensureStreamWhenUp(sctx, a, nc, c.streamName); err != nil {
				if sctx.Err() != nil {
					return nil
				}
				return err
			}
			provisioned.Store(true)
			<-sctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	g.Add(func() error {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	}, func(error) { adminSrv.Close() })
	if c.keysWatch > 0 {
		wctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			keySet.Watch(wctx, c.keysWatch, a.log)
			return nil
		}, func(error) { cancel() })
	}
	if subjects != nil {
		// Forgotten or re-wrapped subject keysets leave the cache at once.
		sctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			subjects.Watch(sctx, a.log)
			<-sctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	return g.Run()
}

// shutdownProxy stops in order, within the grace period: refuse new
// exchanges, close the listener, let exchanges under way finish, drain the
// capture queue into the stream, wait for the stream's acks.
func shutdownProxy(a *app, c proxyConfig, srv *proxy.Server, queue *capture.Queue, pub *stream.Publisher, spool *stream.Spool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	srv.Shutdown(ctx) // refuses new exchanges, also inside open tunnels
	if err := srv.WaitIdle(ctx); err != nil {
		a.log.Error().Str("cause", err.Error()).Msg("shutdown: exchanges still under way")
	}
	srv.Close()
	if err := queue.Close(ctx); err != nil {
		a.log.Error().Str("cause", err.Error()).Int("left", queue.Len()).Msg("shutdown: capture queue not drained")
	}
	// Flush before Close: Close fails what is still in flight (into the
	// spool), so acks about to arrive would be replayed as duplicates.
	if err := pub.Flush(ctx); err != nil {
		a.log.Error().Str("cause", err.Error()).Msg("shutdown: stream acks still pending")
	}
	if err := pub.Close(); err != nil {
		a.log.Error().Str("cause", err.Error()).Msg("shutdown: publisher")
	}
	if spool != nil {
		if err := spool.Close(); err != nil {
			a.log.Error().Str("cause", err.Error()).Msg("shutdown: spool")
		}
	}
	srv.CloseIdleConnections()
	a.log.Info().Dur("took", time.Since(start)).Msg("proxy stopped")
}

// ensureStreamWhenUp provisions the stream once NATS answers; a sidecar may
// start before NATS, so it retries until the context ends.
func ensureStreamWhenUp(ctx context.Context, a *app, nc *nats.Conn, name string) error {
	cfg := stream.DefaultStreamConfig()
	cfg.Name = name
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := stream.EnsureOn(actx, nc, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, stream.ErrIncompatibleStream) {
			return err
		}
		if attempt == 0 {
			a.log.Warn().Str("cause", err.Error()).Msg("stream not provisioned yet; retrying")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("provision stream %s: %w", name, err)
		case <-time.After(time.Second):
		}
	}
}

// spoolCovers reports whether the spool keeps records while NATS cannot:
// it has room, or, fail-open, full records degrade to metadata and traffic
// flows.
func spoolCovers(spool *stream.Spool, onFull string) bool {
	return spool != nil && (spool.Accepting() || onFull == "fail-open")
}

func notReadyCause(what string, spool *stream.Spool) string {
	if spool == nil {
		return what + ", and no --spool to keep records meanwhile"
	}
	return what + ", and the spool is full (fail-closed)"
}
