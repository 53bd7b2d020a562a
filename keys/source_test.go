package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
)

// plaintextKeys is the raw key bytes of every key of dir's keysets.
func plaintextKeys(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range Purposes() {
		for _, k := range insecurecleartextkeyset.KeysetMaterial(decryptForTest(t, dir, p)).GetKey() {
			out = append(out, k.GetKeyData().GetValue())
		}
	}
	return out
}

// assertNoKeyMaterial fails if b holds any of keys, raw or base64.
func assertNoKeyMaterial(t *testing.T, what string, b []byte, keys [][]byte) {
	t.Helper()
	for _, k := range keys {
		for _, enc := range [][]byte{k, []byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k))} {
			if bytes.Contains(b, enc[:16]) {
				t.Errorf("%s holds plaintext key material", what)
				return
			}
		}
	}
}

func TestKeyFiles(t *testing.T) {
	got := KeyFiles()
	want := []string{"aead.meta.json", "aead.keyset.json", "daead.meta.json", "daead.keyset.json", "prf.meta.json", "prf.keyset.json"}
	if !slices.Equal(got, want) {
		t.Errorf("KeyFiles() = %v, want %v", got, want)
	}
}

// A set loaded from a published copy works like the directory's, reloads
// on a change notification, and the copy holds no plaintext key.
func TestPublishLoadFromWatch(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	store := newMemKeysetStore()
	res, err := Publish(ctx, dir, store)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(res.Files) != 6 || len(res.Changed) != 6 {
		t.Errorf("first Publish: %d files, %d changed; want 6, 6", len(res.Files), len(res.Changed))
	}
	if res, _ := Publish(ctx, dir, store); len(res.Changed) != 0 {
		t.Errorf("Publish of an unchanged directory changed %v", res.Changed)
	}
	if _, err := store.ReadKeyFile(ctx, "kek.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the local KEK was published")
	}

	kek := SchemeLocal + filepath.Join(dir, "kek.json")
	node, err := LoadFrom(ctx, store, kek)
	if err != nil {
		t.Fatalf("LoadFrom: %v", err)
	}
	if node.Dir() != "" || node.Source() != "mem://keys" {
		t.Errorf("Dir, Source = %q, %q", node.Dir(), node.Source())
	}
	local := load(t, dir)
	if node.Primary() != local.Primary() {
		t.Errorf("Primary from the store %+v, from the directory %+v", node.Primary(), local.Primary())
	}
	ct, err := local.Encrypt([]byte("value"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := node.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "value" {
		t.Errorf("Decrypt on the other node = %q, %v", pt, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		node.Watch(wctx, time.Hour, zerolog.New(zerolog.NewTestWriter(t))) // the poll never fires: only the notification
	}()
	t.Cleanup(func() { cancel(); <-done })

	old := node.Primary()
	oldCT, _ := node.Encrypt([]byte("old"), nil)
	id, err := Rotate(ctx, dir, PurposeAEAD)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, dir, store); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watching set to load the new primary", func() bool { return node.Primary().AEAD == id })
	if node.Primary().PRF != old.PRF {
		t.Error("prf primary changed with an aead rotation")
	}
	if pt, err := node.Decrypt(oldCT, nil); err != nil || string(pt) != "old" {
		t.Errorf("old value after reload = %q, %v", pt, err)
	}
	assertNoKeyMaterial(t, "the store", store.all(), plaintextKeys(t, dir))
}

func TestLoadFromErrors(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	empty := newMemKeysetStore()
	_, err := LoadFrom(ctx, empty, "")
	if err == nil || !strings.Contains(err.Error(), "mdtap keys publish") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFrom an empty store: got %v, want a hint to publish", err)
	}
	store := newMemKeysetStore()
	if _, err := Publish(ctx, dir, store); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFrom(ctx, store, "gcp-kms://x"); err == nil {
		t.Error("LoadFrom with an unsupported KEK URI: no error")
	}
	// Another KEK: the keysets do not unwrap.
	other := newDir(t)
	if _, err := LoadFrom(ctx, store, SchemeLocal+filepath.Join(other, "kek.json")); err == nil || !strings.Contains(err.Error(), "wrong KEK") {
		t.Errorf("LoadFrom under another KEK: got %v, want a wrong-KEK error", err)
	}
	// The recorded KEK URI is relative to the directory, which a store has
	// not: from the working directory it is found.
	t.Chdir(dir)
	if _, err := LoadFrom(ctx, store, ""); err != nil {
		t.Errorf("LoadFrom with the recorded KEK, from DIR: %v", err)
	}
	// Only some purposes.
	s, err := LoadFrom(ctx, store, "", PurposePRF)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Encrypt(nil, nil); err == nil {
		t.Error("Encrypt on a prf-only set: no error")
	}
}

// Publish refuses a directory whose keysets do not unwrap, and writes
// nothing.
func TestPublishRefusesBrokenDir(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	os.WriteFile(keysetPath(dir, PurposeDAEAD), []byte("{}"), 0o600)
	store := newMemKeysetStore()
	if _, err := Publish(ctx, dir, store); err == nil {
		t.Fatal("Publish of a broken directory: no error")
	}
	if len(store.files) != 0 {
		t.Errorf("Publish of a broken directory wrote %d files", len(store.files))
	}
}
