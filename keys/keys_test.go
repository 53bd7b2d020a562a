package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/rs/zerolog"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// newDir initialises a key directory with a local KEK.
func newDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := Init(t.Context(), dir, ""); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return dir
}

func load(t *testing.T, dir string, ps ...Purpose) *Set {
	t.Helper()
	s, err := Load(t.Context(), dir, ps...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func list(t *testing.T, dir string) []KeyInfo {
	t.Helper()
	infos, err := List(t.Context(), dir)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return infos
}

func statusOf(t *testing.T, dir string, id uint32) string {
	t.Helper()
	for _, ki := range list(t, dir) {
		if ki.KeyID == id {
			return ki.Status
		}
	}
	t.Fatalf("List: no key %d", id)
	return ""
}

func TestInit(t *testing.T) {
	before := time.Now().Add(-time.Second)
	dir := newDir(t)
	after := time.Now().Add(time.Second)

	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode: got %v, want 0700", got)
	}
	want := []string{"kek.json", "keys.lock"}
	for _, p := range Purposes() {
		want = append(want, p.keysetFile(), p.metaFile())
	}
	for _, name := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if got := st.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode: got %v, want 0600", name, got)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(want) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want exactly %v", names, want)
	}

	infos := list(t, dir)
	if len(infos) != 3 {
		t.Fatalf("List: got %d keys, want 3", len(infos))
	}
	ids := map[uint32]bool{}
	for i, ki := range infos {
		if ki.Purpose != Purposes()[i] || ki.Status != StatusPrimary {
			t.Errorf("List[%d]: got %s %s, want %s primary", i, ki.Purpose, ki.Status, Purposes()[i])
		}
		if ki.Created.Before(before) || ki.Created.After(after) {
			t.Errorf("List[%d].Created: got %v, want about now", i, ki.Created)
		}
		ids[ki.KeyID] = true
	}
	if len(ids) != 3 || ids[0] {
		t.Errorf("key ids: got %v, want three distinct non-zero", ids)
	}

	m, err := os.ReadFile(metaPath(dir, PurposeAEAD))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m, []byte(`"kek_uri": "local://kek.json"`)) {
		t.Errorf("aead.meta.json does not record the default KEK URI:\n%s", m)
	}

	err = Init(t.Context(), dir, "")
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Init again: got %v, want fs.ErrExist", err)
	}
	if got := list(t, dir); !slices.Equal(got, infos) {
		t.Errorf("Init again changed the keys: got %v, want %v", got, infos)
	}
}

func TestInitKEKURI(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "shared-kek.json")
	cases := []struct {
		name, uri string
		wantErr   string // "" for success
	}{
		{"absolute local", "local://" + shared, ""},
		{"relative local", "local://my-kek.json", ""},
		{"empty local", "local://", "no path"},
		{"hcvault", "hcvault://transit/keys/mdtap", "planned"},
		{"unknown scheme", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", `unsupported KEK URI scheme "gcp-kms://": use local://PATH or aws-kms://`},
		{"no scheme", "/etc/kek.json", "has no scheme"},
		{"bad aws", "aws-kms://alias/mdtap", "want aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			err := Init(t.Context(), dir, c.uri)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Init(%q): got %v, want an error containing %q", c.uri, err, c.wantErr)
				}
				if _, err := os.Stat(keysetPath(dir, PurposeAEAD)); err == nil {
					t.Errorf("Init(%q) failed but wrote a keyset", c.uri)
				}
				return
			}
			if err != nil {
				t.Fatalf("Init(%q): %v", c.uri, err)
			}
			s := load(t, dir)
			ct, err := s.Encrypt([]byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Decrypt(ct, nil); err != nil {
				t.Errorf("Decrypt: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "kek.json")); err == nil {
				t.Errorf("Init(%q) also wrote the default kek.json", c.uri)
			}
		})
	}
}

// A relative local:// KEK is relative to DIR, so the directory can move.
func TestMoveDir(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	ct, _ := s.Encrypt([]byte("moved"), nil)
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	pt, err := load(t, moved).Decrypt(ct, nil)
	if err != nil || string(pt) != "moved" {
		t.Errorf("Decrypt after moving the dir: got %q, %v", pt, err)
	}
}

