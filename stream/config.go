package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
)

// Defaults of the records stream and of the archivers' consumer.
const (
	// DefaultStreamName is the name of the records stream.
	DefaultStreamName = "MDTAP"
	// DefaultReplicas is the stream's replica count. One suits a single
	// server; a cluster wants 3.
	DefaultReplicas = 1
	// Unlimited as StreamConfig.MaxBytes sets no size limit.
	Unlimited int64 = -1
	// DefaultDuplicates is the duplicate window: a record published again
	// within it (a retry, a spool replay) is stored once.
	DefaultDuplicates = 2 * time.Hour

	// DefaultConsumerName is the durable consumer the archivers share.
	DefaultConsumerName = "mdtap-archive"
	// DefaultAckWait is how long an archiver may hold a record before it is
	// delivered again. It covers writing a batch object and its manifest.
	DefaultAckWait = 2 * time.Minute
	// DefaultMaxAckPending bounds the records the archivers hold
	// unacknowledged at once, across all of them: room for several large
	// batches.
	DefaultMaxAckPending = 100_000
)

// maxReplicas is the largest replica count JetStream allows.
const maxReplicas = 5

// ErrIncompatibleStream is returned by Ensure when a stream of that name
// exists with settings that JetStream cannot change in place (storage,
// retention, a mirror, a sealed stream).
var ErrIncompatibleStream = errors.New("incompatible existing stream")

// StreamConfig holds the records stream's settings that an operator chooses.
// The rest are fixed by the design (see docs/stream.md): subjects
// mdtap.records.>, file storage, work-queue retention, discard new, no max
// age. Zero values take the defaults.
type StreamConfig struct {
	// Name of the stream; default DefaultStreamName.
	Name string
	// Replicas of the stream, 1 to 5; default DefaultReplicas.
	Replicas int
	// MaxBytes caps the stream's size; when it is full the stream refuses
	// new records (discard new) and the sidecars spool them. Unlimited (-1)
	// or 0 sets no cap; the default is Unlimited.
	MaxBytes int64
	// Duplicates is the duplicate window; default DefaultDuplicates.
	Duplicates time.Duration
}

// DefaultStreamConfig returns the default settings.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{
		Name:       DefaultStreamName,
		Replicas:   DefaultReplicas,
		MaxBytes:   Unlimited,
		Duplicates: DefaultDuplicates,
	}
}

func (c StreamConfig) withDefaults() StreamConfig {
	d := DefaultStreamConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.Duplicates == 0 {
		c.Duplicates = d.Duplicates
	}
	return c
}

// Validate reports the first setting that JetStream would refuse, naming it.
// Zero values are valid: they mean the default.
func (c StreamConfig) Validate() error {
	c = c.withDefaults()
	if err := validName(c.Name); err != nil {
		return fmt.Errorf("stream config: name: %w", err)
	}
	if c.Replicas < 1 || c.Replicas > maxReplicas {
		return fmt.Errorf("stream config: replicas %d: want 1 to %d", c.Replicas, maxReplicas)
	}
	if c.MaxBytes < Unlimited {
		return fmt.Errorf("stream config: max bytes %d: want a positive size or %d for unlimited", c.MaxBytes, Unlimited)
	}
	if c.Duplicates < 0 {
		return fmt.Errorf("stream config: duplicate window %s is negative", c.Duplicates)
	}
	return nil
}

// validName checks a stream or consumer name as the server does: not empty,
// no whitespace, no subject wildcards or separators, no path separators
// (the file store makes a directory of it).
func validName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 255 {
		return fmt.Errorf("%q is longer than 255 characters", name)
	}
	if strings.ContainsAny(name, " \t\r\n\f.*>/\\") {
		return fmt.Errorf("%q may not contain whitespace, '.', '*', '>', '/' or '\\'", name)
	}
	return nil
}

// apply sets the settings mdtap manages on sc and leaves the others (an
// operator's compression, placement, metadata) as they are.
func (c StreamConfig) apply(sc *jetstream.StreamConfig) {
	sc.Name = c.Name
	if sc.Description == "" {
		sc.Description = "mdtap protected records (mdtap stream init)"
	}
	sc.Subjects = []string{mdtap.StreamSubjects}
	sc.Storage = jetstream.FileStorage
	sc.Retention = jetstream.WorkQueuePolicy
	sc.Discard = jetstream.DiscardNew
	sc.MaxAge = 0
	sc.Duplicates = c.Duplicates
	sc.Replicas = c.Replicas
	sc.MaxBytes = c.MaxBytes
}

