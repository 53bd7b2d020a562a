package archive_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
	"github.com/mdtap/mdtap/archive/storetest"
)

func newFileStore(t testing.TB) *archive.FileStore {
	t.Helper()
	s, err := archive.NewFileStore(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatalf("NewFileStore: %v", err)
	}
	return s
}

func TestFileStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store { return newFileStore(t) })
}

func TestMemHeadsConformance(t *testing.T) {
	storetest.RunHeadStore(t, func(t *testing.T) archive.HeadStore { return archivetest.NewHeads() })
}

// The file store keeps object KEY as the file DIR/KEY, leaves no temporary
// files behind, and creates private files.
func TestFileStoreLayout(t *testing.T) {
	s := newFileStore(t)
	ctx := context.Background()
	keys := []string{"records/dt=2026-03-15/hour=09/sector=bank/c-000000000001-0a1b2c3d.jsonl.zst", "manifests/c/000000000001.json"}
	for _, k := range keys {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	if err := s.PutIfAbsent(ctx, "manifests/c/000000000002.json", []byte("m2")); err != nil {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "manifests/c/000000000002.json", []byte("m2 again")); !errors.Is(err, archive.ErrExists) {
		t.Fatalf("PutIfAbsent again: error = %v, want ErrExists", err)
	}
	for _, k := range keys {
		p := filepath.Join(s.Dir(), filepath.FromSlash(k))
		got, err := os.ReadFile(p)
		if err != nil || string(got) != k {
			t.Errorf("file %s = %q, %v; want %q", p, got, err, k)
		}
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Perm() != 0o640 {
			t.Errorf("file %s mode = %v, want 0640", p, fi.Mode().Perm())
		}
	}
	filepath.WalkDir(s.Dir(), func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
	// A temporary file (a crash mid-write) is never listed.
	if err := os.WriteFile(filepath.Join(s.Dir(), "manifests", "c", ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "manifests/", "", 10)
	if err != nil || len(list) != 2 {
		t.Errorf("List(manifests/) = %v, %v; want the two manifests", list, err)
	}
}

func TestNewFileStoreRelative(t *testing.T) {
	if _, err := archive.NewFileStore("relative/dir"); err == nil {
		t.Fatal("NewFileStore(relative/dir) succeeded, want an error")
	}
}

// A key whose directory is an object (the posix quirk) is an error, not a
// panic or a silent overwrite.
func TestFileStoreFileAsDirectory(t *testing.T) {
	s := newFileStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "a", []byte("file")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/b", []byte("below")); err == nil {
		t.Error("Put(a/b) with object a succeeded, want an error")
	}
	if _, err := s.Get(ctx, "a/b"); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("Get(a/b) error = %v, want ErrNotFound", err)
	}
}
