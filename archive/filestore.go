package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"
)

// FileStore keeps objects as files in a local directory, object KEY as the
// file DIR/KEY: the store of file:///ABS/DIR URLs, for development, the demo
// and single-host setups. The layout is the same as in S3, so a directory
// can be copied to a bucket as it is.
//
// Writes are atomic and durable: the data goes to a temporary file in the
// target directory (".tmp-…", never listed), which is fsynced, then renamed
// (Put) or hard-linked (PutIfAbsent, which fails if the name exists) into
// place, and the directory is fsynced; new directories are fsynced into their
// parents. A crash leaves the old object or the new one, and at worst a
// temporary file.
//
// Like versitygw's posix backend, and unlike S3, a directory cannot hold both
// key "a" and key "a/b"; the archive's layout never needs both.
type FileStore struct {
	dir string
}

var _ Store = (*FileStore)(nil)

// File and directory permissions of a FileStore: the archive holds protected
// records, readable by the archiver's user (and group, for auditors).
const (
	fileMode = 0o640
	dirMode  = 0o750
)

// NewFileStore opens (creating it if needed) the directory dir, which must be
// absolute.
func NewFileStore(dir string) (*FileStore, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file store: directory %q is not absolute", dir)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("file store: create directory: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// Dir returns the store's root directory.
func (s *FileStore) Dir() string { return s.dir }

func (s *FileStore) path(key string) string {
	return filepath.Join(s.dir, filepath.FromSlash(key))
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, data []byte) error {
	if err := s.write(ctx, key, data, false); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	return nil
}

// PutIfAbsent implements Store.
func (s *FileStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := s.write(ctx, key, data, true); err != nil {
		return fmt.Errorf("put object %s if absent: %w", key, err)
	}
	return nil
}

func (s *FileStore) write(ctx context.Context, key string, data []byte, exclusive bool) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := s.path(key)
	dir := filepath.Dir(final)
	if err := s.mkdirAll(dir); err != nil {
		return err
	}
	if exclusive {
		// A cheap early answer; the link below is what decides.
		if _, err := os.Lstat(final); err == nil {
			return ErrExists
		}
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a rename or link this finds nothing, or removes the temp name only
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if exclusive {
		// link(2) never replaces: it is the atomic "create if absent".
		if err := os.Link(tmpName, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return ErrExists
			}
			return err
		}
	} else if err := os.Rename(tmpName, final); err != nil {
		return err
	}
	return syncDir(dir)
}

// mkdirAll creates dir and its missing parents under the root, fsyncing each
// new directory's parent so the new entries survive a crash.
func (s *FileStore) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is an object, not a directory", dir)
		}
		return nil
	}
	if dir == s.dir || len(dir) < len(s.dir) {
		return os.MkdirAll(dir, dirMode)
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, fmt.Errorf("get object: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get object %s: %w", key, err)
	}
	data, err := os.ReadFile(s.path(key))
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", key, notFound(err))
	}
	return data, nil
}

// Stat implements Store.
func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("stat object: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err == nil && fi.IsDir() {
		err = syscall.EISDIR
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, notFound(err))
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// notFound maps the ways a file can be absent to ErrNotFound: no such file,
// a path component that is a file, or a directory (a key prefix) in its place.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) {
		return ErrNotFound
	}
	return err
}

// List implements Store. It walks the directory tree in key order, skipping
// the subtrees that cannot hold a key after startAfter, so paging through a
// large store costs about one page's directories per call.
func (s *FileStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]ObjectInfo, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list objects %s: limit %d is not positive", prefix, limit)
	}
	if prefix != "" {
		// A prefix is a key cut anywhere; completed, it must be a valid key,
		// which also keeps the walk inside the root.
		if err := ValidKey(prefix + "x"); err != nil {
			return nil, fmt.Errorf("list objects: prefix: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list objects %s: %w", prefix, err)
	}
	var out []ObjectInfo
	// Start at the deepest directory the prefix names completely.
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	err := s.list(ctx, base, prefix, startAfter, limit, &out)
	if errors.Is(err, errListFull) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("list objects %s: %w", prefix, err)
	}
	return out, nil
}

var errListFull = errors.New("list full")

// list appends the keys under directory rel (a relative key prefix without
// the trailing "/", "" for the root) to out, in key order.
func (s *FileStore) list(ctx context.Context, rel, prefix, startAfter string, limit int, out *[]ObjectInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(s.path(rel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	type entry struct {
		key   string // the key, or the directory's key prefix ending in "/"
		dir   bool
		entry fs.DirEntry
	}
	es := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) || !utf8.ValidString(name) || strings.ContainsAny(name, "\\\x00") {
			continue // temporary files, and names no key can have
		}
		key := name
		if rel != "" {
			key = rel + "/" + name
		}
		if e.IsDir() {
			key += "/"
		} else if !e.Type().IsRegular() {
			continue
		}
		es = append(es, entry{key: key, dir: e.IsDir(), entry: e})
	}
	// Sorting directories as "name/" gives the byte-wise order of the keys
	// inside them relative to their siblings.
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range es {
		if e.dir {
			// Can the subtree hold a key with the prefix?
			if !strings.HasPrefix(e.key, prefix) && !strings.HasPrefix(prefix, e.key) {
				continue
			}
			// Does every key in it sort before or at startAfter?
			if e.key <= startAfter && !strings.HasPrefix(startAfter, e.key) {
				continue
			}
			if err := s.list(ctx, strings.TrimSuffix(e.key, "/"), prefix, startAfter, limit, out); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(e.key, prefix) || e.key <= startAfter {
			continue
		}
		fi, err := e.entry.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since ReadDir
			}
			return err
		}
		*out = append(*out, ObjectInfo{Key: e.key, Size: fi.Size(), ModTime: fi.ModTime()})
		if len(*out) >= limit {
			return errListFull
		}
	}
	return nil
}
