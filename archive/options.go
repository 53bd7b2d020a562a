package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults of Options. A batch is written when it reaches any of the three
// limits.
const (
	// DefaultBatchMaxBytes caps a batch's uncompressed record bytes (8 MiB).
	DefaultBatchMaxBytes = 8 << 20
	// DefaultBatchMaxRecords caps a batch's messages.
	DefaultBatchMaxRecords = 10000
	// DefaultBatchMaxAge caps how long the first message of a batch waits.
	DefaultBatchMaxAge = 5 * time.Second
	// DefaultCompression is the zstd level: SpeedFastest compresses protected
	// records about as well as the default level at twice the speed (see
	// docs/archive.md for the numbers).
	DefaultCompression = zstd.SpeedFastest
	// DefaultUploads is how many objects of one batch upload at once.
	DefaultUploads = 4
	// DefaultBackoffMin and DefaultBackoffMax bound the wait between retries
	// after a store, fetch or ack error; it doubles per failure, with jitter.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultShutdownGrace is how long Run keeps trying to write and
	// acknowledge the batch in hand once its context ends.
	DefaultShutdownGrace = 10 * time.Second
	// DefaultAckAttempts is how often an acknowledgement is tried before
	// the archiver gives up on it (the messages are then delivered again and
	// archived twice, which readers remove).
	DefaultAckAttempts = 5
	// DefaultLagInterval is how often the lag gauge is refreshed.
	DefaultLagInterval = 5 * time.Second
)

// Options configure an Archiver. Zero fields take their defaults.
type Options struct {
	// Chain names this archiver's manifest chain (ValidChain); required.
	// Give every archiver its own (ChainID(consumer, host)) and keep it
	// across restarts, so a restarted archiver continues its chain.
	Chain string

	BatchMaxBytes   int           // default DefaultBatchMaxBytes
	BatchMaxRecords int           // default DefaultBatchMaxRecords
	BatchMaxAge     time.Duration // default DefaultBatchMaxAge

	// Compression is the zstd level; default DefaultCompression.
	Compression zstd.EncoderLevel
	// Uploads bounds concurrent object uploads; default DefaultUploads.
	Uploads int

	BackoffMin    time.Duration // default DefaultBackoffMin
	BackoffMax    time.Duration // default DefaultBackoffMax
	ShutdownGrace time.Duration // default DefaultShutdownGrace
	AckAttempts   int           // default DefaultAckAttempts
	LagInterval   time.Duration // default DefaultLagInterval

	// Now is the clock (batch age, manifest and dead-letter times); default
	// time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends (backoff); default a timer. Tests pass
	// one that advances a fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the archiver's logs (never a payload). The zero value
	// logs nothing.
	Logger zerolog.Logger
	// Registerer takes the archive metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// DefaultOptions returns the defaults, Chain left empty.
func DefaultOptions() Options {
	return Options{
		BatchMaxBytes:   DefaultBatchMaxBytes,
		BatchMaxRecords: DefaultBatchMaxRecords,
		BatchMaxAge:     DefaultBatchMaxAge,
		Compression:     DefaultCompression,
		Uploads:         DefaultUploads,
		BackoffMin:      DefaultBackoffMin,
		BackoffMax:      DefaultBackoffMax,
		ShutdownGrace:   DefaultShutdownGrace,
		AckAttempts:     DefaultAckAttempts,
		LagInterval:     DefaultLagInterval,
		Now:             time.Now,
		Sleep:           sleep,
	}
}

// withDefaults fills zero fields with their defaults.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.BatchMaxBytes == 0 {
		o.BatchMaxBytes = d.BatchMaxBytes
	}
	if o.BatchMaxRecords == 0 {
		o.BatchMaxRecords = d.BatchMaxRecords
	}
	if o.BatchMaxAge == 0 {
		o.BatchMaxAge = d.BatchMaxAge
	}
	if o.Compression == 0 {
		o.Compression = d.Compression
	}
	if o.Uploads == 0 {
		o.Uploads = d.Uploads
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = d.BackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = d.BackoffMax
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = d.ShutdownGrace
	}
	if o.AckAttempts == 0 {
		o.AckAttempts = d.AckAttempts
	}
	if o.LagInterval == 0 {
		o.LagInterval = d.LagInterval
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.Sleep == nil {
		o.Sleep = d.Sleep
	}
	return o
}

// Validate reports the first field that is out of range, by name.
func (o Options) Validate() error {
	if err := ValidChain(o.Chain); err != nil {
		return fmt.Errorf("archive options: Chain: %w", err)
	}
	switch {
	case o.BatchMaxBytes <= 0:
		return fmt.Errorf("archive options: BatchMaxBytes %d is not positive", o.BatchMaxBytes)
	case o.BatchMaxRecords <= 0:
		return fmt.Errorf("archive options: BatchMaxRecords %d is not positive", o.BatchMaxRecords)
	case o.BatchMaxAge <= 0:
		return fmt.Errorf("archive options: BatchMaxAge %s is not positive", o.BatchMaxAge)
	case o.Compression < zstd.SpeedFastest || o.Compression > zstd.SpeedBestCompression:
		return fmt.Errorf("archive options: Compression %d is not a zstd level", o.Compression)
	case o.Uploads <= 0:
		return fmt.Errorf("archive options: Uploads %d is not positive", o.Uploads)
	case o.BackoffMin <= 0 || o.BackoffMax < o.BackoffMin:
		return fmt.Errorf("archive options: BackoffMin %s and BackoffMax %s: want 0 < min <= max", o.BackoffMin, o.BackoffMax)
	case o.ShutdownGrace < 0:
		return fmt.Errorf("archive options: ShutdownGrace %s is negative", o.ShutdownGrace)
	case o.AckAttempts <= 0:
		return fmt.Errorf("archive options: AckAttempts %d is not positive", o.AckAttempts)
	case o.LagInterval <= 0:
		return fmt.Errorf("archive options: LagInterval %s is not positive", o.LagInterval)
	case o.Now == nil:
		return fmt.Errorf("archive options: Now is nil")
	case o.Sleep == nil:
		return fmt.Errorf("archive options: Sleep is nil")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
