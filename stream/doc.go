// Package stream is every NATS interaction of mdtap: it provisions the
// JetStream stream that carries protected records and the archivers' durable
// consumer, connects to NATS, publishes records asynchronously, keeps the
// sidecar's local spool, delivers records to archivers, and holds the
// key-value buckets (chain heads, keysets, per-subject keys).
//
// Guarantees:
//
//   - Only protected records reach NATS: Publish refuses a record whose
//     Policy is empty.
//   - Every record Publish accepts ends in exactly one of these ways: the
//     stream acknowledged it; it is kept in the spool (PublisherOptions.Spool,
//     fsynced by Flush and Close) and drains later; it went to the spool's
//     dead-letter directory (it can never be published); or, without a
//     spool, it was handed to PublisherOptions.OnFailure with its encoded
//     bytes and a reason. A record that not even the spool's reserved part
//     can take, as metadata, is counted and logged as dropped. Nothing is
//     retried forever inline and nothing waits forever: an acknowledgement
//     that does not come within the ack timeout is a failure.
//   - A record is published with Nats-Msg-Id set to its id, so publishing it
//     again within the stream's duplicate window stores it once.
//   - Only protected record bytes touch the spool's files.
//   - Logs and errors carry record ids, subjects and reasons, never payload
//     data, passwords or tokens.
//
// This is the only mdtap package that imports nats.go; the rest of mdtap sees
// records, reasons and sentinel errors.
package stream
