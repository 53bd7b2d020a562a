package redact

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"

	"github.com/mdtap/mdtap"
)

// fakeKeys stands in for the keys package inside this package's unit tests:
// real AES-GCM, AES-based deterministic sealing and HMAC from the standard
// library, with Tink's output prefix, so records parse and reveal as they
// would with Tink. The integration tests use the real keys package.
type fakeKeys struct{ key [32]byte }

const fakeKeyID = 0x01020304

func prefix() []byte { return []byte{1, 1, 2, 3, 4} }

func (f *fakeKeys) gcm() cipher.AEAD {
	b, _ := aes.NewCipher(f.key[:])
	g, _ := cipher.NewGCM(b)
	return g
}

func (f *fakeKeys) Encrypt(pt, ad []byte) ([]byte, error) {
	nonce := make([]byte, 12)
	copy(nonce, sha256.New().Sum(append(append([]byte{}, pt...), byte(len(ad)))))
	return f.gcm().Seal(append(prefix(), nonce...), nonce, pt, ad), nil
}

func (f *fakeKeys) Decrypt(ct, ad []byte) ([]byte, error) {
	if len(ct) < 5+12 || !bytes.Equal(ct[:5], prefix()) {
		return nil, errors.New("bad prefix")
	}
	return f.gcm().Open(nil, ct[5:17], ct[17:], ad)
}

// Deterministic: the nonce is a MAC of plaintext and associated data.
func (f *fakeKeys) Tokenize(pt, ad []byte) ([]byte, error) {
	m := hmac.New(sha256.New, f.key[:])
	m.Write(ad)
	m.Write([]byte{0})
	m.Write(pt)
	nonce := m.Sum(nil)[:12]
	return f.gcm().Seal(append(prefix(), nonce...), nonce, pt, ad), nil
}

func (f *fakeKeys) Detokenize(ct, ad []byte) ([]byte, error) { return f.Decrypt(ct, ad) }

func (f *fakeKeys) Hash(in []byte) (uint32, []byte, error) {
	m := hmac.New(sha256.New, f.key[:])
	m.Write(in)
	return fakeKeyID, m.Sum(nil)[:mdtap.HashBytes], nil
}

func (f *fakeKeys) Primary() mdtap.KeyIDs {
	return mdtap.KeyIDs{AEAD: fakeKeyID, DAEAD: fakeKeyID, PRF: fakeKeyID}
}
