package mdtap

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A protected value replaces a payload value in place, as one JSON string, so
// the record keeps its shape. Every form starts with "mdtap:", names its form
// and a version, and carries what an authorised reader needs:
//
//	mdtap:drop:v1                     drop:  nothing of the value survives
//	mdtap:mask:v1:<text>              mask:  an irreversible partial view
//	mdtap:enc:v1:<b64url>             encrypt: Tink AEAD ciphertext of the value's JSON text
//	mdtap:blob:v1:<b64url>            encrypt: Tink AEAD ciphertext of an opaque body's bytes
//	mdtap:tok:v1:<b64url>             tokenize: Tink deterministic AEAD of the value's JSON text
//	mdtap:hash:v1:<key id>:<b64url>   hash:  Tink PRF output (16 bytes) under that key
//	mdtap:shred:v1:<form>:<key id>    how an enc, blob or tok value reads once its key is destroyed
//	mdtap:lit:v1:<text>               a kept clear string that itself began with "mdtap:"
//
// <b64url> is unpadded base64url, which is safe in a URL path segment and a
// NATS header. The Tink ciphertexts carry their key id in Tink's 5-byte
// prefix. Encrypting the JSON text (not the bare string) lets a reader restore
// numbers, booleans, objects and arrays with their type. See docs/record.md.
const ProtectedPrefix = "mdtap:"

// Form names a protected-value form.
type Form string

const (
	FormDrop  Form = "drop"
	FormMask  Form = "mask"
	FormEnc   Form = "enc"
	FormBlob  Form = "blob"
	FormTok   Form = "tok"
	FormHash  Form = "hash"
	FormShred Form = "shred"
	FormLit   Form = "lit"
)

// Dropped is the marker a dropped value leaves.
const Dropped = "mdtap:drop:v1"

// HashBytes is the length of a hash form's PRF output: 128 bits keeps blind
// indexes collision-free at archive scale while staying short.
const HashBytes = 16

// ErrNotProtected is returned by ParseProtected for a string that does not
// start with ProtectedPrefix.
var ErrNotProtected = errors.New("not a protected value")

// Protected is a parsed protected value.
type Protected struct {
	Form Form
	// Data is the text after the version: the mask text, the literal text, or
	// the base64url payload (ciphertext or PRF output).
	Data string
	// KeyID is the Tink key id: parsed from the ciphertext prefix of enc, blob
	// and tok; written out for hash and shred; zero for the others.
	KeyID uint32
	// Shredded is the form whose key was destroyed, for FormShred.
	Shredded Form
}

var b64 = base64.RawURLEncoding

// EncValue returns the protected form of an AEAD ciphertext of a JSON value.
func EncValue(ciphertext []byte) string { return "mdtap:enc:v1:" + b64.EncodeToString(ciphertext) }

// BlobValue returns the protected form of an AEAD ciphertext of opaque bytes.
func BlobValue(ciphertext []byte) string { return "mdtap:blob:v1:" + b64.EncodeToString(ciphertext) }

// TokValue returns the protected form of a deterministic AEAD ciphertext.
func TokValue(ciphertext []byte) string { return "mdtap:tok:v1:" + b64.EncodeToString(ciphertext) }

// HashValue returns the protected form of a PRF output computed under keyID.
func HashValue(keyID uint32, sum []byte) string {
	return "mdtap:hash:v1:" + strconv.FormatUint(uint64(keyID), 10) + ":" + b64.EncodeToString(sum)
}

// MaskValue returns the protected form of a masked view.
func MaskValue(masked string) string { return "mdtap:mask:v1:" + masked }

// ShredValue is how a reader renders an enc, blob or tok value whose key was
// destroyed: the value is gone for good, and the record stays readable.
func ShredValue(form Form, keyID uint32) string {
	return "mdtap:shred:v1:" + string(form) + ":" + strconv.FormatUint(uint64(keyID), 10)
}

// KeepString returns s as it may stand in a protected record under the keep
// action: unchanged, unless it begins with ProtectedPrefix, in which case it
// is escaped as a literal so no clear value can pass for a protected one.
func KeepString(s string) string {
	if strings.HasPrefix(s, ProtectedPrefix) {
		return "mdtap:lit:v1:" + s
	}
	return s
}

