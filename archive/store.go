package archive

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is the subset of object storage the archive uses. Keys are relative
// to the store's root (the store URL's prefix) and pass ValidKey; List
// returns them in the same relative form.
//
// Every method honours ctx: once ctx is done it returns an error that
// errors.Is ctx.Err(), and a Put or PutIfAbsent cut short stores nothing.
// Implementations are safe for concurrent use. Any error other than the
// sentinels below may be transient (a network failure, a server restart):
// callers retry with backoff. Test every implementation with
// archive/storetest.Run.
type Store interface {
	// Put stores data under key, replacing any object there. A reader sees
	// the old object or the new one, never a mix or a partial object.
	// ErrInvalidKey when key fails ValidKey.
	Put(ctx context.Context, key string, data []byte) error

	// PutIfAbsent stores data under key only if no object has that key, as
	// one atomic step: of several concurrent calls for one key at most one
	// succeeds. ErrExists when an object is there already (also when an
	// earlier attempt of the same call succeeded but its answer was lost, so
	// a caller that retries compares the stored object with its own).
	PutIfAbsent(ctx context.Context, key string, data []byte) error

	// Get returns the object's bytes. ErrNotFound when there is none.
	Get(ctx context.Context, key string) ([]byte, error)

	// Stat describes the object. ErrNotFound when there is none.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List returns up to limit objects whose keys start with prefix and sort
	// after startAfter (byte-wise, as S3 orders keys), in that order. Fewer
	// than limit objects means there are no more. An empty startAfter starts
	// at the beginning; a prefix without matches gives an empty list, not an
	// error.
	List(ctx context.Context, prefix, startAfter string, limit int) ([]ObjectInfo, error)
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string // relative to the store's root
	Size    int64
	ModTime time.Time
}

// Sentinel errors of a Store; test with errors.Is.
var (
	// ErrNotFound: no object has the key.
	ErrNotFound = errors.New("object not found")
	// ErrExists: PutIfAbsent found an object under the key.
	ErrExists = errors.New("object already exists")
	// ErrInvalidKey: the key fails ValidKey; retrying cannot help.
	ErrInvalidKey = errors.New("invalid object key")
)

// MaxKeyBytes is the longest key ValidKey accepts (S3's limit).
const MaxKeyBytes = 1024

// ValidKey checks a relative object key: UTF-8, at most MaxKeyBytes, "/"
// separating non-empty segments (no leading, trailing or doubled "/"), no
// "." or ".." segment, no NUL or backslash, and no segment starting with
// ".tmp-" (the local-directory store's temporary files). Every store accepts
// exactly these keys, so an archive can move between stores. The error wraps
// ErrInvalidKey.
func ValidKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidKey)
	case strings.ContainsAny(key, "\x00\\"):
		return bad("holds a NUL or a backslash")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty segment (leading, trailing or doubled /)")
		case seg == "." || seg == "..":
			return bad("dot segment")
		case strings.HasPrefix(seg, tempPrefix):
			return bad("segment starts with " + tempPrefix)
		}
	}
	return nil
}

// tempPrefix starts the names of the local-directory store's temporary files,
// which no key may use.
const tempPrefix = ".tmp-"

// listPage is how many keys Walk asks a store for at a time.
const listPage = 1000

// Walk yields every object whose key starts with prefix and sorts after
// startAfter, in key order, paging through Store.List. It stops at the first
// error, which it yields with a zero ObjectInfo.
func Walk(ctx context.Context, s Store, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		after := startAfter
		for {
			page, err := s.List(ctx, prefix, after, listPage)
			if err != nil {
				yield(ObjectInfo{}, err)
				return
			}
			for _, o := range page {
				if !yield(o, nil) {
					return
				}
			}
			if len(page) < listPage {
				return
			}
			after = page[len(page)-1].Key
		}
	}
}
