package proxy

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync"
)

// bodyCapture keeps the first max bytes of a body and counts the rest; when
// the body outgrows max it hashes the whole body (the kept prefix first), so
// a truncated record can carry a keyed digest of the full body without the
// sidecar ever holding it. Safe for one writer and a concurrent reader of
// the result (net/http may still read a request body while the response
// arrives).
type bodyCapture struct {
	mu     sync.Mutex
	max    int
	buf    []byte
	total  int64
	hasher hash.Hash
	err    error // a read error other than EOF
	ended  bool  // EOF seen: total is the full length
}

func newBodyCapture(max int, sizeHint int64) *bodyCapture {
	c := &bodyCapture{max: max}
	if sizeHint > 0 {
		c.buf = make([]byte, 0, min(int64(max), sizeHint))
	}
	return c
}

func (c *bodyCapture) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	take := min(len(p), c.max-len(c.buf))
	if take > 0 {
		c.buf = append(c.buf, p[:take]...)
	}
	if c.hasher == nil && c.total+int64(len(p)) > int64(c.max) {
		// The body outgrows the cap: from now on hash it all, starting with
		// the kept prefix (which already holds p[:take]).
		c.hasher = sha256.New()
		c.hasher.Write(c.buf)
	}
	if c.hasher != nil {
		c.hasher.Write(p[take:])
	}
	c.total += int64(len(p))
}

func (c *bodyCapture) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil || errors.Is(err, io.EOF) {
		c.ended = true
		return
	}
	if c.err == nil {
		c.err = err
	}
}

// captured is a snapshot: the kept bytes, the byte count so far, whether the
// body was cut at the cap, the SHA-256 of the full body when it was, and
// whether the body was read to its end.
type captured struct {
	data      []byte
	total     int64
	truncated bool
	fullSum   []byte
	complete  bool
	err       error
}

func (c *bodyCapture) snapshot() captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := captured{data: c.buf, total: c.total, truncated: c.total > int64(len(c.buf)), complete: c.ended, err: c.err}
	if s.truncated && c.hasher != nil {
		s.fullSum = c.hasher.Sum(nil) // Sum does not disturb the running hash
	}
	return s
}

// teeReader copies what passes through into a bodyCapture and runs done once,
// at EOF, at a read error or at Close, whichever comes first.
type teeReader struct {
	rc   io.ReadCloser
	c    *bodyCapture
	once sync.Once
	done func()
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		t.c.write(p[:n])
	}
	if err != nil {
		t.c.end(err)
		t.finish()
	}
	return n, err
}

func (t *teeReader) Close() error {
	err := t.rc.Close()
	t.finish()
	return err
}

func (t *teeReader) finish() {
	if t.done != nil {
		t.once.Do(t.done)
	}
}