func TestAddPromote(t *testing.T) {
	for _, p := range Purposes() {
		t.Run(string(p), func(t *testing.T) {
			dir := newDir(t)
			s := load(t, dir)
			oldPrimary := s.Primary()
			id, err := Add(t.Context(), dir, p)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if got := statusOf(t, dir, id); got != StatusEnabled {
				t.Errorf("after Add: status %q, want enabled", got)
			}
			if err := s.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := s.Primary(); got != oldPrimary {
				t.Errorf("after Add: Primary %+v, want unchanged %+v", got, oldPrimary)
			}
			if err := Promote(t.Context(), dir, id); err != nil {
				t.Fatalf("Promote: %v", err)
			}
			if got := statusOf(t, dir, id); got != StatusPrimary {
				t.Errorf("after Promote: status %q, want primary", got)
			}
			if got := statusOf(t, dir, keyID(oldPrimary, p)); got != StatusEnabled {
				t.Errorf("after Promote: old primary status %q, want enabled", got)
			}
			if err := s.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := keyID(s.Primary(), p); got != id {
				t.Errorf("after Promote: Primary %d, want %d", got, id)
			}
			if err := Promote(t.Context(), dir, id); err != nil {
				t.Errorf("Promote of the primary: got %v, want nil", err)
			}
		})
	}
}

func keyID(ids mdtap.KeyIDs, p Purpose) uint32 {
	switch p {
	case PurposeAEAD:
		return ids.AEAD
	case PurposeDAEAD:
		return ids.DAEAD
	}
	return ids.PRF
}

