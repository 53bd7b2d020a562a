package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// The files in DIR:
//
//	kek.json            the development KEK of the default local:// URI (cleartext, 0600)
//	<purpose>.keyset.json  the purpose's Tink keyset, encrypted under the KEK (Tink JSON)
//	<purpose>.meta.json    its metadata: KEK URI, creation and tombstone times per key
//	keys.lock           the lock management commands hold
const (
	defaultKEKFile = "kek.json"
	lockFile       = "keys.lock"
	metaVersion    = 1
)

func lockPath(dir string) string { return filepath.Join(dir, lockFile) }

// meta is a purpose's metadata file. Tink keysets hold no timestamps and
// forget a deleted key entirely, so the creation time of every key and the
// tombstone of every destroyed one live here. A key's status is the keyset's
// (primary, enabled, disabled) unless Destroyed is set.
type meta struct {
	Version int     `json:"version"`
	Purpose Purpose `json:"purpose"`
	// KEKURI names the key-encryption key, so that later commands and loads
	// need no --kek. A relative local:// path is relative to DIR.
	KEKURI string              `json:"kek_uri"`
	Keys   map[uint32]*keyMeta `json:"keys"`
}

type keyMeta struct {
	Created time.Time `json:"created"`
	// Superseded is when the key stopped being primary (another key was
	// promoted): the end of the period whose values it protects. Zero while
	// it is primary, if it never was, or in metadata written before mdtap
	// recorded it (Retire then estimates it).
	Superseded time.Time `json:"superseded,omitzero"`
	Disabled   time.Time `json:"disabled,omitzero"`
	Destroyed  time.Time `json:"destroyed,omitzero"`
}

func newMeta(p Purpose, kekURI string) *meta {
	return &meta{Version: metaVersion, Purpose: p, KEKURI: kekURI, Keys: map[uint32]*keyMeta{}}
}

func (m *meta) key(id uint32) *keyMeta {
	km := m.Keys[id]
	if km == nil {
		km = &keyMeta{}
		m.Keys[id] = km
	}
	return km
}

func (m *meta) destroyed(id uint32) bool {
	km := m.Keys[id]
	return km != nil && !km.Destroyed.IsZero()
}

func decodeMeta(p Purpose, path string, b []byte) (*meta, error) {
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: not a metadata file: %w", path, err)
	}
	switch {
	case m.Version != metaVersion:
		return nil, fmt.Errorf("read %s: unsupported metadata version %d", path, m.Version)
	case m.Purpose != p:
		return nil, fmt.Errorf("read %s: metadata of purpose %q, want %q", path, m.Purpose, p)
	case m.KEKURI == "":
		return nil, fmt.Errorf("read %s: no kek_uri", path)
	}
	if m.Keys == nil {
		m.Keys = map[uint32]*keyMeta{}
	}
	return &m, nil
}

func encodeMeta(m *meta) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// files is what was read of one purpose: the raw bytes (for change
// detection) and the decoded metadata.
type files struct {
	keyset []byte
	meta   *meta
	metaB  []byte
}

// readFiles reads a purpose's keyset and metadata files from dir.
func readFiles(dir string, p Purpose) (*files, error) {
	return readFrom(context.Background(), dirSource(dir), p)
}

func notInitialised(dir string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (is %s initialised? run 'mdtap keys init --dir %s')", err, dir, dir)
	}
	return err
}

// decryptKeyset opens an encrypted keyset under the KEK. The error names the
// likely causes, never the content.
func decryptKeyset(ctx context.Context, dir string, p Purpose, b []byte, kek tink.AEADWithContext, kekURI string) (*keyset.Handle, error) {
	return openKeyset(ctx, keysetPath(dir, p), p, b, kek, kekURI)
}

// openKeyset is decryptKeyset for a keyset read from where (a path, or a
// file of another KeysetSource).
func openKeyset(ctx context.Context, where string, p Purpose, b []byte, kek tink.AEADWithContext, kekURI string) (*keyset.Handle, error) {
	h, err := keyset.ReadWithContext(ctx, keyset.NewJSONReader(bytes.NewReader(b)), kek, p.associatedData())
	if err != nil {
		// Tink flattens the KMS client's error into text: a failed KMS call
		// says so itself; anything else is a wrong KEK or a swapped file.
		hint := " (wrong KEK, or the file of another purpose?)"
		if strings.Contains(err.Error(), "operation error") {
			hint = ""
		}
		if ctx.Err() != nil { // Tink's text holds the cause, but not the chain
			return nil, fmt.Errorf("decrypt %s under KEK %s: %w: %v", where, kekURI, ctx.Err(), err)
		}
		return nil, fmt.Errorf("decrypt %s under KEK %s%s: %w", where, kekURI, hint, err)
	}
	if h.Len() == 0 {
		return nil, fmt.Errorf("decrypt %s: empty keyset", where)
	}
	return h, nil
}

// encryptKeyset encrypts a keyset under the KEK, bound to its purpose.
func encryptKeyset(ctx context.Context, p Purpose, h *keyset.Handle, kek tink.AEADWithContext) ([]byte, error) {
	var buf bytes.Buffer
	if err := h.WriteWithContext(ctx, keyset.NewJSONWriter(&buf), kek, p.associatedData()); err != nil {
		return nil, fmt.Errorf("encrypt %s keyset: %w", p, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// writeFileAtomic replaces path with data, mode 0600: the data goes to a
// temporary file in the same directory, is synced, renamed over path, and the
// directory is synced, so a reader sees the old file or the new one and a
// crash leaves one of them.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeFileNew is writeFileAtomic for a file that must not exist yet: it
// fails with fs.ErrExist rather than replace one.
func writeFileNew(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new synced file of mode 0600 beside path.
func writeTemp(path string, data []byte) (name string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
