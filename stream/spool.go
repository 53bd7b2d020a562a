package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
)

// Spool defaults.
const (
	// DefaultSpoolMaxBytes caps the spool's segments on disk: at 2 KiB a
	// record, about 500,000 records, some minutes of a busy sidecar's
	// traffic.
	DefaultSpoolMaxBytes int64 = 1 << 30
	// DefaultSegmentBytes is the size at which the spool starts a new
	// segment file. Space is given back a whole segment at a time, once
	// every record in it is acknowledged.
	DefaultSegmentBytes int64 = 16 << 20
	// DefaultFsyncInterval is the longest FsyncBatch lets written records
	// wait for their fsync.
	DefaultFsyncInterval = 50 * time.Millisecond
	// minSegmentBytes keeps a tiny spool's segments useful.
	minSegmentBytes int64 = 4 << 10
)

// Accepting turns false when the regular part of the spool is full (or a
// regular record was refused), and true again once use is back under
// resumePercent of it: hysteresis, so that a fail-closed proxy does not
// flap at the edge.
const resumePercent = 90

// FsyncPolicy says when the spool fsyncs what it writes, and so what a
// machine crash (power loss, kernel panic) can take. A process crash loses
// nothing written, whatever the policy: the kernel has it.
type FsyncPolicy string

const (
	// FsyncBatch (the default) is group commit: written records wait for a
	// shared fsync, at most one every FsyncInterval, and count as kept only
	// after it. A machine crash loses at most the records of the last
	// interval, none of which had been reported kept.
	FsyncBatch FsyncPolicy = "batch"
	// FsyncAlways fsyncs as soon as records are written; records written
	// while an fsync runs share the next one. Nothing reported kept is
	// lost at a machine crash; costs one fsync per write batch.
	FsyncAlways FsyncPolicy = "always"
	// FsyncNone never fsyncs except at Sync and Close (the publisher's
	// Flush and Close): a machine crash may lose whatever the kernel had
	// not yet written back (typically up to 30 s).
	FsyncNone FsyncPolicy = "none"
)

// ParseFsyncPolicy parses "batch", "always" or "none".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch p := FsyncPolicy(s); p {
	case FsyncBatch, FsyncAlways, FsyncNone:
		return p, nil
	}
	return "", fmt.Errorf("fsync policy %q: want batch, always or none", s)
}

// ErrSpoolFull: the spool has no room for the record. From Publish, for a
// record that is not degraded: degrade it (reason spool_full) and publish
// that; degraded records may use the spool's reserved part.
var ErrSpoolFull = mdtap.ErrSpoolFull

// ErrSpoolClosed: the spool was closed.
var ErrSpoolClosed = errors.New("spool closed")

// ErrSpoolLocked: another process has the spool directory open.
var ErrSpoolLocked = errors.New("spool directory in use by another process")

// SpoolOptions configure a Spool. Zero values take the defaults.
type SpoolOptions struct {
	// Dir holds the segments (created 0700 if absent). One process at a
	// time: OpenSpool locks it.
	Dir string
	// MaxBytes caps the segments on disk, DefaultSpoolMaxBytes by default.
	// Dead-letter files are not counted.
	MaxBytes int64
	// ReservedBytes is the last part of MaxBytes that only degraded
	// (metadata-only) records may use, so that they still find room when
	// full records no longer do. Default MaxBytes/20.
	ReservedBytes int64
	// SegmentBytes is the size at which a new segment file is started;
	// default DefaultSegmentBytes, at most MaxBytes/8.
	SegmentBytes int64
	// Fsync is the fsync policy, FsyncBatch by default.
	Fsync FsyncPolicy
	// FsyncInterval is FsyncBatch's interval, DefaultFsyncInterval by
	// default.
	FsyncInterval time.Duration
	// Logger receives recovery findings, dead letters and drops (ids and
	// reasons, never payloads).
	Logger zerolog.Logger
	// Registerer registers the spool's metrics; nil registers none.
	Registerer prometheus.Registerer

	// syncFile replaces (*os.File).Sync in tests, which count fsyncs.
	syncFile func(*os.File) error
}

func (o SpoolOptions) withDefaults() SpoolOptions {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultSpoolMaxBytes
	}
	if o.ReservedBytes == 0 {
		o.ReservedBytes = o.MaxBytes / 20
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = max(min(DefaultSegmentBytes, o.MaxBytes/8), minSegmentBytes)
	}
	if o.Fsync == "" {
		o.Fsync = FsyncBatch
	}
	if o.FsyncInterval == 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	if o.syncFile == nil {
		o.syncFile = (*os.File).Sync
	}
	return o
}