func TestRotate(t *testing.T) {
	ad := []byte("record-1\x00$.account_num")
	pt := []byte(`"1234-5678"`)

	t.Run("aead", func(t *testing.T) {
		dir := newDir(t)
		s := load(t, dir)
		old, _ := s.Encrypt(pt, ad)
		id, err := Rotate(t.Context(), dir, PurposeAEAD)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if s.Primary().AEAD != id {
			t.Errorf("Primary().AEAD: got %d, want %d", s.Primary().AEAD, id)
		}
		ct, err := s.Encrypt(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := mdtap.TinkKeyID(ct); got != id {
			t.Errorf("new ciphertext key id: got %d, want %d", got, id)
		}
		for _, c := range [][]byte{old, ct} {
			if got, err := s.Decrypt(c, ad); err != nil || !bytes.Equal(got, pt) {
				t.Errorf("Decrypt: got %q, %v; want %q", got, err, pt)
			}
		}
	})
	t.Run("daead", func(t *testing.T) {
		dir := newDir(t)
		s := load(t, dir)
		old, _ := s.Tokenize(pt, ad)
		id, err := Rotate(t.Context(), dir, PurposeDAEAD)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		tok, _ := s.Tokenize(pt, ad)
		if got, _ := mdtap.TinkKeyID(tok); got != id {
			t.Errorf("new token key id: got %d, want %d", got, id)
		}
		if bytes.Equal(tok, old) {
			t.Error("token unchanged by rotating daead")
		}
		for _, c := range [][]byte{old, tok} {
			if got, err := s.Detokenize(c, ad); err != nil || !bytes.Equal(got, pt) {
				t.Errorf("Detokenize: got %q, %v; want %q", got, err, pt)
			}
		}
	})
	t.Run("prf", func(t *testing.T) {
		dir := newDir(t)
		s := load(t, dir)
		oldID, oldSum, _ := s.Hash(pt)
		id, err := Rotate(t.Context(), dir, PurposePRF)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		gotID, sum, _ := s.Hash(pt)
		if gotID != id || bytes.Equal(sum, oldSum) {
			t.Errorf("Hash after rotate: key %d (want %d), sum changed %v (want true)", gotID, id, !bytes.Equal(sum, oldSum))
		}
		all, err := s.HashAll(pt)
		if err != nil {
			t.Fatal(err)
		}
		want := []KeyedHash{{id, sum}, {oldID, oldSum}}
		if !slices.EqualFunc(all, want, func(a, b KeyedHash) bool { return a.KeyID == b.KeyID && bytes.Equal(a.Sum, b.Sum) }) {
			t.Errorf("HashAll: got %v, want %v", all, want)
		}
		// A disabled PRF key leaves the blind-index search.
		if err := Disable(t.Context(), dir, oldID); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.HashAll(pt); len(all) != 1 || all[0].KeyID != id {
			t.Errorf("HashAll with the old key disabled: got %v, want only key %d", all, id)
		}
	})
	t.Run("unknown purpose", func(t *testing.T) {
		dir := newDir(t)
		if _, err := Rotate(t.Context(), dir, "mac"); err == nil {
			t.Error("Rotate(mac): got nil error")
		}
	})
}

func TestDisableEnable(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	old := s.Primary()
	ct, _ := s.Encrypt([]byte("v"), nil)
	tok, _ := s.Tokenize([]byte("v"), nil)

	for _, id := range []uint32{old.AEAD, old.DAEAD, old.PRF} {
		if err := Disable(t.Context(), dir, id); !errors.Is(err, ErrPrimaryKey) {
			t.Errorf("Disable(primary %d): got %v, want ErrPrimaryKey", id, err)
		}
	}
	for _, p := range []Purpose{PurposeAEAD, PurposeDAEAD} {
		if _, err := Rotate(t.Context(), dir, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uint32{old.AEAD, old.DAEAD} {
		if err := Disable(t.Context(), dir, id); err != nil {
			t.Fatalf("Disable: %v", err)
		}
		if got := statusOf(t, dir, id); got != StatusDisabled {
			t.Errorf("status after Disable: got %q, want disabled", got)
		}
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(ct, nil); !errors.Is(err, mdtap.ErrKeyUnavailable) {
		t.Errorf("Decrypt under a disabled key: got %v, want ErrKeyUnavailable", err)
	}
	if _, err := s.Detokenize(tok, nil); !errors.Is(err, mdtap.ErrKeyUnavailable) {
		t.Errorf("Detokenize under a disabled key: got %v, want ErrKeyUnavailable", err)
	}
	if err := Promote(t.Context(), dir, old.AEAD); !errors.Is(err, ErrKeyDisabled) {
		t.Errorf("Promote(disabled): got %v, want ErrKeyDisabled", err)
	}

	for _, id := range []uint32{old.AEAD, old.DAEAD} {
		if err := Enable(t.Context(), dir, id); err != nil {
			t.Fatalf("Enable: %v", err)
		}
		if got := statusOf(t, dir, id); got != StatusEnabled {
			t.Errorf("status after Enable: got %q, want enabled", got)
		}
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Decrypt(ct, nil); err != nil || string(got) != "v" {
		t.Errorf("Decrypt after Enable: got %q, %v", got, err)
	}
	if got, err := s.Detokenize(tok, nil); err != nil || string(got) != "v" {
		t.Errorf("Detokenize after Enable: got %q, %v", got, err)
	}
}

func TestDestroy(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	old := s.Primary()
	ctOld, _ := s.Encrypt([]byte("old"), nil)
	tokOld, _ := s.Tokenize([]byte("old"), nil)

	for _, id := range []uint32{old.AEAD, old.DAEAD, old.PRF} {
		if err := Destroy(t.Context(), dir, id); !errors.Is(err, ErrPrimaryKey) {
			t.Errorf("Destroy(primary %d): got %v, want ErrPrimaryKey", id, err)
		}
	}
	for _, p := range Purposes() {
		if _, err := Rotate(t.Context(), dir, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctNew, _ := s.Encrypt([]byte("new"), nil)
	tokNew, _ := s.Tokenize([]byte("new"), nil)

	before := time.Now().Add(-time.Second)
	for _, id := range []uint32{old.AEAD, old.DAEAD, old.PRF} {
		if err := Destroy(t.Context(), dir, id); err != nil {
			t.Fatalf("Destroy(%d): %v", id, err)
		}
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(ctOld, nil); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Decrypt under a destroyed key: got %v, want ErrShredded", err)
	}
	if _, err := s.Detokenize(tokOld, nil); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Detokenize under a destroyed key: got %v, want ErrShredded", err)
	}
	if got, err := s.Decrypt(ctNew, nil); err != nil || string(got) != "new" {
		t.Errorf("Decrypt under the new key: got %q, %v", got, err)
	}
	if got, err := s.Detokenize(tokNew, nil); err != nil || string(got) != "new" {
		t.Errorf("Detokenize under the new key: got %q, %v", got, err)
	}
	if all, _ := s.HashAll([]byte("x")); len(all) != 1 {
		t.Errorf("HashAll after destroying the old PRF key: got %d sums, want 1", len(all))
	}

	// A fresh load (a restart) reports the same.
	if _, err := load(t, dir).Decrypt(ctOld, nil); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Decrypt after restart: got %v, want ErrShredded", err)
	}

	for _, ki := range list(t, dir) {
		if ki.KeyID != old.AEAD && ki.KeyID != old.DAEAD && ki.KeyID != old.PRF {
			continue
		}
		if ki.Status != StatusDestroyed || ki.Destroyed.Before(before) || ki.Created.IsZero() {
			t.Errorf("List after Destroy: %+v, want destroyed with created and destroyed times", ki)
		}
	}

	// The key material is gone from the keyset, not just marked.
	h := decryptForTest(t, dir, PurposeAEAD)
	for e := range entries(h) {
		if e.KeyID() == old.AEAD {
			t.Errorf("aead keyset still holds destroyed key %d", old.AEAD)
		}
	}

	if err := Enable(t.Context(), dir, old.AEAD); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Enable(destroyed): got %v, want ErrKeyDestroyed", err)
	}
	if err := Promote(t.Context(), dir, old.AEAD); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Promote(destroyed): got %v, want ErrKeyDestroyed", err)
	}
	if err := Disable(t.Context(), dir, old.AEAD); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Disable(destroyed): got %v, want ErrKeyDestroyed", err)
	}
	if err := Destroy(t.Context(), dir, old.AEAD); err != nil {
		t.Errorf("Destroy(destroyed): got %v, want nil", err)
	}
	if err := Destroy(t.Context(), dir, 12345); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Destroy(unknown): got %v, want ErrKeyNotFound", err)
	}
}

// A destroy interrupted after writing the tombstone already reads as
// shredded, and running it again completes it.
func TestDestroyInterrupted(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	old := s.Primary().AEAD
	ct, _ := s.Encrypt([]byte("v"), nil)
	if _, err := Rotate(t.Context(), dir, PurposeAEAD); err != nil {
		t.Fatal(err)
	}
	editMeta(t, dir, PurposeAEAD, func(m *meta) { m.Keys[old].Destroyed = now() })
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(ct, nil); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Decrypt with the tombstone written: got %v, want ErrShredded", err)
	}
	if err := Destroy(t.Context(), dir, old); err != nil {
		t.Fatal(err)
	}
	for e := range entries(decryptForTest(t, dir, PurposeAEAD)) {
		if e.KeyID() == old {
			t.Errorf("Destroy again left key %d in the keyset", old)
		}
	}
}

