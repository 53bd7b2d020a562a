package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// KeysetSource is where a Set reads the files of a key directory, by name
// (aead.keyset.json, aead.meta.json, …; see KeyFiles): the directory itself
// (Load), or the copy `mdtap keys publish` keeps in a NATS key-value bucket
// (LoadFrom). Whatever the source, the keysets in it are the encrypted files
// as they are on disk: a source never holds plaintext key material, and a
// reader needs the KEK to use them.
//
// Implementations are safe for concurrent use.
type KeysetSource interface {
	// ReadKeyFile returns the content of the named file. The error matches
	// fs.ErrNotExist when the source holds no such file.
	ReadKeyFile(ctx context.Context, name string) ([]byte, error)
	// String names the source in messages and logs (a directory, or
	// nats://HOST:PORT/BUCKET); it never carries credentials.
	String() string
}

// KeysetNotifier is implemented by a KeysetSource that can tell when its
// content may have changed (a NATS key-value watch), so Watch reloads at once
// instead of at its next poll.
type KeysetNotifier interface {
	// KeysetChanges returns a channel that receives a value after the
	// content may have changed. The channel is closed when ctx is done or the
	// notifications stop; Watch then goes on polling.
	KeysetChanges(ctx context.Context) (<-chan struct{}, error)
}

// KeysetStore is a KeysetSource that Publish writes to.
type KeysetStore interface {
	KeysetSource
	// WriteKeyFile stores data under name, replacing any previous content.
	WriteKeyFile(ctx context.Context, name string, data []byte) error
}

// KeyFiles returns the names of the files that hold the keysets of purposes
// (all three when none is given): per purpose its metadata file, then its
// encrypted keyset. The development KEK (kek.json) is never among them.
func KeyFiles(purposes ...Purpose) []string {
	if len(purposes) == 0 {
		purposes = Purposes()
	}
	var names []string
	for _, p := range purposes {
		names = append(names, p.metaFile(), p.keysetFile())
	}
	return names
}

// dirSource is a key directory as a KeysetSource.
type dirSource string

func (d dirSource) ReadKeyFile(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d dirSource) String() string { return string(d) }

// sharedLocker is implemented by sources that hold a lock while a whole
// generation of files is read (a directory: the shared flock, so that no
// management command is half way through them).
type sharedLocker interface {
	lockShared(ctx context.Context) (unlock func(), err error)
}

func (d dirSource) lockShared(ctx context.Context) (func(), error) { return lockShared(ctx, string(d)) }

// readFrom reads one purpose's keyset and metadata files from src.
func readFrom(ctx context.Context, src KeysetSource, p Purpose) (*files, error) {
	ks, err := src.ReadKeyFile(ctx, p.keysetFile())
	if err != nil {
		return nil, missing(src, p.keysetFile(), err)
	}
	mb, err := src.ReadKeyFile(ctx, p.metaFile())
	if err != nil {
		return nil, missing(src, p.metaFile(), err)
	}
	m, err := decodeMeta(p, location(src, p.metaFile()), mb)
	if err != nil {
		return nil, err
	}
	return &files{keyset: ks, meta: m, metaB: mb}, nil
}

