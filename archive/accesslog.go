package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mdtap/mdtap"
)

// FileAccessLog appends access-log entries to a local file, hash-chained,
// each write fsynced before it returns: an access that was not logged must
// not happen. It serves `mdtap reveal` until entries go to the archive.
// Concurrent writers (several processes) are serialised with a file lock, so the
// chain never forks.
type FileAccessLog struct {
	Path string
}

// Append writes e with Prev set to the hash of the file's last line.
func (l FileAccessLog) Append(e mdtap.AccessEntry) error {
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return fmt.Errorf("create access log dir: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open access log: %w", err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return fmt.Errorf("lock access log: %w", err)
	}
	last, err := lastLine(f)
	if err != nil {
		return fmt.Errorf("read access log: %w", err)
	}
	e.V = 1
	e.Prev = ""
	if len(last) > 0 {
		sum := sha256.Sum256(last)
		e.Prev = hex.EncodeToString(sum[:])
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode access entry: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write access log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync access log: %w", err)
	}
	return nil
}

// lastLine returns the file's last non-empty line.
func lastLine(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var last []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			last = append(last[:0], line...)
		}
	}
	return last, sc.Err()
}

// VerifyAccessLog walks a local access log's chain and reports the first
// broken link by line number.
func VerifyAccessLog(r io.Reader) (entries int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	prev := ""
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		entries++
		var e mdtap.AccessEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return entries, fmt.Errorf("access log line %d: not an entry", entries)
		}
		if e.Prev != prev {
			return entries, fmt.Errorf("access log line %d: chain broken (an entry before it was altered or removed)", entries)
		}
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
	}
	if err := sc.Err(); err != nil {
		return entries, errors.Join(errors.New("read access log"), err)
	}
	return entries, nil
}