func TestAmbiguousKeyID(t *testing.T) {
	dir := newDir(t)
	aeadID := load(t, dir).Primary().AEAD
	// Tink never gives two keysets the same id through mdtap; fake one with a
	// metadata entry in the daead keyset.
	editMeta(t, dir, PurposeDAEAD, func(m *meta) { m.key(aeadID).Created = now() })
	for name, op := range map[string]func(context.Context, string, uint32) error{
		"Promote": Promote, "Disable": Disable, "Enable": Enable, "Destroy": Destroy,
	} {
		err := op(t.Context(), dir, aeadID)
		if !errors.Is(err, ErrAmbiguousKeyID) || !strings.Contains(err.Error(), "aead, daead") {
			t.Errorf("%s: got %v, want ErrAmbiguousKeyID naming aead, daead", name, err)
		}
	}
}

func TestTokenizeDeterministic(t *testing.T) {
	s := load(t, newDir(t))
	pt := []byte(`"900101-1234567"`)
	a1, _ := s.Tokenize(pt, []byte("$.a"))
	a2, _ := s.Tokenize(pt, []byte("$.a"))
	b, _ := s.Tokenize(pt, []byte("$.b"))
	other, _ := s.Tokenize([]byte(`"900101-1234568"`), []byte("$.a"))
	if !bytes.Equal(a1, a2) {
		t.Error("Tokenize: same plaintext and associated data gave different tokens")
	}
	if bytes.Equal(a1, b) {
		t.Error("Tokenize: different associated data gave the same token")
	}
	if bytes.Equal(a1, other) {
		t.Error("Tokenize: different plaintexts gave the same token")
	}
	if _, err := s.Detokenize(a1, []byte("$.b")); err == nil {
		t.Error("Detokenize with the wrong associated data: got nil error")
	}
}

