package redact

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

var b64 = base64.RawURLEncoding

// stringValue protects one string that is not part of a JSON body (a query
// or form value, a header, a path parameter) under rule c (nil: default).
// It returns the string to record.
func (s *session) stringValue(c *compiled, path string, field []byte, v string) (string, error) {
	if c == nil {
		s.noteDefault(path, field)
		c = defaultRule
	}
	if !utf8.ValidString(v) {
		// A JSON string cannot hold these bytes faithfully: encrypt them as
		// they are, whatever the rule (a keep would corrupt, a drop or hash
		// still applies).
		switch c.action {
		case ActionDrop, ActionHash, ActionMask:
		default:
			s.ad = appendAssociatedData(s.ad[:0], s.rec.ID, []byte(path))
			ct, err := s.seal.Encrypt([]byte(v), s.ad)
			if err != nil {
				return "", fmt.Errorf("encrypt %s: %w", path, err)
			}
			return mdtap.BlobValue(ct), nil
		}
	}
	quoted, _ := jsontext.AppendQuote(s.buf[:0], v)
	s.buf = quoted
	out, err := s.apply(c, nil, []byte(path), field, quoted, []byte(v), true)
	if err != nil {
		return "", err
	}
	u, err := jsontext.AppendUnquote(nil, out)
	if err != nil {
		return "", fmt.Errorf("protect %s: result is not a string", path)
	}
	return string(u), nil
}

// defaultRule is what happens to a value no rule names.
var defaultRule = &compiled{action: ActionEncrypt, source: "default"}

var protectedPrefixQuoted = []byte(`"` + mdtap.ProtectedPrefix)

// apply appends the protected form of one JSON scalar to dst.
//
// text is the value's JSON text, canonical for strings (the form a query
// value would quote to), and content the decoded bytes of a string. path is
// the concrete path (associated data of encrypt), field the member name
// (associated data of tokenize, default hash domain). Nothing here converts
// to string on the common paths: this runs once per field of every body.
func (s *session) apply(c *compiled, dst []byte, path []byte, field []byte, text []byte, content []byte, isString bool) ([]byte, error) {
	switch c.action {
	case ActionKeep:
		if isString && bytes.HasPrefix(content, protectedPrefixQuoted[1:]) {
			return jsontext.AppendQuote(dst, mdtap.KeepString(string(content)))
		}
		return append(dst, text...), nil
	case ActionDrop:
		return append(dst, `"`+mdtap.Dropped+`"`...), nil
	case ActionMask:
		v := content
		if !isString {
			v = text
		}
		return jsontext.AppendQuote(dst, mdtap.MaskValue(mask(string(v), c.keepFirst, c.keepLast)))
	case ActionHash:
		v := content
		if !isString {
			v = text
		} else if c.stripScheme {
			if _, cred, ok := bytes.Cut(content, []byte(" ")); ok {
				v = bytes.TrimSpace(cred)
			}
		}
		domain := c.domain
		if domain == "" {
			domain = string(field)
		}
		h, err := s.hashValue(v, domain)
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", path, err)
		}
		return strconv.AppendQuote(dst, h), nil
	case ActionTokenize:
		ct, err := s.seal.Tokenize(text, field)
		if err != nil {
			return nil, fmt.Errorf("tokenize %s: %w", path, err)
		}
		dst = append(dst, `"mdtap:tok:v1:`...)
		dst = b64.AppendEncode(dst, ct)
		return append(dst, '"'), nil
	case ActionEncrypt:
		s.ad = appendAssociatedData(s.ad[:0], s.rec.ID, path)
		ct, err := s.seal.Encrypt(text, s.ad)
		if err != nil {
			return nil, fmt.Errorf("encrypt %s: %w", path, err)
		}
		dst = append(dst, `"mdtap:enc:v1:`...)
		dst = b64.AppendEncode(dst, ct)
		return append(dst, '"'), nil
	}
	return nil, fmt.Errorf("protect %s: unknown action", path)
}

// appendAssociatedData is mdtap.AssociatedData without the allocation.
func appendAssociatedData(dst []byte, recordID string, path []byte) []byte {
	dst = append(dst, "mdtap:v1"...)
	dst = append(dst, 0)
	dst = append(dst, recordID...)
	dst = append(dst, 0)
	return append(dst, path...)
}

// hashValue returns the hash form of a value under a domain: the PRF input is
// the domain, a zero byte, then the value.
func (s *session) hashValue(v []byte, domain string) (string, error) {
	id, sum, err := s.r.keys.Hash(hashInput(v, domain))
	if err != nil {
		return "", err
	}
	return mdtap.HashValue(id, sum), nil
}

// hashInput is the PRF input of a value under a domain.
func hashInput(v []byte, domain string) []byte {
	in := make([]byte, 0, len(domain)+1+len(v))
	return append(append(append(in, domain...), 0), v...)
}

// mask keeps the first and last characters and stars the rest; a value too
// short to hide anything is starred whole.
func mask(v string, first, last int) string {
	n := utf8.RuneCountInString(v)
	if n <= first+last {
		return strings.Repeat("*", n)
	}
	var b strings.Builder
	i := 0
	for _, r := range v {
		if i < first || i >= n-last {
			b.WriteRune(r)
		} else {
			b.WriteByte('*')
		}
		i++
	}
	return b.String()
}