// incompatible lists the settings of an existing stream that JetStream cannot
// change to what mdtap needs, or nil.
func incompatible(cur jetstream.StreamConfig) error {
	var errs []error
	if cur.Retention != jetstream.WorkQueuePolicy {
		errs = append(errs, fmt.Errorf("retention is %s, want workqueue (retention cannot change to or from workqueue)", retentionName(cur.Retention)))
	}
	if cur.Storage != jetstream.FileStorage {
		errs = append(errs, fmt.Errorf("storage is %s, want file (storage cannot change)", storageName(cur.Storage)))
	}
	if cur.Mirror != nil {
		errs = append(errs, fmt.Errorf("it mirrors stream %s (a mirror takes no subjects)", cur.Mirror.Name))
	}
	if cur.Sealed {
		errs = append(errs, errors.New("it is sealed"))
	}
	return errors.Join(errs...)
}

// Ensure creates the records stream if it is absent, or brings an existing
// one to cfg and the fixed settings (CreateOrUpdateStream). Settings mdtap
// does not manage are left as the operator set them. It fails with
// ErrIncompatibleStream, naming the settings, when an existing stream cannot
// be changed in place; and when another stream already takes the record
// subjects.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	s, _, err := ensure(ctx, js, cfg)
	return s, err
}

// ensure is Ensure, also reporting whether it created the stream.
func ensure(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, bool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, false, err
	}
	var want jetstream.StreamConfig
	created := false
	existing, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		created = true
	case err != nil:
		return nil, false, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	default:
		want = existing.CachedInfo().Config
		if err := incompatible(want); err != nil {
			return nil, false, fmt.Errorf("ensure stream %s: %w: %w", cfg.Name, ErrIncompatibleStream, err)
		}
	}
	cfg.apply(&want)
	s, err := js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case errCodeSubjectOverlap:
				if other, lerr := js.StreamNameBySubject(ctx, mdtap.StreamSubjects); lerr == nil && other != "" {
					return nil, false, fmt.Errorf("ensure stream %s: stream %s already takes subjects overlapping %s: %w", cfg.Name, other, mdtap.StreamSubjects, err)
				}
			case errCodeStorageResources:
				// A file stream with max bytes reserves them up front.
				return nil, false, fmt.Errorf("ensure stream %s: max bytes %s (on each of %d replicas) is more than JetStream can reserve; lower it, or raise the server's max_file_store or the account's storage limit: %w",
					cfg.Name, humanize.IBytes(uint64(cfg.MaxBytes)), cfg.Replicas, err)
			}
		}
		return nil, false, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, created, nil
}

// JetStream API error codes this package branches on (nats-server
// jetstream_errors_generated.go).
const (
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // account or server storage exhausted
	errCodeStreamStoreFailed     jetstream.ErrorCode = 10077 // "{err}": maximum bytes/messages exceeded, …
	errCodeSubjectOverlap        jetstream.ErrorCode = 10065 // subjects overlap with an existing stream
	errCodeStorageResources      jetstream.ErrorCode = 10047 // insufficient storage resources available
	errCodeWQMultipleUnfiltered  jetstream.ErrorCode = 10099 // multiple non-filtered consumers not allowed on workqueue stream
	errCodeWQConsumerNotUnique   jetstream.ErrorCode = 10100 // filtered consumer not unique on workqueue stream
	errCodeMessageExceedsMaximum                     = jetstream.JSErrCodeStreamMessageExceedsMaximum
)

// consumerConfig is the archivers' durable pull consumer.
func consumerConfig(name string, ackWait time.Duration) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "mdtap archivers (mdtap stream init)",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1, // never give up on a record: it stays until archived
		MaxAckPending: DefaultMaxAckPending,
		FilterSubject: mdtap.StreamSubjects,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// EnsureConsumer creates, or brings to mdtap's settings, the durable pull
// consumer the archivers share on stream streamName (empty: the default
// stream): explicit acks, DefaultAckWait, DefaultMaxAckPending, unlimited
// redeliveries, filter mdtap.records.>. An empty consumerName means
// DefaultConsumerName.
//
// A work-queue stream allows only one consumer per subject, so every archiver
// must use the same consumer; EnsureConsumer fails, naming the other
// consumers, when one with another name already takes the record subjects.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, streamName, consumerName string) (jetstream.Consumer, error) {
	return EnsureConsumerAckWait(ctx, js, streamName, consumerName, 0)
}