func TestHashStableAcrossLoads(t *testing.T) {
	dir := newDir(t)
	id1, sum1, err := load(t, dir).Hash([]byte("subject-42"))
	if err != nil {
		t.Fatal(err)
	}
	// A restart: a new Set that reads from disk, with the PRF keyset only.
	id2, sum2, err := load(t, dir, PurposePRF).Hash([]byte("subject-42"))
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || !bytes.Equal(sum1, sum2) {
		t.Errorf("Hash across loads: got %d:%x then %d:%x, want equal", id1, sum1, id2, sum2)
	}
	if len(sum1) != mdtap.HashBytes {
		t.Errorf("Hash length: got %d, want %d", len(sum1), mdtap.HashBytes)
	}
	_, other, _ := load(t, dir).Hash([]byte("subject-43"))
	if bytes.Equal(sum1, other) {
		t.Error("Hash: different inputs gave the same sum")
	}
}

func TestDecryptErrors(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	ct, _ := s.Encrypt([]byte("secret-plaintext"), []byte("record-1"))
	tampered := slices.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	unknown := slices.Clone(ct)
	unknown[1] ^= 0xff

	cases := []struct {
		name       string
		ct, ad     []byte
		wantIs     error // nil: an error that is neither sentinel
		wantSubstr string
	}{
		{"wrong associated data", ct, []byte("record-2"), nil, "decrypt"},
		{"tampered", tampered, []byte("record-1"), nil, "decrypt"},
		{"no prefix", []byte{0x00, 1, 2}, nil, nil, "no Tink key prefix"},
		{"unknown key", unknown, []byte("record-1"), mdtap.ErrKeyUnavailable, "not in keyset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Decrypt(c.ct, c.ad)
			if err == nil {
				t.Fatal("Decrypt: got nil error")
			}
			if c.wantIs == nil && (errors.Is(err, mdtap.ErrShredded) || errors.Is(err, mdtap.ErrKeyUnavailable)) {
				t.Errorf("Decrypt: got %v, want a plain failure", err)
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Errorf("Decrypt: got %v, want %v", err, c.wantIs)
			}
			if !strings.Contains(err.Error(), c.wantSubstr) || strings.Contains(err.Error(), "secret-plaintext") {
				t.Errorf("Decrypt error %q: want it to contain %q and no plaintext", err, c.wantSubstr)
			}
		})
	}
}

