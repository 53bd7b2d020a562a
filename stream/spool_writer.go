package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mdtap/mdtap"
)

// cursorEvery paces writes of the acknowledgement cursor while a drain runs.
const cursorEvery = time.Second

// writer is the state of the spool's writer goroutine, the only one that
// writes, fsyncs, creates or removes files in the spool directory. Nobody
// else touches these fields.
type writer struct {
	s        *Spool
	f        *os.File // the active segment's file; nil with s.active
	seg      *segment
	buf      []byte // frames of batch, written with one write
	batch    []*job
	spare    []*job
	dirty    []dirtyFile // written since the last fsync
	dirDirty bool        // entries of the spool directory changed since the last fsync
	dlDirty  bool        // entries of the dead-letter directory changed
	dl       *os.File    // this run's dead-letter records file, made on first use
	dlName   string
	dlSize   int64
	idx      *os.File // deadletter/index.jsonl
	lastSync time.Time

	cursorAt   spoolPos // as last written
	cursorTime time.Time
}

type dirtyFile struct {
	f     *os.File
	close bool // close it once fsynced: a segment no longer written
}

func (w *writer) init(s *Spool) {
	w.s = s
	w.cursorAt = s.ackPos
	w.cursorTime = time.Now()
}

// run is the writer goroutine: it takes queued jobs, writes them, fsyncs as
// the policy says, completes them, and removes acknowledged segments.
func (s *Spool) run() {
	w := &s.w
	defer close(s.stopped)
	var waiting []*job // written, waiting for an fsync
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		s.mu.Lock()
		jobs := s.queue
		s.queue = w.spare[:0]
		closing := s.closing
		s.mu.Unlock()

		force := closing
		for _, j := range jobs {
			if j.kind == jobSync {
				force = true
			}
		}
		waiting = w.write(jobs, waiting)
		clear(jobs)
		w.spare = jobs[:0]

		now := time.Now()
		switch {
		case !w.isDirty(), s.o.Fsync == FsyncNone && !force:
			waiting = complete(waiting, nil)
		case force, s.o.Fsync == FsyncAlways, now.Sub(w.lastSync) >= s.o.FsyncInterval:
			waiting = complete(waiting, w.sync())
		}
		w.collect(len(waiting) == 0, false)

		if closing {
			s.mu.Lock()
			more := len(s.queue) > 0
			s.mu.Unlock()
			if !more {
				w.finish()
				return
			}
			continue
		}
		wait := time.Duration(-1)
		if len(waiting) > 0 {
			wait = max(w.lastSync.Add(s.o.FsyncInterval).Sub(now), 0)
		}
		if s.start() != w.cursorAt {
			if d := max(w.cursorTime.Add(cursorEvery).Sub(now), 0); wait < 0 || d < wait {
				wait = d
			}
		}
		if wait < 0 {
			<-s.wake
			continue
		}
		timer.Reset(wait)
		select {
		case <-s.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func complete(jobs []*job, err error) []*job {
	for _, j := range jobs {
		if j.done == nil {
			continue
		}
		if j.kind == jobSync {
			j.done(err)
		} else {
			// A failed fsync leaves the records written and readable: they
			// drain. sync logged it and stopped Accepting.
			j.done(nil)
		}
	}
	clear(jobs)
	return jobs[:0]
}

// write writes jobs and returns waiting with those now waiting for an
// fsync appended. Jobs that fail are completed at once.
func (w *writer) write(jobs, waiting []*job) []*job {
	s := w.s
	for _, j := range jobs {
		switch j.kind {
		case jobSync:
			waiting = append(waiting, j)
		case jobRecord:
			if !j.reserve && !w.reserve(j) {
				continue
			}
			n := j.reserved
			if w.seg != nil {
				end := w.seg.size + int64(len(w.buf))
				if end+n > s.o.SegmentBytes && end > w.seg.start {
					waiting = w.flush(waiting)
					w.rotate()
				}
			}
			if w.seg == nil {
				if err := w.create(); err != nil {
					w.fail(j, err)
					continue
				}
			}
			w.buf = appendFrame(w.buf, j.m, j.degraded)
			w.batch = append(w.batch, j)
		case jobDeadLetter, jobCorrupt:
			if err := w.deadLetter(j); err != nil {
				s.log.Error().Str("id", j.m.ID).Str("reason", j.reason).Err(err).Msg("spool: dead-letter write failed")
				if j.done != nil {
					j.done(err)
				}
				continue
			}
			waiting = append(waiting, j)
		}
	}
	return w.flush(waiting)
}

// reserve takes room for a record the writer is to place: as it is, or else
// degraded to metadata in the reserved part. When not even that fits, the
// record is dropped: counted, logged and completed with ErrSpoolFull.
func (w *writer) reserve(j *job) bool {
	s := w.s
	n := frameSize(j.m)
	s.mu.Lock()
	ok := s.reserveLocked(n, j.degraded)
	s.mu.Unlock()
	if ok {
		j.reserved = n
		return true
	}
	if !j.degraded {
		if dm, err := degradeMessage(j.m, mdtap.DegradeSpoolFull); err == nil {
			n = frameSize(dm)
			s.mu.Lock()
			ok = s.reserveLocked(n, true)
			s.mu.Unlock()
			if ok {
				s.m.degrade(mdtap.DegradeSpoolFull)
				s.log.Warn().Str("id", j.m.ID).Str("subject", j.m.Subject).Str("reason", j.reason).
					Msg("spool full: keeping the record's metadata only")
				j.m, j.degraded, j.reserved = dm, true, n
				return true
			}
		}
	}
	s.m.drop(dropSpoolFull)
	s.log.Error().Str("id", j.m.ID).Str("subject", j.m.Subject).Str("reason", j.reason).
		Msg("record dropped: the spool is full, even for its metadata")
	if j.done != nil {
		j.done(ErrSpoolFull)
	}
	return false
}

// fail gives up a record that could not be written.
func (w *writer) fail(j *job, err error) {
	s := w.s
	s.mu.Lock()
	s.writeErr = true
	s.freeLocked(j.reserved)
	s.mu.Unlock()
	s.m.drop(dropWriteError)
	s.log.Error().Str("id", j.m.ID).Str("subject", j.m.Subject).Err(err).Msg("record dropped: spool write failed")
	if j.done != nil {
		j.done(err)
	}
}

// flush writes the batch to the active segment in one write and commits it:
// readers see it from now on.
func (w *writer) flush(waiting []*job) []*job {
	s := w.s
	if len(w.batch) == 0 {
		return waiting
	}
	if _, err := w.f.Write(w.buf); err != nil {
		// The segment must end at its last whole frame.
		if terr := w.f.Truncate(w.seg.size); terr != nil {
			err = errors.Join(err, terr)
		}
		for _, j := range w.batch {
			w.fail(j, err)
		}
	} else {
		off := w.seg.size
		for _, j := range w.batch {
			off += frameSize(j.m)
			j.end = spoolPos{w.seg.seq, off}
		}
		s.mu.Lock()
		w.seg.size += int64(len(w.buf))
		s.records += int64(len(w.batch))
		s.writeErr = false
		s.updateAcceptingLocked()
		s.mu.Unlock()
		w.markDirty(w.f, false)
		for _, j := range w.batch {
			s.m.appended(j.reason)
		}
		waiting = append(waiting, w.batch...)
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	clear(w.batch)
	w.batch = w.batch[:0]
	w.buf = w.buf[:0]
	return waiting
}

// create starts a new segment.
func (w *writer) create() error {
	s := w.s
	s.mu.Lock()
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()
	path := filepath.Join(s.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, spoolPerm)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if _, err := f.Write(segMagic); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create segment: %w", err)
	}
	g := &segment{seq: seq, path: path, start: segHeaderLen, size: segHeaderLen}
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.active = g
	s.used += segHeaderLen
	s.mu.Unlock()
	w.f, w.seg = f, g
	w.dirDirty = true
	w.markDirty(f, false)
	return nil
}

// rotate stops writing the active segment; it is closed after its fsync.
func (w *writer) rotate() {
	s := w.s
	s.mu.Lock()
	s.active = nil
	s.mu.Unlock()
	if !w.setClose(w.f) {
		w.f.Close()
	}
	w.f, w.seg = nil, nil
}

func (w *writer) markDirty(f *os.File, closeAfter bool) {
	for _, d := range w.dirty {
		if d.f == f {
			return
		}
	}
	w.dirty = append(w.dirty, dirtyFile{f: f, close: closeAfter})
}

// setClose marks a dirty file to be closed after its fsync; false if it is
// not dirty.
func (w *writer) setClose(f *os.File) bool {
	for i := range w.dirty {
		if w.dirty[i].f == f {
			w.dirty[i].close = true
			return true
		}
	}
	return false
}

func (w *writer) forget(f *os.File) {
	for i, d := range w.dirty {
		if d.f == f {
			w.dirty = append(w.dirty[:i], w.dirty[i+1:]...)
			return
		}
	}
}

func (w *writer) isDirty() bool { return len(w.dirty) > 0 || w.dirDirty || w.dlDirty }

// sync fsyncs every file written since the last fsync, and the directories
// whose entries changed (so that new segments survive a machine crash).
func (w *writer) sync() error {
	s := w.s
	start := time.Now()
	var first error
	for _, d := range w.dirty {
		if err := s.o.syncFile(d.f); err != nil && first == nil {
			first = fmt.Errorf("fsync %s: %w", d.f.Name(), err)
		}
		if d.close {
			d.f.Close()
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	if w.dirDirty {
		if err := w.syncDir(s.dir); err != nil && first == nil {
			first = err
		}
		w.dirDirty = false
	}
	if w.dlDirty {
		if err := w.syncDir(filepath.Join(s.dir, deadLetterDir)); err != nil && first == nil {
			first = err
		}
		w.dlDirty = false
	}
	w.lastSync = time.Now()
	s.m.synced(w.lastSync.Sub(start))
	if first != nil {
		s.log.Error().Err(first).Msg("spool: fsync failed; spooled records may not survive a machine crash")
		s.mu.Lock()
		s.writeErr = true
		s.updateAcceptingLocked()
		s.mu.Unlock()
	}
	return first
}

func (w *writer) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := w.s.o.syncFile(d); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// collect removes the segments whose records are all acknowledged — the
// active one too when everything written is acknowledged and idle says
// nothing waits for an fsync — and saves the acknowledgement cursor now and
// then (always when final).
func (w *writer) collect(idle, final bool) {
	s := w.s
	var remove []*segment
	rolled := false
	s.mu.Lock()
	ack := s.ackPos
	for len(s.segs) > 0 {
		g := s.segs[0]
		if g == s.active {
			if idle && len(s.queue) == 0 && len(w.batch) == 0 && ack == (spoolPos{g.seq, g.size}) {
				s.active = nil
				rolled = true
				remove = append(remove, g)
				s.segs = s.segs[1:]
				s.used -= g.size
			}
			break
		}
		if g.seq < ack.seq || g.seq == ack.seq && ack.off >= g.size {
			remove = append(remove, g)
			s.segs = s.segs[1:]
			s.used -= g.size
			continue
		}
		break
	}
	if len(remove) > 0 {
		s.updateAcceptingLocked()
	}
	s.mu.Unlock()
	if rolled {
		w.forget(w.f)
		w.f.Close()
		w.f, w.seg = nil, nil
	}
	for _, g := range remove {
		if err := os.Remove(g.path); err != nil {
			s.log.Error().Err(err).Msg("spool: removing an acknowledged segment failed")
		}
		w.dirDirty = true
	}
	now := time.Now()
	if ack != w.cursorAt && (final || len(remove) > 0 || now.Sub(w.cursorTime) >= cursorEvery) {
		if err := writeCursor(s.dir, ack); err != nil {
			s.log.Warn().Err(err).Msg("spool: saving the acknowledgement cursor failed; a restart replays more")
		}
		w.cursorAt, w.cursorTime = ack, now
	}
}

// finish ends the writer at Close: the queue is empty and everything is
// fsynced.
func (w *writer) finish() {
	s := w.s
	w.collect(true, true)
	var err error
	if w.isDirty() {
		err = w.sync()
	}
	for _, f := range []*os.File{w.f, w.dl, w.idx} {
		if f != nil {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}
	w.f, w.seg, w.dl, w.idx = nil, nil, nil, nil
	s.mu.Lock()
	s.active = nil
	if err != nil {
		s.closeErr = fmt.Errorf("close spool: %w", err)
	}
	s.mu.Unlock()
}

// deadLetterEntry is one line of deadletter/index.jsonl. It never holds
// payload data.
type deadLetterEntry struct {
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason"`
	ID       string    `json:"id,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Degraded bool      `json:"degraded,omitempty"`
	// File is where the bytes are, in the dead-letter directory; Offset
	// and Bytes locate them there (records) or in Segment (damaged bytes).
	File    string `json:"file"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
	Segment string `json:"segment,omitempty"`
}

const deadLetterIndex = "index.jsonl"

// deadLetter writes a record that can never be published, or damaged
// segment bytes, to the dead-letter directory, and a line to its index.
func (w *writer) deadLetter(j *job) error {
	s := w.s
	dir := filepath.Join(s.dir, deadLetterDir)
	if w.idx == nil {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			w.dirDirty = true
		}
		if err := os.MkdirAll(dir, spoolDirPerm); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, deadLetterIndex), os.O_WRONLY|os.O_CREATE|os.O_APPEND, spoolPerm)
		if err != nil {
			return err
		}
		w.idx = f
		w.dlDirty = true
	}
	e := deadLetterEntry{Time: time.Now().UTC(), Reason: j.reason}
	switch j.kind {
	case jobDeadLetter:
		if w.dl == nil {
			name := "records-" + time.Now().UTC().Format("20060102T150405.000000000Z") + ".spool"
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, spoolPerm)
			if err != nil {
				return err
			}
			if _, err := f.Write(segMagic); err != nil {
				f.Close()
				return err
			}
			w.dl, w.dlName, w.dlSize = f, name, segHeaderLen
			w.dlDirty = true
		}
		b := appendFrame(nil, j.m, j.degraded)
		if _, err := w.dl.Write(b); err != nil {
			w.dl.Truncate(w.dlSize)
			return err
		}
		e.ID, e.Subject, e.Degraded = j.m.ID, j.m.Subject, j.degraded
		e.File, e.Offset, e.Bytes = w.dlName, w.dlSize, int64(len(b))
		w.dlSize += int64(len(b))
		w.markDirty(w.dl, false)
	case jobCorrupt:
		name := fmt.Sprintf("corrupt-%020d-%d.bin", j.at.seq, j.at.off)
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, spoolPerm)
		if err != nil {
			return err
		}
		if _, err := f.Write(j.raw); err != nil {
			f.Close()
			return err
		}
		w.markDirty(f, true)
		w.dlDirty = true
		e.File, e.Segment, e.Offset, e.Bytes = name, segName(j.at.seq), j.at.off, int64(len(j.raw))
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := w.idx.Write(append(line, '\n')); err != nil {
		return err
	}
	w.markDirty(w.idx, false)
	s.m.deadLettered(j.reason)
	s.log.Warn().Str("id", e.ID).Str("subject", e.Subject).Str("reason", j.reason).Str("file", e.File).
		Msg("spool: record moved to the dead-letter directory")
	return nil
}

// degradeMessage returns the metadata-only form of an encoded protected
// record, for reason. Only the publisher's own encoding is at hand, not the
// raw record, so no new keyed digest can be made: body digests the record
// already carries stay, the payloads go (mdtap.Record.Degrade).
func degradeMessage(m Message, reason string) (Message, error) {
	var rec mdtap.Record
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return Message{}, fmt.Errorf("degrade record %s: %w", m.ID, err)
	}
	if rec.Policy == "" || rec.ID != m.ID {
		return Message{}, fmt.Errorf("degrade record %s: not a protected record", m.ID)
	}
	rec.Degrade(reason)
	data, err := encode(&rec)
	if err != nil {
		return Message{}, fmt.Errorf("degrade record %s: %w", m.ID, err)
	}
	return Message{ID: m.ID, Subject: m.Subject, Data: data}, nil
}
