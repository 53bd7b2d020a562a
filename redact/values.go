package redact

import (
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
	quoted, err := jsontext.AppendQuote(s.buf[:0], v)
	if err != nil { // invalid UTF-8: AppendQuote still quoted it, with U+FFFD
		if c.action == ActionKeep {
			c = defaultRule
		}
	}
	s.buf = quoted
	out, err := s.apply(c, nil, path, field, quoted, v, true)
	if err != nil {
		return "", err
	}
	if out[0] == '"' { // every result of a string is a JSON string
		str, err := strconv.Unquote(string(out))
		if err == nil {
			return str, nil
		}
		var u []byte
		if u, err = jsontext.AppendUnquote(nil, out); err == nil {
			return string(u), nil
		}
	}
	return "", fmt.Errorf("protect %s: result is not a string", path)
}

// defaultRule is what happens to a value no rule names.
var defaultRule = &compiled{action: ActionEncrypt, source: "default"}

// apply appends the protected form of one JSON scalar to dst.
//
// text is the value's JSON text, canonical for strings (the form a query
// value would quote to), and str its decoded content when isString. path is
// the concrete path (associated data of encrypt), field the member name
// (associated data of tokenize, default hash domain).
func (s *session) apply(c *compiled, dst []byte, path string, field []byte, text []byte, str string, isString bool) ([]byte, error) {
	switch c.action {
	case ActionKeep:
		if isString && strings.HasPrefix(str, mdtap.ProtectedPrefix) {
			return jsontext.AppendQuote(dst, mdtap.KeepString(str))
		}
		return append(dst, text...), nil
	case ActionDrop:
		return append(dst, `"`+mdtap.Dropped+`"`...), nil
	case ActionMask:
		v := str
		if !isString {
			v = string(text)
		}
		return jsontext.AppendQuote(dst, mdtap.MaskValue(mask(v, c.keepFirst, c.keepLast)))
	case ActionHash:
		v := []byte(str)
		if !isString {
			v = text
		}
		if c.stripScheme {
			if _, cred, ok := strings.Cut(str, " "); ok && isString {
				v = []byte(strings.TrimSpace(cred))
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
		ct, err := s.r.keys.Tokenize(text, field)
		if err != nil {
			return nil, fmt.Errorf("tokenize %s: %w", path, err)
		}
		dst = append(dst, `"mdtap:tok:v1:`...)
		dst = b64.AppendEncode(dst, ct)
		return append(dst, '"'), nil
	case ActionEncrypt:
		ct, err := s.r.keys.Encrypt(text, mdtap.AssociatedData(s.rec.ID, path))
		if err != nil {
			return nil, fmt.Errorf("encrypt %s: %w", path, err)
		}
		dst = append(dst, `"mdtap:enc:v1:`...)
		dst = b64.AppendEncode(dst, ct)
		return append(dst, '"'), nil
	}
	return nil, fmt.Errorf("protect %s: unknown action", path)
}

// hashValue returns the hash form of a value under a domain: the PRF input is
// the domain, a zero byte, then the value.
func (s *session) hashValue(v []byte, domain string) (string, error) {
	in := make([]byte, 0, len(domain)+1+len(v))
	in = append(append(append(in, domain...), 0), v...)
	id, sum, err := s.r.keys.Hash(in)
	if err != nil {
		return "", err
	}
	return mdtap.HashValue(id, sum), nil
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

func utf8Valid(s string) bool { return utf8.ValidString(s) }
