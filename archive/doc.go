// Package archive writes protected records from the stream to object
// storage and reads them back for the audit.
//
// The archiver (Archiver) takes records from a durable consumer (Source),
// batches them by count, size and age, and writes one zstd-compressed JSON
// lines object per hour and sector the batch touches, each with a manifest.
// Manifests form a hash chain per archiver (chain id): each holds the hash
// of the one before it, and the chain's head is kept outside the store too
// (HeadStore), so an altered, removed or truncated archive is detectable
// (VerifyChain). Messages are acknowledged only once their objects and
// manifests are stored: a crash may store a batch twice, never lose one, and
// readers remove duplicates by record id (Dedup).
//
// Guarantees:
//   - Only protected records (with a policy) are stored as records. Anything
//     else goes to a dead-letter object; of a message that is not a
//     protected record only its length and id are kept, never its bytes.
//   - A manifest is written once, if absent, and never rewritten; an object
//     key is written by one archiver process only.
//   - Store errors are retried with backoff; Run returns only when its
//     context ends.
//
// Stores implement Store: FileStore (file:///DIR) here, the S3 store in
// archive/s3store. Both pass archive/storetest. docs/archive.md describes
// the layout and formats for readers outside Go.
package archive
