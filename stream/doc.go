// Package stream is every NATS interaction of mdtap: it provisions the
// JetStream stream that carries protected records and the archivers' durable
// consumer, connects to NATS, and publishes records asynchronously.
//
// Guarantees:
//
//   - Only protected records reach NATS: Publish refuses a record whose
//     Policy is empty.
//   - Every record Publish accepts ends in exactly one of two ways: the
//     stream acknowledged it, or it was handed to PublisherOptions.OnFailure
//     with its encoded bytes and a reason. Nothing is retried forever and
//     nothing waits forever: an acknowledgement that does not come within
//     the ack timeout is a failure.
//   - A record is published with Nats-Msg-Id set to its id, so publishing it
//     again within the stream's duplicate window stores it once.
//   - Logs and errors carry record ids, subjects and reasons, never payload
//     data, passwords or tokens.
//
// This is the only mdtap package that imports nats.go; the rest of mdtap sees
// records, reasons and sentinel errors.
package stream
