package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is one record read back from a spool's dead-letter directory.
type DeadLetter struct {
	File     string // the records-*.spool file, relative to DIR/deadletter
	Offset   int64
	Message  Message
	Degraded bool
}

// DeadLetterFiles is what ReadDeadLetters found.
type DeadLetterFiles struct {
	Records []DeadLetter
	// Damaged counts runs of bytes that are no valid frame (skipped); a
	// partial frame at a file's end — a write in progress, or cut by a
	// crash — is not counted: it is in Partial.
	Damaged int
	Partial int
}

// ReadDeadLetters reads every record of the dead-letter files
// (records-*.spool) of the spool directory dir, in file then offset order.
// It only reads, so it may run beside the sidecar that owns the spool: the
// file that sidecar is appending to ends, at worst, in a partial frame.
// Damaged spool bytes (corrupt-*.bin) hold no record to read and are left
// to the operator.
func ReadDeadLetters(dir string) (DeadLetterFiles, error) {
	var out DeadLetterFiles
	dlDir := filepath.Join(dir, deadLetterDir)
	names, err := filepath.Glob(filepath.Join(dlDir, "records-*.spool"))
	if err != nil {
		return out, fmt.Errorf("list dead letters: %w", err)
	}
	slices.Sort(names)
	for _, path := range names {
		b, err := os.ReadFile(path)
		if err != nil {
			return out, fmt.Errorf("read dead letters: %w", err)
		}
		name := filepath.Base(path)
		if !bytes.HasPrefix(b, segMagic) {
			return out, fmt.Errorf("dead-letter file %s: not a spool file (unknown header)", name)
		}
		for off := int(segHeaderLen); off < len(b); {
			f, n, err := parseFrame(b[off:])
			switch {
			case errors.Is(err, errShortFrame):
				out.Partial++
				off = len(b)
			case err != nil:
				out.Damaged++
				off += resync(b[off:])
			default:
				m := f.m
				m.Data = bytes.Clone(m.Data)
				out.Records = append(out.Records, DeadLetter{File: name, Offset: int64(off), Message: m, Degraded: f.degraded})
				off += n
			}
		}
	}
	return out, nil
}

// ReplayReport is what ReplayDeadLetters did.
type ReplayReport struct {
	Records   int `json:"records"`   // records in the dead-letter files
	Skipped   int `json:"skipped"`   // published by an earlier replay
	Published int `json:"published"` // stored by the stream now
	Duplicate int `json:"duplicate"` // the stream already had the id
	Failed    int `json:"failed"`
	Damaged   int `json:"damaged"`
	Partial   int `json:"partial"`
	// Failures: one per record not published, with the reason label of
	// docs/metrics.md (too_large, rejected, …); never a payload.
	Failures []ReplayFailure `json:"failures,omitempty"`
}

// ReplayFailure is a dead letter the stream still refused.
type ReplayFailure struct {
	ID     string `json:"id"`
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Reason string `json:"reason"`
}

// replayedLog notes, one JSON line per record, what a replay published, so
// that running it again skips those records.
const replayedLog = "replayed.jsonl"

type replayedEntry struct {
	Time   time.Time `json:"time"`
	ID     string    `json:"id"`
	File   string    `json:"file"`
	Offset int64     `json:"offset"`
	Result string    `json:"result"` // published or duplicate
}

// ReplayDeadLetters publishes the dead-letter records of the spool
// directory dir to streamName, each with its record id as Nats-Msg-Id (a
// record the stream already holds within its duplicate window is stored
// once), after the cause that set them aside is fixed: a larger max
// payload or max message size, a corrected stream. Each published record is
// noted in DIR/deadletter/replayed.jsonl, and a later replay skips it; the
// dead-letter files are left for the operator to delete. With dryRun
// nothing is published or noted.
func ReplayDeadLetters(ctx context.Context, nc *nats.Conn, streamName, dir string, dryRun bool) (ReplayReport, error) {
	var rep ReplayReport
	files, err := ReadDeadLetters(dir)
	if err != nil {
		return rep, err
	}
	rep.Records, rep.Damaged, rep.Partial = len(files.Records), files.Damaged, files.Partial
	logPath := filepath.Join(dir, deadLetterDir, replayedLog)
	done, err := readReplayed(logPath)
	if err != nil {
		return rep, err
	}
	var todo []DeadLetter
	for _, d := range files.Records {
		if done[replayKey(d.File, d.Offset)] {
			rep.Skipped++
			continue
		}
		todo = append(todo, d)
	}
	if dryRun || len(todo) == 0 {
		return rep, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, fmt.Errorf("replay dead letters: %w", err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, spoolPerm)
	if err != nil {
		return rep, fmt.Errorf("replay dead letters: %w", err)
	}
	defer logFile.Close()
	enc := json.NewEncoder(logFile)
	for _, d := range todo {
		msg := &nats.Msg{Subject: d.Message.Subject, Data: d.Message.Data, Header: nats.Header{
			jetstream.MsgIDHeader:          []string{d.Message.ID},
			jetstream.ExpectedStreamHeader: []string{streamName},
		}}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			if ctx.Err() != nil {
				return rep, fmt.Errorf("replay dead letters: %w", ctx.Err())
			}
			reason, _ := classify(err)
			if reason == ReasonDisconnected || reason == ReasonTimeout || reason == ReasonNoStream {
				// Not the record's fault: stop rather than list every record.
				return rep, fmt.Errorf("replay dead letters: publish %s: %s", d.Message.ID, reason)
			}
			rep.Failed++
			rep.Failures = append(rep.Failures, ReplayFailure{ID: d.Message.ID, File: d.File, Offset: d.Offset, Reason: reason})
			continue
		}
		result := "published"
		if ack.Duplicate {
			result = "duplicate"
			rep.Duplicate++
		} else {
			rep.Published++
		}
		if err := enc.Encode(replayedEntry{Time: time.Now().UTC(), ID: d.Message.ID, File: d.File, Offset: d.Offset, Result: result}); err != nil {
			return rep, fmt.Errorf("replay dead letters: note %s: %w", replayedLog, err)
		}
	}
	if err := logFile.Sync(); err != nil {
		return rep, fmt.Errorf("replay dead letters: sync %s: %w", replayedLog, err)
	}
	return rep, nil
}

func replayKey(file string, off int64) string { return fmt.Sprintf("%s@%d", file, off) }

// readReplayed reads the replay log; a line cut by a crash is ignored (its
// record is replayed again, which the duplicate window makes harmless).
func readReplayed(path string) (map[string]bool, error) {
	done := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", replayedLog, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e replayedEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && strings.TrimSpace(e.File) != "" {
			done[replayKey(e.File, e.Offset)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", replayedLog, err)
	}
	return done, nil
}
