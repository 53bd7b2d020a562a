package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// The spool's on-disk format (docs/stream.md, "Spool"). Everything is little
// endian.
//
// A segment file starts with segMagic and then holds frames back to back:
//
//	offset size
//	0      4    frameMagic: 0xFF 'M' 'D' 'R'
//	4      4    CRC-32C (Castagnoli) of bytes 8 … end: the length and the body
//	8      4    n, the body length
//	12     n    body:
//	              1  flags (bit 0: degraded record)
//	              1  id length
//	              2  subject length
//	              id, subject, data (the encoded protected record)
//
// The CRC covers the length, so a damaged length is caught as well as damaged
// data. The magic starts with 0xFF, a byte that never occurs in the UTF-8 of
// a record, ids or subjects: a reader that lost its place finds the next frame
// by searching for the magic and checking the CRC there (resync).
const (
	frameHeaderLen = 12
	frameFixedBody = 4
	flagDegraded   = 1
	// maxFrameBody bounds a frame's body: the largest NATS payload (64 MiB)
	// with the largest id and subject. A larger length is damage.
	maxFrameBody = 64<<20 + frameFixedBody + 255 + 1<<16 - 1
)

var (
	frameMagic = []byte{0xff, 'M', 'D', 'R'}
	// segMagic opens every segment and dead-letter file: "\xffMDSPL", then
	// the format version.
	segMagic   = []byte{0xff, 'M', 'D', 'S', 'P', 'L', 0, 1}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

var segHeaderLen = int64(len(segMagic))

var (
	// errShortFrame: the bytes end before the frame does.
	errShortFrame = errors.New("spool frame: truncated")
	// errBadFrame: no valid frame starts here.
	errBadFrame = errors.New("spool frame: corrupt")
)

// frame is a decoded spool record.
type frame struct {
	m        Message
	degraded bool
}

// frameSize is the length of m's frame on disk.
func frameSize(m Message) int64 {
	return int64(frameHeaderLen + frameFixedBody + len(m.ID) + len(m.Subject) + len(m.Data))
}

// checkFrame reports a message that cannot be framed.
func checkFrame(m Message) error {
	switch {
	case len(m.ID) > 255:
		return errors.New("spool: record id longer than 255 bytes")
	case len(m.Subject) > 1<<16-1:
		return errors.New("spool: subject longer than 65535 bytes")
	case frameSize(m)-frameHeaderLen > maxFrameBody:
		return errors.New("spool: record larger than 64 MiB")
	}
	return nil
}

// appendFrame appends m's frame to b. m must pass checkFrame.
func appendFrame(b []byte, m Message, degraded bool) []byte {
	start := len(b)
	n := frameFixedBody + len(m.ID) + len(m.Subject) + len(m.Data)
	b = append(b, frameMagic...)
	b = binary.LittleEndian.AppendUint32(b, 0) // the CRC, below
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	var flags byte
	if degraded {
		flags |= flagDegraded
	}
	b = append(b, flags, byte(len(m.ID)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.Subject)))
	b = append(b, m.ID...)
	b = append(b, m.Subject...)
	b = append(b, m.Data...)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], castagnoli))
	return b
}

// frameExtent returns the length of the frame that b's header announces,
// without checking it; errBadFrame when the header cannot start a frame.
func frameExtent(b []byte) (int, error) {
	if len(b) < frameHeaderLen {
		return 0, errShortFrame
	}
	if !bytes.Equal(b[:4], frameMagic) {
		return 0, errBadFrame
	}
	n := binary.LittleEndian.Uint32(b[8:12])
	if n < frameFixedBody || n > maxFrameBody {
		return 0, errBadFrame
	}
	return frameHeaderLen + int(n), nil
}

// parseFrame decodes the frame at the start of b and returns it with its
// length. The frame's fields alias b. errShortFrame means b ends before the
// frame does; errBadFrame that no valid frame starts at b.
func parseFrame(b []byte) (frame, int, error) {
	end, err := frameExtent(b)
	if err != nil {
		return frame{}, 0, err
	}
	if len(b) < end {
		return frame{}, 0, errShortFrame
	}
	if crc32.Checksum(b[8:end], castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return frame{}, 0, errBadFrame
	}
	body := b[frameHeaderLen:end]
	flags, idLen, subLen := body[0], int(body[1]), int(binary.LittleEndian.Uint16(body[2:4]))
	if flags&^flagDegraded != 0 || frameFixedBody+idLen+subLen > len(body) {
		return frame{}, 0, errBadFrame
	}
	rest := body[frameFixedBody:]
	return frame{
		m: Message{
			ID:      string(rest[:idLen]),
			Subject: string(rest[idLen : idLen+subLen]),
			Data:    rest[idLen+subLen:],
		},
		degraded: flags&flagDegraded != 0,
	}, end, nil
}

// resync returns the offset of the first valid frame in b after offset 0, or
// len(b) when there is none: the bytes before it are damaged.
func resync(b []byte) int {
	for i := 1; i < len(b); i++ {
		j := bytes.Index(b[i:], frameMagic)
		if j < 0 {
			return len(b)
		}
		i += j
		if _, _, err := parseFrame(b[i:]); err == nil {
			return i
		}
	}
	return len(b)
}