// Validate reports the first bad setting, naming it. Zero values are valid:
// they mean the default.
func (o SpoolOptions) Validate() error {
	if o.Dir == "" {
		return errors.New("spool options: dir is required")
	}
	o = o.withDefaults()
	switch {
	case o.MaxBytes < 2*minSegmentBytes:
		return fmt.Errorf("spool options: max bytes %d: want at least %d", o.MaxBytes, 2*minSegmentBytes)
	case o.ReservedBytes < 0 || o.ReservedBytes >= o.MaxBytes:
		return fmt.Errorf("spool options: reserved bytes %d: want 0 to max bytes %d", o.ReservedBytes, o.MaxBytes)
	case o.SegmentBytes < minSegmentBytes || o.SegmentBytes > o.MaxBytes:
		return fmt.Errorf("spool options: segment bytes %d: want %d to max bytes %d", o.SegmentBytes, minSegmentBytes, o.MaxBytes)
	case o.FsyncInterval < 0:
		return fmt.Errorf("spool options: fsync interval %s is negative", o.FsyncInterval)
	}
	if _, err := ParseFsyncPolicy(string(o.Fsync)); err != nil {
		return fmt.Errorf("spool options: %w", err)
	}
	return nil
}

// Spool is the sidecar's local, size-capped store of protected records that
// could not be published: segment files of checksummed frames, written by
// one goroutine with group commit, read back in order by the publisher's
// drainer, and deleted a segment at a time once JetStream has acknowledged
// every record in it.
//
// Only a Publisher writes to a spool (PublisherOptions.Spool), and it writes
// only the encoded records it publishes, which are protected: nothing else
// can put bytes into a spool. A spool serves one publisher.
//
// Its methods are safe for concurrent use.
type Spool struct {
	dir       string
	o         SpoolOptions
	regular   int64 // MaxBytes - ReservedBytes: what full records may fill
	log       zerolog.Logger
	m         *spoolMetrics
	lock      *os.File
	accepting atomic.Bool

	mu       sync.Mutex
	segs     []*segment // oldest first
	active   *segment   // the segment the writer appends to; nil until it needs one
	nextSeq  uint64
	used     int64 // bytes of the segments, plus room taken for records not yet written
	records  int64 // records written and not yet acknowledged
	ackPos   spoolPos
	writeErr bool // the last write failed
	queue    []*job
	attached bool
	closing  bool
	closeErr error

	wake    chan struct{} // cap 1: the writer has work
	notify  chan struct{} // cap 1: records were written (the drainer's reader)
	stopped chan struct{} // closed when the writer returns

	w writer // the writer goroutine's own state
}

// segment is one segment file. size grows as the writer commits frames;
// readers read only below it.
type segment struct {
	seq   uint64
	path  string
	start int64 // offset of the first frame: after the header, or 0 if the header was damaged
	size  int64
}

// spoolPos is a position in the spool: a segment and an offset in it.
type spoolPos struct {
	seq uint64
	off int64
}

func (a spoolPos) less(b spoolPos) bool {
	return a.seq < b.seq || a.seq == b.seq && a.off < b.off
}

// Files in the spool directory.
const (
	segSuffix     = ".seg"
	cursorFile    = "cursor"
	lockFile      = "LOCK"
	deadLetterDir = "deadletter"
)

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

