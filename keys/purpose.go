package keys

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/prf"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
)

// Purpose names one of the three keysets.
type Purpose string

const (
	// PurposeAEAD is the AES256_GCM keyset of the encrypt action.
	PurposeAEAD Purpose = "aead"
	// PurposeDAEAD is the AES256_SIV keyset of the tokenize action.
	PurposeDAEAD Purpose = "daead"
	// PurposePRF is the HMAC_SHA256_PRF keyset of the hash action and of blind
	// indexes.
	PurposePRF Purpose = "prf"
)

// Purposes lists every purpose in the order mdtap handles them.
func Purposes() []Purpose { return []Purpose{PurposeAEAD, PurposeDAEAD, PurposePRF} }

// ParsePurpose parses a purpose name.
func ParsePurpose(s string) (Purpose, error) {
	switch p := Purpose(s); p {
	case PurposeAEAD, PurposeDAEAD, PurposePRF:
		return p, nil
	}
	return "", fmt.Errorf("unknown key purpose %q: want aead, daead or prf", s)
}

func (p Purpose) valid() bool {
	_, err := ParsePurpose(string(p))
	return err == nil
}

// template is the Tink key template of a purpose's keys. AEAD and DAEAD use
// the TINK output prefix, so a ciphertext names its key; Tink's PRF keys only
// exist with the RAW prefix.
func (p Purpose) template() *tinkpb.KeyTemplate {
	switch p {
	case PurposeAEAD:
		return aead.AES256GCMKeyTemplate()
	case PurposeDAEAD:
		return daead.AESSIVKeyTemplate()
	case PurposePRF:
		return prf.HMACSHA256PRFKeyTemplate()
	}
	panic("keys: unknown purpose " + string(p))
}

// associatedData binds an encrypted keyset to its purpose: decrypting
// aead.keyset.json as the prf keyset fails.
func (p Purpose) associatedData() []byte { return []byte("mdtap:keyset:v1:" + string(p)) }

// keysetFile is the encrypted keyset's file name in DIR.
func (p Purpose) keysetFile() string { return string(p) + ".keyset.json" }

// metaFile is the metadata file's name in DIR.
func (p Purpose) metaFile() string { return string(p) + ".meta.json" }

func keysetPath(dir string, p Purpose) string { return filepath.Join(dir, p.keysetFile()) }
func metaPath(dir string, p Purpose) string   { return filepath.Join(dir, p.metaFile()) }

// Key statuses, as List reports them.
const (
	StatusPrimary   = "primary"   // encrypts, tokenizes or hashes new values
	StatusEnabled   = "enabled"   // decrypts, detokenizes; its PRF is in HashAll
	StatusDisabled  = "disabled"  // kept, but used for nothing until enabled again
	StatusDestroyed = "destroyed" // key material removed for good: values under it are shredded
)

func purposeList(ps []Purpose) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
