package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/s3store"
	"github.com/mdtap/mdtap/internal/admin"
	"github.com/mdtap/mdtap/stream"
)

type archiveConfig struct {
	nats                     natsFlags
	streamName, consumer     string
	storeURL, storeCA, chain string
	headsBucket              string
	createBucket             bool
	createStream             bool
	adminListen              string
	batchBytes               byteSize
	batchRecords             int
	batchAge                 time.Duration
	ackWait                  time.Duration
}

func newArchiveCmd(a *app) *cobra.Command {
	c := archiveConfig{batchBytes: archive.DefaultBatchMaxBytes}
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Archive protected records from JetStream to object storage",
		Long: `Run an archiver: a durable pull consumer on the records stream that writes
batches to object storage and acknowledges them only once stored.

  JetStream MDTAP ──(consumer mdtap-archive, shared)──▶ archiver ──▶ store
                                                          │  records/dt=…/hour=…/sector=…/<chain>-<seq>.jsonl.zst
                                                          │  manifests/<chain>/<seq>.json (hash-chained)
                                                          ▼
                                        chain head in NATS KV (mdtap_heads)

Several archivers share the consumer; each writes its own manifest chain
(--chain, default <consumer>.<host>, stable across restarts). A crash can
duplicate a batch, never lose one; readers remove duplicates by record id.

Store URLs: s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&secure=false&region=R
(credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or file:///ABS/DIR.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runArchive(cmd.Context(), a, c)
		},
	}
	f := cmd.Flags()
	c.nats.register(f)
	f.StringVar(&c.streamName, "stream", stream.DefaultStreamName, "JetStream stream `name`")
	f.StringVar(&c.consumer, "consumer", stream.DefaultConsumerName, "durable consumer `name`, shared by all archivers")
	f.StringVar(&c.storeURL, "store", "", "archive store `URL`: s3://BUCKET[/PREFIX]?endpoint=… or file:///ABS/DIR")
	f.StringVar(&c.storeCA, "store-ca", "", "PEM `file` of CAs to trust for a private S3 endpoint")
	f.BoolVar(&c.createBucket, "create-bucket", false, "create the bucket if it does not exist")
	f.BoolVar(&c.createStream, "create-stream", true, "create the stream and consumer if absent (false where archivers may only consume)")
	f.StringVar(&c.chain, "chain", "", "manifest chain `id` (default <consumer>.<host name>)")
	f.StringVar(&c.headsBucket, "heads-bucket", stream.DefaultHeadsBucket, "NATS key-value `bucket` keeping the chain heads")
	f.Var(&c.batchBytes, "batch-max-bytes", "write a batch at this many record bytes")
	f.IntVar(&c.batchRecords, "batch-max-records", archive.DefaultBatchMaxRecords, "write a batch at this many records")
	f.DurationVar(&c.batchAge, "batch-max-age", archive.DefaultBatchMaxAge, "write a batch when its first record is this old")
	f.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:9091", "admin `address`: /healthz, /readyz, /metrics")
	f.DurationVar(&c.ackWait, "ack-wait", stream.DefaultAckWait, "redeliver a record not acknowledged this long after delivery (with --create-stream; longer than a batch takes to store)")
	return cmd
}

// archiverParts is a wired archiver, for the command and for the demo.
type archiverParts struct {
	archiver *archive.Archiver
	consumer *stream.Consumer
	store    archive.Store
	chain    string
}

func buildArchiver(ctx context.Context, a *app, c archiveConfig, nc *nats.Conn, store archive.Store, reg prometheus.Registerer) (*archiverParts, error) {
	if c.createStream {
		cfg := stream.DefaultStreamConfig()
		cfg.Name = c.streamName
		if err := stream.EnsureOn(ctx, nc, cfg); err != nil {
			return nil, err
		}
	}
	cons, err := stream.OpenConsumer(ctx, nc, c.streamName, c.consumer, c.createStream, c.ackWait)
	if err != nil {
		return nil, err
	}
	kv, err := stream.OpenKV(ctx, nc, c.headsBucket, 0)
	if err != nil {
		return nil, err
	}
	chain := c.chain
	if chain == "" {
		host, _ := os.Hostname()
		chain = archive.ChainID(c.consumer, host)
	}
	if err := archive.ValidChain(chain); err != nil {
		return nil, usagef("--chain: %w", err)
	}
	o := archive.DefaultOptions()
	o.Chain, o.BatchMaxBytes, o.BatchMaxRecords, o.BatchMaxAge = chain, int(c.batchBytes), c.batchRecords, c.batchAge
	o.Logger, o.Registerer = a.log, reg
	arch, err := archive.New(sourceAdapter{c: cons, maxBytes: o.BatchMaxBytes}, store, headsAdapter{kv}, o)
	if err != nil {
		return nil, err
	}
	return &archiverParts{archiver: arch, consumer: cons, store: store, chain: chain}, nil
}

func runArchive(ctx context.Context, a *app, c archiveConfig) error {
	if c.storeURL == "" {
		return usagef("--store is required")
	}
	if err := c.nats.validate(); err != nil {
		return err
	}
	store, err := openStore(ctx, c.storeURL, c.storeCA, c.createBucket)
	if err != nil {
		return err
	}
	opts := c.nats.options()
	nc, err := stream.Connect(opts, a.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := admin.NewRegistry()
	var parts *archiverParts
	for attempt := 0; ; attempt++ {
		parts, err = buildArchiver(ctx, a, c, nc, store, reg)
		if err == nil {
			break
		}
		var ue *usageError
		if errors.As(err, &ue) || ctx.Err() != nil {
			return err
		}
		if attempt == 0 {
			a.log.Warn().Str("cause", err.Error()).Msg("consumer not ready yet; retrying")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	adminLn, err := net.Listen("tcp", c.adminListen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", c.adminListen, err)
	}
	adminSrv := &http.Server{Handler: admin.Handler(reg, map[string]admin.Check{
		"nats": func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
	}), ReadHeaderTimeout: 5 * time.Second}

	a.log.Info().Str("store", c.storeURL).Str("chain", parts.chain).Str("consumer", c.consumer).Msg("archiver running")
	runCtx, cancel := context.WithCancel(ctx)
	var g oklogrun.Group
	g.Add(func() error { return parts.archiver.Run(runCtx) }, func(error) { cancel() })
	g.Add(func() error {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	}, func(error) { adminSrv.Close() })
	return g.Run()
}

// openStore opens an archive store from its URL.
func openStore(ctx context.Context, raw, caFile string, create bool) (archive.Store, error) {
	u, err := mdtap.ParseStoreURL(raw)
	if err != nil {
		return nil, usagef("--store: %w", err)
	}
	switch u.Scheme {
	case "file":
		if create {
			if err := os.MkdirAll(u.Dir, 0o750); err != nil {
				return nil, fmt.Errorf("create store dir: %w", err)
			}
		}
		return archive.NewFileStore(u.Dir)
	}
	s, err := s3store.New(u, s3store.Options{CAFile: caFile})
	if err != nil {
		return nil, err
	}
	if err := s.EnsureBucket(ctx, create); err != nil {
		return nil, err
	}
	return s, nil
}

// sourceAdapter presents the stream's consumer as the archiver's Source.
// sourceAdapter feeds the archiver from the durable consumer. Each pull is
// bounded by a batch's bytes as well as its records, so a backlog holds at
// most about two batches in memory (the one being built and one pulled).
type sourceAdapter struct {
	c        *stream.Consumer
	maxBytes int
}

func (s sourceAdapter) Fetch(ctx context.Context, max int, wait time.Duration) ([]archive.Message, error) {
	ds, err := s.c.FetchBytes(ctx, max, s.maxBytes, wait)
	msgs := make([]archive.Message, len(ds))
	for i, d := range ds {
		msgs[i] = d
	}
	return msgs, err
}

func (s sourceAdapter) Ack(ctx context.Context, msgs []archive.Message) error {
	ds := make([]*stream.Delivery, len(msgs))
	for i, m := range msgs {
		d, ok := m.(*stream.Delivery)
		if !ok {
			return fmt.Errorf("ack: message %d is not from this consumer", i)
		}
		ds[i] = d
	}
	return s.c.Ack(ctx, ds)
}

func (s sourceAdapter) Lag(ctx context.Context) (uint64, error) { return s.c.Lag(ctx) }

// headsAdapter keeps chain heads in the stream's key-value bucket, as JSON
// under "chains.<chain>".
type headsAdapter struct{ kv *stream.KV }

func headKey(chain string) string { return "chains." + chain }

func (h headsAdapter) Get(ctx context.Context, chain string) (archive.Head, uint64, error) {
	b, rev, err := h.kv.Get(ctx, headKey(chain))
	if errors.Is(err, stream.ErrKeyNotFound) {
		return archive.Head{}, 0, archive.ErrNoHead
	}
	if err != nil {
		return archive.Head{}, 0, err
	}
	var head archive.Head
	if err := json.Unmarshal(b, &head); err != nil {
		return archive.Head{}, 0, fmt.Errorf("chain %s head: %w", chain, err)
	}
	return head, rev, nil
}

// Chains names every chain with a head (archive.HeadLister).
func (h headsAdapter) Chains(ctx context.Context) ([]string, error) {
	keys, err := h.kv.Keys(ctx, "chains.")
	if err != nil {
		return nil, err
	}
	chains := make([]string, 0, len(keys))
	for _, k := range keys {
		chains = append(chains, strings.TrimPrefix(k, "chains."))
	}
	return chains, nil
}

func (h headsAdapter) Put(ctx context.Context, chain string, head archive.Head, rev uint64) (uint64, error) {
	b, err := json.Marshal(head)
	if err != nil {
		return 0, err
	}
	n, err := h.kv.Put(ctx, headKey(chain), b, rev)
	if errors.Is(err, stream.ErrRevisionConflict) {
		return 0, archive.ErrHeadConflict
	}
	return n, err
}