func TestLoadPurposes(t *testing.T) {
	dir := newDir(t)
	// A blind-index reader needs only the PRF files.
	for _, p := range []Purpose{PurposeAEAD, PurposeDAEAD} {
		os.Remove(keysetPath(dir, p))
		os.Remove(metaPath(dir, p))
	}
	s := load(t, dir, PurposePRF)
	if _, _, err := s.Hash([]byte("x")); err != nil {
		t.Errorf("Hash: %v", err)
	}
	if got := s.Primary(); got.AEAD != 0 || got.DAEAD != 0 || got.PRF == 0 {
		t.Errorf("Primary: got %+v, want only PRF", got)
	}
	for name, err := range map[string]error{
		"Encrypt":    second(s.Encrypt([]byte("x"), nil)),
		"Decrypt":    second(s.Decrypt([]byte{1, 0, 0, 0, 1, 2}, nil)),
		"Tokenize":   second(s.Tokenize([]byte("x"), nil)),
		"Detokenize": second(s.Detokenize([]byte{1, 0, 0, 0, 1, 2}, nil)),
	} {
		if !errors.Is(err, mdtap.ErrKeyUnavailable) {
			t.Errorf("%s without its keyset: got %v, want ErrKeyUnavailable", name, err)
		}
	}
	if _, err := Load(t.Context(), dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(all) with aead missing: got %v, want fs.ErrNotExist", err)
	}
	if _, err := Load(t.Context(), dir, "mac"); err == nil {
		t.Error("Load(mac): got nil error")
	}
	if _, err := Load(t.Context(), filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing dir): got %v, want fs.ErrNotExist", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestSwappedKeysetFails(t *testing.T) {
	dir := newDir(t)
	b, err := os.ReadFile(keysetPath(dir, PurposePRF))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysetPath(dir, PurposeAEAD), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(t.Context(), dir, PurposeAEAD)
	if err == nil || !strings.Contains(err.Error(), "aead.keyset.json") {
		t.Errorf("Load with prf's keyset as aead's: got %v, want an error naming aead.keyset.json", err)
	}
	if _, err := List(t.Context(), dir); err == nil {
		t.Error("List with a swapped keyset: got nil error")
	}

	// A metadata file of another purpose is refused too.
	dir = newDir(t)
	b, _ = os.ReadFile(metaPath(dir, PurposeDAEAD))
	os.WriteFile(metaPath(dir, PurposeAEAD), b, 0o600)
	if _, err := Load(t.Context(), dir, PurposeAEAD); err == nil || !strings.Contains(err.Error(), `purpose "daead"`) {
		t.Errorf("Load with daead's metadata as aead's: got %v", err)
	}
}

// Reload picks up a rotation another process made.
func TestReloadSeesRotation(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	before := s.Primary()
	ct, _ := s.Encrypt([]byte("v"), nil)
	id, err := Rotate(t.Context(), dir, PurposeAEAD)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Primary(); got != before {
		t.Errorf("Primary before Reload: got %+v, want %+v", got, before)
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.Primary(); got.AEAD != id || got.DAEAD != before.DAEAD || got.PRF != before.PRF {
		t.Errorf("Primary after Reload: got %+v, want aead %d, others unchanged", got, id)
	}
	if _, err := s.Decrypt(ct, nil); err != nil {
		t.Errorf("Decrypt of a value from before: %v", err)
	}

	// A failed reload keeps the loaded keys.
	os.WriteFile(keysetPath(dir, PurposeAEAD), []byte("{}"), 0o600)
	if err := s.Reload(t.Context()); err == nil {
		t.Error("Reload of a broken keyset: got nil error")
	}
	if got := s.Primary(); got.AEAD != id {
		t.Errorf("Primary after a failed Reload: got %d, want %d", got.AEAD, id)
	}
	if _, err := s.Decrypt(ct, nil); err != nil {
		t.Errorf("Decrypt after a failed Reload: %v", err)
	}
}

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	before := s.Primary()
	ct, _ := s.Encrypt([]byte("v"), nil)
	var logs syncBuffer
	log := zerolog.New(zerolog.MultiLevelWriter(&logs, zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 5*time.Millisecond, log)
	}()
	defer func() { cancel(); <-done }()

	id, err := Rotate(t.Context(), dir, PurposeAEAD)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Watch to load the rotated aead key", func() bool { return s.Primary().AEAD == id })

	// A disable changes no primary, only what decrypts.
	if err := Disable(t.Context(), dir, before.AEAD); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Watch to load the disabled key", func() bool {
		_, err := s.Decrypt(ct, nil)
		return errors.Is(err, mdtap.ErrKeyUnavailable)
	})

	// A broken file is reported and the loaded keys stay.
	pieces := keyPieces(t, dir)
	os.WriteFile(keysetPath(dir, PurposeDAEAD), []byte("garbage"), 0o600)
	waitFor(t, "a reload failure in the log", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if _, err := s.Tokenize([]byte("x"), nil); err != nil {
		t.Errorf("Tokenize while the daead file is broken: %v", err)
	}
	if !strings.Contains(logs.String(), `"message":"keys: reloaded"`) {
		t.Errorf("no reload logged:\n%s", logs.String())
	}
	assertNoPieces(t, "Watch log", logs.String(), pieces)
}

