package archive

import (
	"context"
	"errors"
	"time"
)

// Message is one record delivered by the Source.
type Message interface {
	// Data is the record's JSON, exactly as published. The archiver does not
	// modify or keep it after the message is acknowledged.
	Data() []byte
	// Seq is the message's stream sequence.
	Seq() uint64
}

// Source is the durable consumer the archiver reads (the stream package
// implements it over a JetStream pull consumer). It is used by one goroutine.
type Source interface {
	// Fetch returns up to max messages, waiting up to wait for the first of
	// them; no messages and a nil error when none came in time. An error is
	// treated as transient: the archiver logs it, backs off and fetches
	// again. When ctx ends, Fetch returns promptly.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Message, error)

	// Ack acknowledges messages whose records are stored, so they are not
	// delivered again. It is idempotent: acknowledging a message twice, or one
	// redelivered meanwhile, is not an error. A message never acknowledged is
	// delivered again later (the archive then holds its record twice, which
	// readers remove by record id).
	Ack(ctx context.Context, msgs []Message) error

	// Lag reports how many messages are waiting: not yet delivered, or
	// delivered and not yet acknowledged. It feeds mdtap_archive_lag_records.
	Lag(ctx context.Context) (uint64, error)
}

// Head is the position of a chain's last manifest. It is kept outside the
// object store (in NATS KV) so that a deleted tail of the chain is detectable:
// the store then ends before the head.
type Head struct {
	// Hash is the hex SHA-256 of the last manifest's bytes.
	Hash string `json:"hash"`
	// Seq is the last manifest's position in the chain (the first is 1).
	Seq uint64 `json:"seq"`
	// Records is the number of entries the chain's objects hold, up to and
	// including the last one (a manifest's ChainRecords).
	Records uint64 `json:"records"`
}

// HeadStore keeps each chain's head (the stream package implements it over a
// NATS key-value bucket; archive/storetest.RunHeadStore is its conformance
// test). Revisions are opaque, non-zero numbers that change with every Put.
// Implementations are safe for concurrent use; errors other than the
// sentinels are transient.
type HeadStore interface {
	// Get returns the chain's head and its revision. ErrNoHead when the chain
	// has none yet.
	Get(ctx context.Context, chain string) (Head, uint64, error)

	// Put stores h as the chain's head if the stored revision is still rev
	// (compare-and-set; rev 0 means the chain must have no head yet) and
	// returns the new revision. ErrHeadConflict when the revision differs:
	// another writer moved the head, and the caller reads it again.
	Put(ctx context.Context, chain string, h Head, rev uint64) (uint64, error)
}

// HeadLister is a HeadStore that can also name every chain it holds a head
// for. VerifyAll uses it to find chains deleted whole from the store: their
// manifests and objects are gone, so only the head remembers them.
type HeadLister interface {
	Chains(ctx context.Context) ([]string, error)
}

// HeadStore errors; test with errors.Is.
var (
	ErrNoHead       = errors.New("chain has no head")
	ErrHeadConflict = errors.New("chain head changed")
)