// OpenSpool opens the spool in o.Dir, creating it if absent, and recovers
// what a previous run left: segments are scanned and checked; a damaged
// record at the very end of a segment (a write torn by a crash) is cut off
// and counted in mdtap_spool_dropped_total{reason="torn"}; damaged bytes
// followed by good records stay, and go to the dead-letter directory when
// the drain reaches them. Records before the saved acknowledgement cursor
// are not replayed.
func OpenSpool(o SpoolOptions) (*Spool, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	if st, err := os.Stat(o.Dir); err == nil && st.Mode().Perm()&0o077 != 0 {
		o.Logger.Warn().Str("dir", o.Dir).Str("mode", st.Mode().Perm().String()).
			Msg("spool directory is accessible to other users; want 0700")
	}
	lock, err := lockDir(filepath.Join(o.Dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", o.Dir, err)
	}
	s := &Spool{
		dir:     o.Dir,
		o:       o,
		regular: o.MaxBytes - o.ReservedBytes,
		log:     o.Logger,
		lock:    lock,
		wake:    make(chan struct{}, 1),
		notify:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	torn, err := s.recover()
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", o.Dir, err)
	}
	s.accepting.Store(true)
	s.mu.Lock()
	s.updateAcceptingLocked()
	s.mu.Unlock()
	m, err := newSpoolMetrics(o.Registerer, s)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open spool: metrics: %w", err)
	}
	s.m = m
	for range torn {
		s.m.drop(dropTorn)
	}
	s.w.init(s)
	go s.run()
	if s.records > 0 {
		s.log.Info().Str("dir", o.Dir).Int64("records", s.records).Int64("bytes", s.used).
			Int("segments", len(s.segs)).Msg("spool holds records from a previous run; they drain once NATS takes them")
	}
	return s, nil
}

// recover scans the directory: it removes segments the cursor says are
// acknowledged, cuts torn tails and counts what is left. It returns the
// number of torn tails cut.
func (s *Spool) recover() (torn int, err error) {
	os.Remove(filepath.Join(s.dir, cursorFile+".tmp"))
	cursor, hasCursor := readCursor(filepath.Join(s.dir, cursorFile))
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || seq == 0 {
			s.log.Warn().Str("file", name).Msg("spool: ignoring a file that is not a segment")
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	s.nextSeq = 1
	if len(seqs) > 0 {
		s.nextSeq = seqs[len(seqs)-1] + 1
	}
	if hasCursor && cursor.seq >= s.nextSeq {
		s.nextSeq = cursor.seq + 1
	}
	cursorValid := false
	for _, seq := range seqs {
		path := filepath.Join(s.dir, segName(seq))
		if hasCursor && seq < cursor.seq {
			// Every record in it was acknowledged; the run ended before the
			// segment was removed.
			if err := os.Remove(path); err != nil {
				return torn, err
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return torn, err
		}
		g := &segment{seq: seq, path: path, start: segHeaderLen}
		if int64(len(b)) < segHeaderLen || string(b[:segHeaderLen]) != string(segMagic) {
			if int64(len(b)) <= segHeaderLen {
				// Created, then the crash came before a record was written.
				if err := os.Remove(path); err != nil {
					return torn, err
				}
				continue
			}
			s.log.Warn().Str("file", path).Msg("spool: segment header damaged; scanning it for records")
			g.start = 0
		}
		// Records before the cursor are acknowledged: not counted, not replayed.
		from := int64(-1)
		if hasCursor && seq == cursor.seq {
			from = cursor.off
		}
		sc := scanSegment(b, g.start, from)
		for _, d := range sc.damaged {
			s.log.Warn().Str("file", path).Int64("offset", d[0]).Int64("bytes", d[1]-d[0]).
				Msg("spool: damaged bytes between records; they go to the dead-letter directory when the drain reaches them")
		}
		if sc.torn {
			// Nothing good after it: a write the crash tore.
			s.log.Warn().Str("file", path).Int64("offset", sc.end).Int64("bytes", int64(len(b))-sc.end).
				Msg("spool: cutting off a torn record at the end of a segment")
			if err := os.Truncate(path, sc.end); err != nil {
				return torn, err
			}
			torn++
		}
		s.records += sc.records
		cursorValid = cursorValid || sc.fromValid
		g.size = sc.end
		s.used += g.size
		s.segs = append(s.segs, g)
	}
	if len(s.segs) == 0 {
		return torn, nil
	}
	s.ackPos = spoolPos{s.segs[0].seq, s.segs[0].start}
	if hasCursor && cursor.seq < s.segs[0].seq {
		cursorValid = true // its segment is gone: everything left is unacknowledged
	}
	if hasCursor && cursorValid && s.ackPos.less(cursor) {
		s.ackPos = cursor
	} else if hasCursor && !cursorValid {
		// Not at a record boundary: replay the whole segment rather than
		// guess. Replays are harmless (Nats-Msg-Id).
		s.log.Warn().Uint64("segment", cursor.seq).Int64("offset", cursor.off).
			Msg("spool: acknowledgement cursor does not match the segment; replaying it from the start")
		s.records = 0
		for _, g := range s.segs {
			s.records += countFrames(g)
		}
	}
	return torn, nil
}

// countFrames counts the valid frames of a segment already scanned.
func countFrames(g *segment) int64 {
	b, err := os.ReadFile(g.path)
	if err != nil {
		return 0
	}
	return scanSegment(b[:min(int64(len(b)), g.size)], g.start, -1).records
}

// segScan is what scanSegment found.
type segScan struct {
	end       int64 // where the segment's good content ends: before a torn tail, or len(b)
	torn      bool  // the bytes after end are damaged, with no good frame after them
	records   int64 // good frames starting at or after from
	fromValid bool  // from is start or the end of a good frame
	damaged   [][2]int64
}

// scanSegment checks a segment's bytes frame by frame from start. Damaged
// bytes followed by a good frame are noted and skipped (the drain
// dead-letters them); damaged bytes up to the end are a torn tail.
func scanSegment(b []byte, start, from int64) segScan {
	sc := segScan{fromValid: from == start}
	off := start
	for off < int64(len(b)) {
		_, n, err := parseFrame(b[off:])
		if err == nil {
			if off >= from {
				sc.records++
			}
			off += int64(n)
			if off == from {
				sc.fromValid = true
			}
			continue
		}
		k := int64(resync(b[off:]))
		if off+k == int64(len(b)) {
			sc.torn = true
			break
		}
		sc.damaged = append(sc.damaged, [2]int64{off, off + k})
		off += k
	}
	sc.end = off
	return sc
}

// The cursor file: the position before which every record is acknowledged,
// with a CRC-32C. It is written without fsync: losing it only replays
// records JetStream de-duplicates.
func readCursor(path string) (spoolPos, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return spoolPos{}, false
	}
	return spoolPos{binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:]))}, true
}