// EnsureConsumerAckWait is EnsureConsumer with the consumer's ack wait: how
// long a delivered record may stay unacknowledged before JetStream delivers
// it again (0: DefaultAckWait). It also bounds how long records stay stuck
// when a delivery is lost (a fetch in flight while NATS restarts).
func EnsureConsumerAckWait(ctx context.Context, js jetstream.JetStream, streamName, consumerName string, ackWait time.Duration) (jetstream.Consumer, error) {
	if streamName == "" {
		streamName = DefaultStreamName
	}
	if consumerName == "" {
		consumerName = DefaultConsumerName
	}
	if err := validName(consumerName); err != nil {
		return nil, fmt.Errorf("ensure consumer: name: %w", err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, streamName, consumerConfig(consumerName, ackWait))
	if err == nil {
		return c, nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeWQMultipleUnfiltered || apiErr.ErrorCode == errCodeWQConsumerNotUnique) {
		others := consumerNames(ctx, js, streamName)
		return nil, fmt.Errorf("ensure consumer %s on stream %s: the stream is a work queue, which allows one consumer per subject, and %s already takes the record subjects; archivers share one consumer: use that name, or delete the other consumer once it is drained: %w",
			consumerName, streamName, others, err)
	}
	return nil, fmt.Errorf("ensure consumer %s on stream %s: %w", consumerName, streamName, err)
}

// consumerNames lists a stream's consumers for an error message.
func consumerNames(ctx context.Context, js jetstream.JetStream, streamName string) string {
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		return "another consumer"
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if l.Err() != nil || len(names) == 0 {
		return "another consumer"
	}
	return "consumer " + strings.Join(names, ", ")
}

// Summary describes the provisioned stream and consumer, for `mdtap stream
// init` to print.
type Summary struct {
	Stream     string
	Created    bool // the stream did not exist before
	Subjects   []string
	Storage    string // file
	Retention  string // workqueue
	Discard    string // new
	MaxAge     time.Duration
	Replicas   int
	MaxBytes   int64 // Unlimited: no cap
	Duplicates time.Duration
	Messages   uint64
	Bytes      uint64

	Consumer      string
	Filter        string
	AckWait       time.Duration
	MaxAckPending int
	MaxDeliver    int // -1: unlimited
	Pending       uint64
}

// Provision is what `mdtap stream init` does: Ensure the stream and
// EnsureConsumer the archivers' consumer, over nc.
// EnsureOn is Ensure over a connection, for callers that do not import nats.go.
func EnsureOn(ctx context.Context, nc *nats.Conn, cfg StreamConfig) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	_, err = Ensure(ctx, js, cfg)
	return err
}

func Provision(ctx context.Context, nc *nats.Conn, cfg StreamConfig, consumerName string) (Summary, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return Summary{}, fmt.Errorf("jetstream: %w", err)
	}
	s, created, err := ensure(ctx, js, cfg)
	if err != nil {
		return Summary{}, err
	}
	si := s.CachedInfo()
	c, err := EnsureConsumer(ctx, js, si.Config.Name, consumerName)
	if err != nil {
		return Summary{}, err
	}
	ci := c.CachedInfo()
	return Summary{
		Stream:     si.Config.Name,
		Created:    created,
		Subjects:   si.Config.Subjects,
		Storage:    storageName(si.Config.Storage),
		Retention:  retentionName(si.Config.Retention),
		Discard:    discardName(si.Config.Discard),
		MaxAge:     si.Config.MaxAge,
		Replicas:   si.Config.Replicas,
		MaxBytes:   si.Config.MaxBytes,
		Duplicates: si.Config.Duplicates,
		Messages:   si.State.Msgs,
		Bytes:      si.State.Bytes,

		Consumer:      ci.Name,
		Filter:        ci.Config.FilterSubject,
		AckWait:       ci.Config.AckWait,
		MaxAckPending: ci.Config.MaxAckPending,
		MaxDeliver:    ci.Config.MaxDeliver,
		Pending:       ci.NumPending,
	}, nil
}

func retentionName(r jetstream.RetentionPolicy) string {
	switch r {
	case jetstream.LimitsPolicy:
		return "limits"
	case jetstream.InterestPolicy:
		return "interest"
	case jetstream.WorkQueuePolicy:
		return "workqueue"
	}
	return fmt.Sprintf("unknown(%d)", int(r))
}

func storageName(s jetstream.StorageType) string {
	switch s {
	case jetstream.FileStorage:
		return "file"
	case jetstream.MemoryStorage:
		return "memory"
	}
	return fmt.Sprintf("unknown(%d)", int(s))
}

func discardName(d jetstream.DiscardPolicy) string {
	switch d {
	case jetstream.DiscardOld:
		return "old"
	case jetstream.DiscardNew:
		return "new"
	}
	return fmt.Sprintf("unknown(%d)", int(d))
}
