package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap"
)

// Conditions callers branch on. A *PublishError matches one of them with
// errors.Is; its Reason is the matching reason label.
var (
	// ErrUnprotected: the record has no Policy, so it may hold plaintext; it
	// is never published. Reason "unprotected".
	ErrUnprotected = errors.New("record is not protected (empty policy)")
	// ErrInvalidID: the record id is not a ULID, so it cannot serve as the
	// de-duplication id. Reason "invalid_id".
	ErrInvalidID = errors.New("record id is not a ULID")
	// ErrTooLarge: the encoded record exceeds the server's max payload or the
	// stream's max message size. Publishing it again cannot succeed: degrade
	// it (drop the payloads) and publish that. Reason "too_large".
	// It is mdtap.ErrTooLarge, so callers outside this package (the capture
	// queue) can recognise it without importing stream.
	ErrTooLarge = mdtap.ErrTooLarge
	// ErrStreamFull: the stream is at its size limit and refuses new
	// records (discard new), reason "stream_full"; or JetStream has no
	// storage left, reason "storage_full". The archivers will make room;
	// keep the record and publish it later.
	ErrStreamFull = errors.New("stream full")
	// ErrNoStream: no stream answered on the record's subject (no
	// responders): the stream does not exist or JetStream is unavailable.
	// Reason "no_stream".
	ErrNoStream = errors.New("no stream for the record subject")
	// ErrAckTimeout: the acknowledgement did not come within the ack
	// timeout. The record may or may not be stored; publishing it again is
	// harmless within the duplicate window. Reason "timeout".
	ErrAckTimeout = errors.New("timed out waiting for the stream's ack")
	// ErrDisconnected: the connection to NATS was down, or was lost before
	// the ack came. Reason "disconnected".
	ErrDisconnected = errors.New("not connected to nats")
	// ErrClosed: the publisher was closed; from Publish after Close, or for
	// a record still in flight when Close was called. Reason "closed".
	ErrClosed = errors.New("publisher closed")
	// ErrRejected: the stream refused the record for another reason (the
	// subject is bound to another stream, a store error). Reason "rejected".
	ErrRejected = errors.New("stream rejected the record")
)

// Reason labels of mdtap_publish_errors_total. The vocabulary is closed.
const (
	ReasonUnprotected  = "unprotected"
	ReasonInvalidID    = "invalid_id"
	ReasonEncode       = "encode"
	ReasonTooLarge     = "too_large"
	ReasonStreamFull   = "stream_full"
	ReasonStorageFull  = "storage_full"
	ReasonNoStream     = "no_stream"
	ReasonTimeout      = "timeout"
	ReasonDisconnected = "disconnected"
	ReasonClosed       = "closed"
	ReasonRejected     = "rejected"
	// ReasonSpoolFull: Publish found NATS unavailable (or the stream
	// refusing) and the spool without room: ErrSpoolFull.
	ReasonSpoolFull = "spool_full"
	ReasonError     = "error"
)

var reasons = []string{
	ReasonUnprotected, ReasonInvalidID, ReasonEncode, ReasonTooLarge, ReasonStreamFull, ReasonStorageFull,
	ReasonNoStream, ReasonTimeout, ReasonDisconnected, ReasonClosed, ReasonRejected, ReasonSpoolFull, ReasonError,
}

// PublishError is a failed publish of one record. It never carries payload
// data.
type PublishError struct {
	ID      string // record id
	Subject string // NATS subject
	Reason  string // the mdtap_publish_errors_total reason label
	Err     error  // the cause, from nats.go or the server; may be nil
	kind    error  // the sentinel of Reason
}

func (e *PublishError) Error() string {
	msg := "publish record"
	if e.ID != "" {
		msg += " " + e.ID
	}
	if e.Subject != "" {
		msg += " on " + e.Subject
	}
	msg += ": " + e.kind.Error()
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap lets errors.Is match both the sentinel (ErrStreamFull, …) and the
// cause.
func (e *PublishError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.Err}
}

// Reason returns the reason label of a publish error, "" for nil and
// "error" for an error this package did not classify.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var pe *PublishError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ReasonError
}

// classify maps an error from nats.go or the server to a reason and its
// sentinel.
func classify(err error) (string, error) {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		return classifyAPI(apiErr)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout, ErrAckTimeout
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return ReasonNoStream, ErrNoStream
	case errors.Is(err, jetstream.ErrJetStreamPublisherClosed):
		return ReasonClosed, ErrClosed
	case errors.Is(err, nats.ErrMaxPayload):
		return ReasonTooLarge, ErrTooLarge
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrNoServers),
		errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, ErrDisconnected),
		errors.Is(err, io.EOF), errors.As(err, new(net.Error)):
		// The last two: a write on a connection the server just closed
		// (broken pipe, connection reset), before nats.go notices.
		return ReasonDisconnected, ErrDisconnected
	}
	return ReasonError, errUnclassified
}

var errUnclassified = errors.New("publish failed")

// classifyAPI maps a JetStream API error in a publish ack. A full stream
// answers 10077 with the store's error text ("maximum bytes exceeded",
// "maximum messages exceeded", "maximum messages per subject exceeded").
func classifyAPI(e *jetstream.APIError) (string, error) {
	switch e.ErrorCode {
	case errCodeMessageExceedsMaximum:
		return ReasonTooLarge, ErrTooLarge
	case errCodeInsufficientResources:
		return ReasonStorageFull, ErrStreamFull
	case errCodeStreamStoreFailed:
		d := strings.ToLower(e.Description)
		switch {
		case strings.Contains(d, "maximum") && strings.Contains(d, "exceeded"):
			return ReasonStreamFull, ErrStreamFull
		case strings.Contains(d, "too large"):
			return ReasonTooLarge, ErrTooLarge
		}
	}
	return ReasonRejected, ErrRejected
}

func newPublishError(id, subject string, cause error) *PublishError {
	reason, kind := classify(cause)
	if cause == kind {
		cause = nil // one of ours: nothing to add
	}
	return &PublishError{ID: id, Subject: subject, Reason: reason, Err: cause, kind: kind}
}

func refusal(id, subject, reason string, kind, cause error) *PublishError {
	return &PublishError{ID: id, Subject: subject, Reason: reason, Err: cause, kind: kind}
}

var errEncode = errors.New("encode record")