func writeCursor(dir string, p spoolPos) error {
	b := binary.LittleEndian.AppendUint64(nil, p.seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.off))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, cursorFile))
}

// jobKind is what the writer is asked to do.
type jobKind uint8

const (
	jobRecord     jobKind = iota // append a record to the segments
	jobDeadLetter                // append a record to the dead-letter file
	jobCorrupt                   // save damaged segment bytes in the dead-letter directory
	jobSync                      // fsync everything written, whatever the policy
)

// job is one request to the writer goroutine. done, if set, is called once,
// on the writer goroutine, when the job is complete: written and fsynced as
// the policy says, or failed.
type job struct {
	kind     jobKind
	m        Message
	degraded bool
	// reason labels the metrics: why the record is spooled
	// (mdtap_spool_appends_total) or dead-lettered.
	reason string
	// reserve: take room at put, which then returns ErrSpoolFull when there
	// is none. Otherwise the writer takes it, and when there is none
	// degrades the record and tries the reserved part, and at last drops
	// it (counted).
	reserve  bool
	reserved int64    // room taken
	raw      []byte   // jobCorrupt: the damaged bytes
	at       spoolPos // jobCorrupt: where they were
	end      spoolPos // jobRecord: where its frame ends, once written
	done     func(error)
}

// put hands j to the writer. It fails at once with ErrSpoolClosed, and for
// a reserving record job with ErrSpoolFull; otherwise j.done reports.
func (s *Spool) put(j *job) error {
	if j.kind == jobRecord || j.kind == jobDeadLetter {
		if err := checkFrame(j.m); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrSpoolClosed
	}
	if j.kind == jobRecord && j.reserve {
		n := frameSize(j.m)
		if !s.reserveLocked(n, j.degraded) {
			s.mu.Unlock()
			return ErrSpoolFull
		}
		j.reserved = n
	}
	s.queue = append(s.queue, j)
	s.mu.Unlock()
	s.kick()
	return nil
}

func (s *Spool) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reserveLocked takes n bytes of room: a degraded record may use the whole
// spool, a full one only the regular part. A refused full record turns
// Accepting off.
func (s *Spool) reserveLocked(n int64, degraded bool) bool {
	limit := s.regular
	if degraded {
		limit = s.o.MaxBytes
	}
	if s.used+n > limit {
		if !degraded {
			s.accepting.Store(false)
		}
		return false
	}
	s.used += n
	s.updateAcceptingLocked()
	return true
}

// freeLocked gives back n bytes of room.
func (s *Spool) freeLocked(n int64) {
	s.used -= n
	s.updateAcceptingLocked()
}