// A Kubernetes Secret volume changes by swapping a symlink to a new
// directory; Watch sees through it.
func TestWatchSymlinkSwap(t *testing.T) {
	root := t.TempDir()
	gen1 := filepath.Join(root, "..gen1")
	if err := Init(t.Context(), gen1, ""); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "keys")
	if err := os.Symlink(gen1, link); err != nil {
		t.Fatal(err)
	}
	s := load(t, link)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx, 5*time.Millisecond, zerolog.New(zerolog.NewTestWriter(t))) }()
	defer func() { cancel(); <-done }()

	gen2 := filepath.Join(root, "..gen2")
	copyDir(t, gen1, gen2)
	id, err := Rotate(t.Context(), gen2, PurposeAEAD)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "keys.tmp")
	if err := os.Symlink(gen2, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Watch to follow the symlink swap", func() bool { return s.Primary().AEAD == id })
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Every Encrypt and Decrypt succeeds while other goroutines rotate and
// reload: calls in flight finish on the state they started with.
func TestConcurrentUseDuringReload(t *testing.T) {
	dir := newDir(t)
	s := load(t, dir)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ct, err := s.Encrypt([]byte("value"), []byte("ad"))
				if err == nil {
					_, err = s.Decrypt(ct, []byte("ad"))
				}
				if err == nil {
					_, _, err = s.Hash([]byte("value"))
				}
				if err == nil {
					_, err = s.Tokenize([]byte("value"), nil)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 10 {
		if _, err := Rotate(t.Context(), dir, PurposeAEAD); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent use: %v", err)
	}
}

// Concurrent management commands do not lose each other's keys.
func TestConcurrentManagement(t *testing.T) {
	dir := newDir(t)
	var wg sync.WaitGroup
	ids := make(chan uint32, 12)
	for i := range 12 {
		p := Purposes()[i%3]
		wg.Go(func() {
			id, err := Add(t.Context(), dir, p)
			if err != nil {
				t.Errorf("Add(%s): %v", p, err)
				return
			}
			ids <- id
		})
	}
	wg.Wait()
	close(ids)
	listed := map[uint32]bool{}
	for _, ki := range list(t, dir) {
		listed[ki.KeyID] = true
	}
	if len(listed) != 15 {
		t.Errorf("List after 12 concurrent Adds: got %d keys, want 15", len(listed))
	}
	for id := range ids {
		if !listed[id] {
			t.Errorf("key %d added but not listed", id)
		}
	}
}

func TestListOrder(t *testing.T) {
	dir := newDir(t)
	first := load(t, dir).Primary()
	a2, _ := Add(t.Context(), dir, PurposeAEAD)
	p2, _ := Rotate(t.Context(), dir, PurposePRF)
	if err := Disable(t.Context(), dir, first.PRF); err != nil {
		t.Fatal(err)
	}
	type row struct {
		p      Purpose
		id     uint32
		status string
	}
	want := []row{
		{PurposeAEAD, first.AEAD, StatusPrimary},
		{PurposeAEAD, a2, StatusEnabled},
		{PurposeDAEAD, first.DAEAD, StatusPrimary},
		{PurposePRF, first.PRF, StatusDisabled},
		{PurposePRF, p2, StatusPrimary},
	}
	var got []row
	for _, ki := range list(t, dir) {
		got = append(got, row{ki.Purpose, ki.KeyID, ki.Status})
		if ki.KeyID == first.PRF && ki.Disabled.IsZero() {
			t.Errorf("List: disabled key %d has no disabled time", ki.KeyID)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("List: got %v, want %v", got, want)
	}
}

// No error or log line carries the KEK or a keyset's key material.
func TestNoKeyMaterialInErrors(t *testing.T) {
	dir := newDir(t)
	kek, err := os.ReadFile(filepath.Join(dir, "kek.json"))
	if err != nil {
		t.Fatal(err)
	}
	pieces := keyPieces(t, dir)
	var msgs []string
	add := func(err error) {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	// A KEK file damaged in several ways.
	for _, damaged := range [][]byte{kek[:len(kek)/2], bytes.Replace(kek, []byte(`"value"`), []byte(`"valeu"`), 1), append([]byte("x"), kek...)} {
		os.WriteFile(filepath.Join(dir, "kek.json"), damaged, 0o600)
		add(second(Load(t.Context(), dir)))
		add(second(List(t.Context(), dir)))
		add(Promote(t.Context(), dir, 1))
	}
	os.WriteFile(filepath.Join(dir, "kek.json"), kek, 0o600)
	b, _ := os.ReadFile(keysetPath(dir, PurposePRF))
	os.WriteFile(keysetPath(dir, PurposeAEAD), b, 0o600)
	add(second(Load(t.Context(), dir)))
	if len(msgs) < 7 {
		t.Fatalf("got %d errors, want at least 7: %q", len(msgs), msgs)
	}
	for _, m := range msgs {
		assertNoPieces(t, "error", m, pieces)
	}
}

// kekPieces are the KEK file's key value in the encodings an error might
// show it in.
func kekPieces(t *testing.T, kek []byte) []string {
	t.Helper()
	var ks struct {
		Key []struct {
			KeyData struct{ Value string } `json:"keyData"`
		} `json:"key"`
	}
	if err := json.Unmarshal(kek, &ks); err != nil || len(ks.Key) == 0 {
		t.Fatalf("parse kek.json: %v", err)
	}
	v := ks.Key[0].KeyData.Value
	raw, _ := base64.StdEncoding.DecodeString(v)
	return []string{v, v[:16], hex.EncodeToString(raw), string(raw[len(raw)-16:])}
}

// keyPieces is every key of dir's keysets, and of its local KEK if it has
// one, in the encodings a message might show it in.
func keyPieces(t *testing.T, dir string) []string {
	t.Helper()
	var pieces []string
	if kekB, err := os.ReadFile(filepath.Join(dir, "kek.json")); err == nil {
		pieces = append(pieces, kekPieces(t, kekB)...)
	}
	for _, p := range Purposes() {
		for _, k := range insecurecleartextkeyset.KeysetMaterial(decryptForTest(t, dir, p)).GetKey() {
			v := k.GetKeyData().GetValue()
			for _, enc := range []string{base64.StdEncoding.EncodeToString(v), base64.RawURLEncoding.EncodeToString(v), hex.EncodeToString(v)} {
				pieces = append(pieces, enc[:24])
			}
		}
	}
	return pieces
}

func assertNoPieces(t *testing.T, what, text string, pieces []string) {
	t.Helper()
	for _, piece := range pieces {
		if strings.Contains(text, piece) {
			t.Errorf("%s contains key material: %q", what, text)
			return
		}
	}
}

func decryptKeysetForTest(t *testing.T, dir string, p Purpose, b []byte) (*keyset.Handle, error) {
	t.Helper()
	m, err := os.ReadFile(metaPath(dir, p))
	if err != nil {
		return nil, err
	}
	md, err := decodeMeta(p, metaPath(dir, p), m)
	if err != nil {
		return nil, err
	}
	kek, err := openKEK(t.Context(), dir, md.KEKURI, false)
	if err != nil {
		return nil, err
	}
	return decryptKeyset(t.Context(), dir, p, b, kek, md.KEKURI)
}

func decryptForTest(t *testing.T, dir string, p Purpose) *keyset.Handle {
	t.Helper()
	b, err := os.ReadFile(keysetPath(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	h, err := decryptKeysetForTest(t, dir, p, b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func editMeta(t *testing.T, dir string, p Purpose, edit func(*meta)) {
	t.Helper()
	b, err := os.ReadFile(metaPath(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMeta(p, metaPath(dir, p), b)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(metaPath(dir, p), b); err != nil {
		t.Fatal(err)
	}
}