// IsProtected reports whether s has the protected-value prefix.
func IsProtected(s string) bool { return strings.HasPrefix(s, ProtectedPrefix) }

// ParseProtected parses a protected value. It returns ErrNotProtected for a
// clear string; any other error means a malformed protected value. Errors
// never quote the value.
func ParseProtected(s string) (Protected, error) {
	rest, ok := strings.CutPrefix(s, ProtectedPrefix)
	if !ok {
		return Protected{}, ErrNotProtected
	}
	if rest == "drop:v1" {
		return Protected{Form: FormDrop}, nil
	}
	form, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return Protected{}, errors.New("protected value: missing version")
	}
	version, data, ok := strings.Cut(rest, ":")
	if !ok || version != "v1" {
		return Protected{}, fmt.Errorf("protected value: form %.8q: unsupported version", form)
	}
	p := Protected{Form: Form(form), Data: data}
	switch p.Form {
	case FormMask, FormLit:
		return p, nil
	case FormEnc, FormBlob, FormTok:
		raw, err := b64.DecodeString(data)
		if err != nil {
			return Protected{}, fmt.Errorf("protected value: %s: bad base64url", form)
		}
		id, ok := TinkKeyID(raw)
		if !ok {
			return Protected{}, fmt.Errorf("protected value: %s: no Tink key prefix", form)
		}
		p.KeyID = id
		return p, nil
	case FormHash:
		idText, sum, ok := strings.Cut(data, ":")
		id, err := strconv.ParseUint(idText, 10, 32)
		if !ok || err != nil {
			return Protected{}, errors.New("protected value: hash: bad key id")
		}
		if _, err := b64.DecodeString(sum); err != nil {
			return Protected{}, errors.New("protected value: hash: bad base64url")
		}
		p.KeyID, p.Data = uint32(id), sum
		return p, nil
	case FormShred:
		shredded, idText, ok := strings.Cut(data, ":")
		id, err := strconv.ParseUint(idText, 10, 32)
		if !ok || err != nil {
			return Protected{}, errors.New("protected value: shred: bad key id")
		}
		switch Form(shredded) {
		case FormEnc, FormBlob, FormTok:
		default:
			return Protected{}, errors.New("protected value: shred: unknown form")
		}
		p.Shredded, p.KeyID, p.Data = Form(shredded), uint32(id), ""
		return p, nil
	}
	return Protected{}, fmt.Errorf("protected value: unknown form %.8q", form)
}

// Bytes decodes the base64url payload of an enc, blob, tok or hash value.
func (p Protected) Bytes() ([]byte, error) {
	switch p.Form {
	case FormEnc, FormBlob, FormTok, FormHash:
		b, err := b64.DecodeString(p.Data)
		if err != nil {
			return nil, fmt.Errorf("protected value: %s: bad base64url", p.Form)
		}
		return b, nil
	}
	return nil, fmt.Errorf("protected value: %s carries no bytes", p.Form)
}

// Reversible reports whether an authorised reader can restore the value.
func (p Protected) Reversible() bool {
	return p.Form == FormEnc || p.Form == FormBlob || p.Form == FormTok || p.Form == FormLit
}

// tinkStartByte marks Tink's TINK output prefix: one byte, then the key id as
// four big-endian bytes. mdtap's keysets use only this prefix type.
const tinkStartByte = 0x01

// TinkKeyID reads the key id from a Tink ciphertext with the TINK output prefix.
func TinkKeyID(ciphertext []byte) (uint32, bool) {
	if len(ciphertext) < 5 || ciphertext[0] != tinkStartByte {
		return 0, false
	}
	return binary.BigEndian.Uint32(ciphertext[1:5]), true
}

// AssociatedData is the AEAD associated data of an encrypt value: it binds the
// ciphertext to its record and to its path in that record, so a ciphertext
// moved to another record or field fails to decrypt.
func AssociatedData(recordID, path string) []byte {
	b := make([]byte, 0, len("mdtap:v1")+len(recordID)+len(path)+2)
	b = append(b, "mdtap:v1"...)
	b = append(b, 0)
	b = append(b, recordID...)
	b = append(b, 0)
	return append(b, path...)
}
