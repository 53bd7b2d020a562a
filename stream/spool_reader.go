package stream

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// readChunk is how much the reader reads at a time: many frames per read.
const readChunk = 1 << 20

// spoolReader reads the spool in order from a position, for the drain: only
// what the writer has committed, so never a frame being written. One
// goroutine uses it.
type spoolReader struct {
	s      *Spool
	pos    spoolPos
	f      *os.File    // the segment at pos.seq, open
	src    io.ReaderAt // f, or the bytes of a segment in tests
	fseq   uint64
	buf    []byte // bytes of src from bufOff
	bufOff int64
}

// readItem is what the reader found at a position: a record, or damaged
// bytes (corrupt non-nil) up to the next good frame.
type readItem struct {
	pos, end spoolPos
	fr       frame  // its Message is the reader's own copy
	corrupt  []byte // a copy
}

func newSpoolReader(s *Spool) *spoolReader {
	return &spoolReader{s: s, pos: s.start()}
}

// seek moves the reader back (or on) to pos, a frame boundary.
func (r *spoolReader) seek(pos spoolPos) { r.pos = pos }

func (r *spoolReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f, r.src = nil, nil
	}
}

// next returns the item at the reader's position and moves past it; false
// when nothing more is committed yet.
func (r *spoolReader) next() (readItem, bool, error) {
	for {
		g, active, ok := r.s.segmentFrom(r.pos.seq)
		if !ok {
			return readItem{}, false, nil
		}
		if g.seq != r.pos.seq || r.pos.off < g.start {
			r.pos = spoolPos{g.seq, g.start}
		}
		if r.pos.off >= g.size {
			if active {
				return readItem{}, false, nil
			}
			r.pos = spoolPos{g.seq + 1, 0} // the segment is complete: on to the next
			continue
		}
		if r.fseq != g.seq || r.f == nil {
			r.close()
			f, err := os.Open(g.path)
			if errors.Is(err, os.ErrNotExist) {
				// Removed since segmentFrom: wholly acknowledged.
				r.pos = spoolPos{g.seq + 1, 0}
				continue
			}
			if err != nil {
				return readItem{}, false, fmt.Errorf("read spool: %w", err)
			}
			r.f, r.src, r.fseq, r.buf, r.bufOff = f, f, g.seq, r.buf[:0], 0
		}
		it, err := r.read(g.size)
		if err != nil {
			return readItem{}, false, fmt.Errorf("read spool %s at %d: %w", g.path, r.pos.off, err)
		}
		r.pos = it.end
		return it, true, nil
	}
}

// read decodes the item at r.pos, in a segment committed up to limit.
func (r *spoolReader) read(limit int64) (readItem, error) {
	off := r.pos.off
	it := readItem{pos: r.pos}
	if limit-off >= frameHeaderLen {
		hdr, err := r.bytes(off, frameHeaderLen, limit)
		if err != nil {
			return it, err
		}
		if n, err := frameExtent(hdr); err == nil && off+int64(n) <= limit {
			b, err := r.bytes(off, int64(n), limit)
			if err != nil {
				return it, err
			}
			if fr, _, err := parseFrame(b); err == nil {
				fr.m.Data = append([]byte(nil), fr.m.Data...)
				it.fr = fr
				it.end = spoolPos{r.pos.seq, off + int64(n)}
				return it, nil
			}
		}
	}
	// Damaged: everything up to the next good frame.
	rest, err := r.bytes(off, limit-off, limit)
	if err != nil {
		return it, err
	}
	k := resync(rest)
	it.corrupt = append([]byte(nil), rest[:k]...)
	it.end = spoolPos{r.pos.seq, off + int64(k)}
	return it, nil
}

// bytes returns the n bytes of the open segment at off, reading ahead up to
// readChunk but never beyond limit.
func (r *spoolReader) bytes(off, n, limit int64) ([]byte, error) {
	if off >= r.bufOff && off+n <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff : off-r.bufOff+n], nil
	}
	size := min(max(n, readChunk), limit-off)
	if int64(cap(r.buf)) < size {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	if _, err := r.src.ReadAt(r.buf, off); err != nil {
		r.buf = r.buf[:0]
		return nil, err
	}
	r.bufOff = off
	return r.buf[:n], nil
}
