package keys

import (
	"path/filepath"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// go test -run '^$' -bench . -benchmem ./keys/
func benchSet(b *testing.B) *Set {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "keys")
	if err := Init(b.Context(), dir, ""); err != nil {
		b.Fatal(err)
	}
	s, err := Load(b.Context(), dir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

var benchAD = []byte("mdtap:v1\x0001J0000000000000000000000000\x00$.account_list[*].account_num")

func BenchmarkEncrypt(b *testing.B) {
	s := benchSet(b)
	for _, size := range []struct {
		name string
		n    int
	}{{"32B", 32}, {"2KiB", 2 << 10}} {
		pt := make([]byte, size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Encrypt(pt, benchAD); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt32B(b *testing.B) {
	s := benchSet(b)
	ct, _ := s.Encrypt(make([]byte, 32), benchAD)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Decrypt(ct, benchAD); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenize32B(b *testing.B) {
	s := benchSet(b)
	pt := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Tokenize(pt, benchAD); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash32B(b *testing.B) {
	s := benchSet(b)
	pt := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Hash(pt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncryptParallel is the capture path's shape: many goroutines on
// one Set.
func BenchmarkEncryptParallel32B(b *testing.B) {
	s := benchSet(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		pt := make([]byte, 32)
		for pb.Next() {
			if _, err := s.Encrypt(pt, benchAD); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTinkAEAD2KiB is the bare Tink primitive, for comparison with
// BenchmarkEncrypt/2KiB: the difference is what Set adds (one atomic load).
func BenchmarkTinkAEAD2KiB(b *testing.B) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		b.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 2<<10)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Encrypt(pt, benchAD); err != nil {
			b.Fatal(err)
		}
	}
}
