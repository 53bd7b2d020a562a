package mdtap

import "errors"

// ErrShredded is returned when a value cannot be restored because the key it
// was protected under has been destroyed: the value is crypto-shredded. It is
// an expected outcome (retention, consent withdrawal), not a failure; readers
// render such a value with ShredValue and carry on.
var ErrShredded = errors.New("key destroyed: value shredded")

// ErrKeyUnavailable is returned when a value's key is not in the keyset the
// caller holds (for example a reader with the PRF keyset only), or is
// disabled. Unlike ErrShredded, it may succeed with other keys.
var ErrKeyUnavailable = errors.New("key not available")

// ErrTooLarge is returned by a publisher for a record whose encoding exceeds
// what the stream accepts in one message. The caller degrades the record to
// metadata (Record.Degrade) and publishes that instead; it never retries the
// full record.
var ErrTooLarge = errors.New("record too large for the stream")

// ErrSpoolFull is returned by a publisher when NATS cannot take a record now
// and the local spool has no room for it either. The caller degrades the
// record to metadata (reason DegradeSpoolFull), which may use the spool's
// reserved part, and publishes that.
var ErrSpoolFull = errors.New("spool full")