func (s *Spool) updateAcceptingLocked() {
	on := s.accepting.Load()
	switch {
	case s.closing:
		on = false
	case on && (s.used >= s.regular || s.writeErr):
		on = false
	case !on && !s.writeErr && s.used <= s.regular/100*resumePercent:
		on = true
	}
	s.accepting.Store(on)
}

// Accepting reports whether the spool can take more full records: false once
// its regular part is full (or a write failed), true again once use is back
// under 90% of the regular part. A fail-closed proxy refuses new exchanges
// while it is false; records of exchanges already under way still reach the
// spool's reserved part, degraded.
func (s *Spool) Accepting() bool { return s.accepting.Load() }

// SpoolStats describe a spool at a moment.
type SpoolStats struct {
	Bytes     int64 // segment bytes on disk (mdtap_spool_bytes)
	Records   int64 // records not yet acknowledged by JetStream (mdtap_spool_records)
	Segments  int
	Accepting bool
}

// Stats returns the spool's size and state.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SpoolStats{Bytes: s.used, Records: s.records, Segments: len(s.segs), Accepting: s.accepting.Load()}
}

// attach marks the spool as serving a publisher; a second one is refused.
func (s *Spool) attach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached {
		return errors.New("spool already serves a publisher")
	}
	if s.closing {
		return ErrSpoolClosed
	}
	s.attached = true
	return nil
}

// detach ends attach: another publisher may take the spool.
func (s *Spool) detach() {
	s.mu.Lock()
	s.attached = false
	s.mu.Unlock()
}

// ack records that every record before pos is acknowledged (or
// dead-lettered), n of them since the last call. The writer removes
// segments that are wholly acknowledged.
func (s *Spool) ack(pos spoolPos, n int) {
	s.mu.Lock()
	moved := s.ackPos.less(pos)
	if moved {
		s.ackPos = pos
	}
	s.records -= int64(n)
	// Wake the writer only when there is something to remove: a segment
	// wholly acknowledged, or everything.
	wake := s.records == 0 || moved && len(s.segs) > 0 &&
		(pos.seq > s.segs[0].seq || pos.seq == s.segs[0].seq && pos.off >= s.segs[0].size)
	s.mu.Unlock()
	if wake {
		s.kick()
	}
}

// segmentFrom returns a copy of the first segment whose seq is seq or more,
// and whether the writer may still append to it.
func (s *Spool) segmentFrom(seq uint64) (segment, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if g.seq >= seq {
			return *g, g == s.active, true
		}
	}
	return segment{}, false, false
}

// start returns the position the drain starts from.
func (s *Spool) start() spoolPos {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackPos
}

// Sync fsyncs everything written so far, whatever the policy.
func (s *Spool) Sync() error {
	ch := make(chan error, 1)
	if err := s.put(&job{kind: jobSync, done: func(err error) { ch <- err }}); err != nil {
		return fmt.Errorf("sync spool: %w", err)
	}
	if err := <-ch; err != nil {
		return fmt.Errorf("sync spool: %w", err)
	}
	return nil
}

// appendSync writes m to the spool and returns once it is kept as the fsync
// policy says. It returns ErrSpoolFull when there is no room (full records
// may not use the reserved part).
func (s *Spool) appendSync(m Message, degraded bool, reason string) error {
	_, err := s.appendAt(m, degraded, reason)
	return err
}

// appendAt is appendSync that also returns where the record's frame ends.
func (s *Spool) appendAt(m Message, degraded bool, reason string) (spoolPos, error) {
	ch := make(chan error, 1)
	j := &job{kind: jobRecord, m: m, degraded: degraded, reason: reason, reserve: true,
		done: func(err error) { ch <- err }}
	if err := s.put(j); err != nil {
		return spoolPos{}, err
	}
	err := <-ch
	return j.end, err
}

// Close writes what is queued, fsyncs everything, saves the acknowledgement
// cursor and closes the files. Close the publisher first: records it hands
// over after Close are refused (ErrSpoolClosed) and counted as dropped.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.stopped
		return s.closeErr
	}
	s.closing = true
	s.updateAcceptingLocked()
	s.mu.Unlock()
	s.kick()
	<-s.stopped
	s.lock.Close()
	return s.closeErr
}

// spoolPerm and spoolDirPerm are the modes of everything the spool creates.
const (
	spoolPerm    fs.FileMode = 0o600
	spoolDirPerm fs.FileMode = 0o700
)