// readSource reads the files of purposes, under the source's shared lock if
// it has one.
func readSource(ctx context.Context, src KeysetSource, purposes []Purpose) ([]*files, error) {
	if l, ok := src.(sharedLocker); ok {
		unlock, err := l.lockShared(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	fs := make([]*files, len(purposes))
	for i, p := range purposes {
		var err error
		if fs[i], err = readFrom(ctx, src, p); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// location names one file of a source in messages.
func location(src KeysetSource, name string) string {
	if d, ok := src.(dirSource); ok {
		return filepath.Join(string(d), name)
	}
	return src.String() + ": " + name
}

// missing explains a file a source does not have.
func missing(src KeysetSource, name string, err error) error {
	if d, ok := src.(dirSource); ok {
		return notInitialised(string(d), err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: no %s: %w (has 'mdtap keys publish' been run to it?)", src, name, err)
	}
	return fmt.Errorf("%s: read %s: %w", src, name, err)
}

// LoadFrom reads the keysets of the given purposes (all three when none is
// given) from src, unwraps them with the KEK of kekURI and builds their
// primitives, exactly as Load does for a directory. kekURI "" uses the KEK
// URI recorded in each metadata file; a relative local:// path is then
// relative to the working directory, since a source has no directory.
// Watch on the returned set follows src: it reloads when src's files change,
// at once when src is a KeysetNotifier.
func LoadFrom(ctx context.Context, src KeysetSource, kekURI string, purposes ...Purpose) (*Set, error) {
	if src == nil {
		return nil, errors.New("load keys: no source")
	}
	if kekURI != "" {
		if err := checkKEKURI(kekURI); err != nil {
			return nil, fmt.Errorf("load keys from %s: %w", src, err)
		}
	}
	return loadSet(ctx, src, "", kekURI, purposes)
}

func loadSet(ctx context.Context, src KeysetSource, dir, kekURI string, purposes []Purpose) (*Set, error) {
	if len(purposes) == 0 {
		purposes = Purposes()
	}
	var ps []Purpose
	for _, p := range purposes {
		if !p.valid() {
			return nil, fmt.Errorf("load keys: unknown purpose %q", p)
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	s := &Set{src: src, dir: dir, kekURI: kekURI, purposes: ps, keks: map[string]tink.AEADWithContext{}}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// PublishResult says what Publish did.
type PublishResult struct {
	// Files is every file published, in the order written.
	Files []string
	// Changed is the files whose content differed from the store's (only
	// those were written).
	Changed []string
}

// Publish copies the key directory's encrypted keysets and their metadata
// (KeyFiles) to dst, so that sets loaded with LoadFrom(dst) pick them up. The
// keysets travel as they are on disk, wrapped by the KEK: dst never sees
// plaintext key material, and the development KEK file is never copied.
//
// The files are read under the directory's shared lock, so they are one
// consistent generation, and nothing is written unless every keyset unwraps
// under its KEK. Per purpose the metadata goes before the keyset: a reader in
// between sees a destroyed key's tombstone before the key leaves the keyset,
// or a new key's creation time before the key, both harmless. Files whose
// content dst already holds are not written again.
func Publish(ctx context.Context, dir string, dst KeysetStore) (PublishResult, error) {
	var res PublishResult
	if _, err := os.Stat(dir); err != nil {
		return res, fmt.Errorf("publish keys: %w", notInitialised(dir, err))
	}
	src := dirSource(dir)
	fs, err := readSource(ctx, src, Purposes())
	if err != nil {
		return res, fmt.Errorf("publish keys: %w", err)
	}
	keks := map[string]tink.AEADWithContext{}
	for i, p := range Purposes() {
		uri := fs[i].meta.KEKURI
		kek, ok := keks[uri]
		if !ok {
			if kek, err = openKEK(ctx, dir, uri, false); err != nil {
				return res, fmt.Errorf("publish keys: %w", err)
			}
			keks[uri] = kek
		}
		if _, err := decryptKeyset(ctx, dir, p, fs[i].keyset, kek, uri); err != nil {
			return res, fmt.Errorf("publish keys: %w", err)
		}
	}
	for i, p := range Purposes() {
		for _, f := range []struct {
			name string
			data []byte
		}{{p.metaFile(), fs[i].metaB}, {p.keysetFile(), fs[i].keyset}} {
			res.Files = append(res.Files, f.name)
			cur, err := dst.ReadKeyFile(ctx, f.name)
			if err == nil && string(cur) == string(f.data) {
				continue
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return res, fmt.Errorf("publish keys: read %s from %s: %w", f.name, dst, err)
			}
			if err := dst.WriteKeyFile(ctx, f.name, f.data); err != nil {
				return res, fmt.Errorf("publish keys: write %s to %s: %w", f.name, dst, err)
			}
			res.Changed = append(res.Changed, f.name)
		}
	}
	return res, nil
}
