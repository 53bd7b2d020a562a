package keys

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
)

// Decrypt and Detokenize take values read back from archives: whatever the
// bytes, they return an error or the plaintext, never panic, and only a
// destroyed key's id reads as shredded.
func FuzzDecrypt(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "keys")
	if err := Init(f.Context(), dir, ""); err != nil {
		f.Fatal(err)
	}
	s, err := Load(f.Context(), dir)
	if err != nil {
		f.Fatal(err)
	}
	ct, _ := s.Encrypt([]byte("v"), []byte("ad"))
	tok, _ := s.Tokenize([]byte("v"), []byte("ad"))
	f.Add(ct, []byte("ad"))
	f.Add(tok, []byte("ad"))
	f.Add([]byte{1, 0, 0, 0, 0}, []byte(nil))
	f.Add([]byte{}, []byte(nil))
	f.Fuzz(func(t *testing.T, ciphertext, ad []byte) {
		for name, decrypt := range map[string]func([]byte, []byte) ([]byte, error){"Decrypt": s.Decrypt, "Detokenize": s.Detokenize} {
			_, err := decrypt(ciphertext, ad)
			if errors.Is(err, mdtap.ErrShredded) {
				t.Errorf("%s(%x): shredded, but no key was destroyed", name, ciphertext)
			}
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"version":1,"purpose":"aead","kek_uri":"local://kek.json","keys":{"1":{"created":"2026-01-01T00:00:00Z"}}}`))
	f.Add([]byte(`{"version":1,"purpose":"aead","kek_uri":"x","keys":{"4294967296":{}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(PurposeAEAD, "aead.meta.json", b)
		if err != nil {
			return
		}
		if m.Purpose != PurposeAEAD || m.KEKURI == "" || m.Keys == nil {
			t.Errorf("decodeMeta accepted %q as %+v", b, m)
		}
		if _, err := encodeMeta(m); err != nil {
			t.Errorf("encodeMeta of a decoded file: %v", err)
		}
	})
}

func FuzzCheckKEKURI(f *testing.F) {
	for _, s := range []string{"local://kek.json", "local:///abs", "aws-kms://arn:aws:kms:r:1:key/x", "hcvault://x", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		err := checkKEKURI(uri)
		supported := (strings.HasPrefix(uri, SchemeLocal) && len(uri) > len(SchemeLocal)) ||
			strings.HasPrefix(uri, SchemeAWSKMS+"arn:aws")
		if err == nil && !supported {
			t.Errorf("checkKEKURI(%q) accepted an unsupported URI", uri)
		}
	})
}

// A store key maps back to its blind index and holds only what NATS
// key-value keys allow.
func FuzzSubjectStoreKey(f *testing.F) {
	f.Add("mdtap:hash:v1:3529799738:AAECAwQFBgcICQoLDA0ODw")
	f.Add("mdtap:hash:v1:007:AAECAwQFBgcICQoLDA0ODw")
	f.Add("mdtap:hash:v1:1:a.b")
	f.Add("mdtap:enc:v1:AAAA")
	f.Fuzz(func(t *testing.T, bi string) {
		key, err := SubjectStoreKey(bi)
		if err != nil {
			return
		}
		if back, ok := blindIndexOf(key); !ok || back != bi {
			t.Errorf("blindIndexOf(SubjectStoreKey(%q)) = %q, %v", bi, back, ok)
		}
		for _, c := range key {
			if !strings.ContainsRune("-/_=.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", c) {
				t.Errorf("SubjectStoreKey(%q) = %q: %q is not allowed in a NATS key", bi, key, c)
			}
		}
		if strings.Contains(key, "..") || strings.HasSuffix(key, ".") {
			t.Errorf("SubjectStoreKey(%q) = %q: an empty token", bi, key)
		}
	})
}

// FuzzSubjectValue: a subject's stored keysets come back from a NATS bucket
// that others can write to. Whatever the bytes, reading them gives an error
// or the subject's own keys: the wrapping AEAD lets no other keyset in.
func FuzzSubjectValue(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "keys")
	if err := Init(f.Context(), dir, ""); err != nil {
		f.Fatal(err)
	}
	main, err := Load(f.Context(), dir)
	if err != nil {
		f.Fatal(err)
	}
	const bi = "mdtap:hash:v1:3558683212:Wh0JAnuTTS0Og4Ins3IOKg"
	a, d, err := newSubjectHandles(main)
	if err != nil {
		f.Fatal(err)
	}
	genuine, err := wrapSubject(main, bi, a, d)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add([]byte(`{"v":1,"aead":"","daead":""}`))
	want := [2]uint32{a.KeysetInfo().GetPrimaryKeyId(), d.KeysetInfo().GetPrimaryKeyId()}
	f.Fuzz(func(t *testing.T, data []byte) {
		if ids, err := wrappedBy(data); err == nil && len(ids) != 2 {
			t.Fatalf("wrappedBy: %d ids", len(ids))
		}
		a2, d2, err := unwrapSubject(main, bi, data)
		if bytes.Equal(data, genuine) && err != nil {
			t.Fatalf("unwrapSubject(genuine): %v", err)
		}
		if err != nil {
			return
		}
		if got := [2]uint32{a2.KeysetInfo().GetPrimaryKeyId(), d2.KeysetInfo().GetPrimaryKeyId()}; got != want {
			t.Fatalf("unwrapped keysets with primaries %v, want the subject's %v", got, want)
		}
		if _, err := wrappedBy(data); err != nil {
			t.Fatalf("unwrapSubject accepted a value wrappedBy refuses: %v", err)
		}
	})
}
