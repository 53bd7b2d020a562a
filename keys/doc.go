// Package keys holds mdtap's Tink keysets and is the only package that
// imports tink-go.
//
// There are three keysets, one per Purpose: aead (AES256_GCM) for the encrypt
// action, daead (AES256_SIV) for tokenize, prf (HMAC_SHA256_PRF) for hash and
// blind indexes. Each is stored in DIR as a Tink encrypted keyset, wrapped by
// a key-encryption key (KEK) named by a URI, beside a small metadata file with
// what Tink keysets do not hold: creation times and disable/destroy
// tombstones.
//
// What the package guarantees:
//
//   - Plaintext key material is never written to disk nor put in an error or
//     a log line. The one exception is the development KEK of a local:// URI,
//     a cleartext Tink keyset in a file of mode 0600.
//   - Every write is atomic (temporary file, fsync, rename, fsync of DIR),
//     files are mode 0600 and DIR 0700. Management operations hold an
//     exclusive lock on DIR/keys.lock, so concurrent CLI runs cannot lose an
//     update; loads hold a shared lock when they can.
//   - Each keyset is bound to its purpose by the associated data it is
//     encrypted with: a keyset file moved to another purpose's name fails to
//     load.
//   - aead and daead keys use Tink's TINK output prefix, so every ciphertext
//     names its key (mdtap.TinkKeyID). Tink PRF keys only exist with the RAW
//     prefix; a hash value carries its key id beside the output instead.
//   - Destroying a key removes its material from the keyset for good
//     (crypto-shredding); values under it then decrypt to mdtap.ErrShredded.
//
// A Set is the runtime view: the keysets of some purposes, loaded once and
// turned into Tink primitives, safe for concurrent use, swapped atomically by
// Reload and Watch. Load reads a directory; LoadFrom reads any KeysetSource
// (the copy Publish keeps in a NATS key-value bucket) through the same code,
// and Watch follows either. Sources hold the keysets KEK-wrapped, as on disk.
//
// Per-subject keys (SubjectKeys) give each data subject its own small
// keyset, wrapped by the main aead keyset and kept in a SubjectStore under
// the subject's blind index, so that ForgetSubject crypto-shreds one
// customer's values and nobody else's. Retire destroys the keys whose period
// ended before a retention.
//
// The package declares the stores it needs (KeysetSource, KeysetStore,
// SubjectStore, SubjectAdmin) and imports no NATS client: cmd/mdtap adapts
// the stream package's buckets to them. See docs/keys.md for the operator's
// view.
package keys
