package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/mdtap/mdtap"
)

// An object is JSON lines compressed with zstd as one frame (with its
// content checksum): each line one record, exactly the bytes of its message,
// ended by "\n". A dead-letter object holds DeadLetter entries instead.

// MaxObjectBytes bounds the decompressed size of an object a reader accepts,
// a guard against decompression bombs; the archiver writes far smaller ones.
const MaxObjectBytes = 1 << 30

var decoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxObjectBytes),
	)
	if err != nil {
		panic(err) // only bad options fail
	}
	return d
})

// encoderWindow is the zstd window of objects. Records repeat their field
// names and shapes within a few KiB, so a window past 1 MiB gains almost
// nothing, while each of the encoder's concurrent states keeps buffers of
// about twice the window once a large batch has passed through it: with the
// 8 MiB default, 19 MiB per state, held for good — an archiver's memory stepped
// up after every backlog and never came down.
const encoderWindow = 1 << 20

// newEncoder returns a zstd encoder for objects. EncodeAll may be called on
// it concurrently.
func newEncoder(level zstd.EncoderLevel, concurrency int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(concurrency),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
	)
}

// EncodeObject compresses lines (each one record, without its newline) into
// an object's bytes, with zstd's default level. The archiver uses its own
// encoder; this is for tests and tools.
func EncodeObject(lines [][]byte) ([]byte, error) {
	enc, err := newEncoder(zstd.SpeedDefault, 1)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	var raw []byte
	for _, l := range lines {
		raw = append(append(raw, l...), '\n')
	}
	return enc.EncodeAll(raw, nil), nil
}

// DecodeObject decompresses an object's bytes and splits them into lines,
// without their newlines.
func DecodeObject(data []byte) ([][]byte, error) {
	raw, err := decoder().DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("decompress object: %w", err)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	if raw[len(raw)-1] != '\n' {
		return nil, fmt.Errorf("decompress object: last line is not terminated")
	}
	lines := make([][]byte, 0, bytes.Count(raw, []byte{'\n'}))
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		lines = append(lines, raw[:i:i])
		raw = raw[i+1:]
	}
	return lines, nil
}

// ReadObject fetches an object and returns its lines: records (or dead-letter
// entries), in the order they were written. The store's ErrNotFound comes
// through wrapped.
func ReadObject(ctx context.Context, s Store, key string) ([][]byte, error) {
	data, err := s.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	lines, err := DecodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("read object %s: %w", key, err)
	}
	return lines, nil
}

// Dedup removes records seen before, by record id. A crash between storing
// a batch and acknowledging it makes the archive hold the batch twice; every
// reader passes records through one Dedup. The zero value is ready to use;
// it is not safe for concurrent use.
type Dedup struct {
	seen map[string]struct{}
}

// First reports whether line is the first record with its id that d has
// seen. A line without a readable id is reported as an error.
func (d *Dedup) First(line []byte) (bool, error) {
	id, err := RecordID(line)
	if err != nil {
		return false, err
	}
	if d.seen == nil {
		d.seen = make(map[string]struct{})
	}
	if _, ok := d.seen[id]; ok {
		return false, nil
	}
	d.seen[id] = struct{}{}
	return true, nil
}

// DeadLetter is one line of a dead-letter object: a message that could not
// be archived as a record. A message that is not a protected record may be
// raw plaintext, so of it only the length and, when well formed, the record
// id are kept; a protected record is kept whole in Record.
type DeadLetter struct {
	StreamSeq uint64          `json:"stream_seq"`
	ID        string          `json:"id,omitempty"`
	Bytes     int             `json:"bytes"`
	Reason    string          `json:"reason"` // one of the Reason* constants
	Detail    string          `json:"detail"` // never quotes the message
	Record    json.RawMessage `json:"record,omitempty"`
	Received  mdtap.Timestamp `json:"received"`
}
