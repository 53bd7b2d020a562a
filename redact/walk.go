package redact

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

// walker protects one JSON body in a single streaming pass: jsontext reads
// and validates tokens (UTF-8, duplicate names, syntax); the walker writes the
// output directly, so the cost follows the protected fields, not a decoded
// tree. See PERFORMANCE.md for why it is not encoding/json into a map.
type walker struct {
	s   *session
	dec *jsontext.Decoder
	out []byte
	// path is the concrete path of the current value (record-rooted), wpath
	// the body-relative path with [*] for indexes, the key of path rules.
	path  []byte
	wpath []byte
	names []byte // member names of the current value and its ancestors
	depth int
	str   []byte // scratch for decoded strings
	canon []byte // scratch for canonical string text
}

// walk returns the protected body. An *errOpaque means the body cannot be
// walked and must be carried opaque.
func (w *walker) walk(body []byte, root string) ([]byte, error) {
	w.dec = jsontext.NewDecoder(bytes.NewReader(body))
	w.out = make([]byte, 0, len(body)+len(body)/2)
	w.path = append(w.path[:0], root...)
	if err := w.value(nil, false, nil); err != nil {
		return nil, w.classify(err)
	}
	// Exactly one value: anything after it makes the body malformed.
	if _, err := w.dec.ReadToken(); err != io.EOF {
		return nil, &errOpaque{mdtap.OpaqueMalformed}
	}
	return w.out, nil
}

var errTooDeep = errors.New("too deep")

// classify turns a walk failure into the opaque reason it stands for, or
// passes a key failure through.
func (w *walker) classify(err error) error {
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, errTooDeep):
		return &errOpaque{mdtap.OpaqueTooDeep}
	case errors.As(err, &se):
		if bytes.Contains([]byte(se.Error()), []byte("UTF-8")) {
			return &errOpaque{mdtap.OpaqueInvalidUTF8}
		}
		return &errOpaque{mdtap.OpaqueMalformed}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &errOpaque{mdtap.OpaqueMalformed}
	}
	var eo *errOpaque
	if errors.As(err, &eo) {
		return err
	}
	return err
}

// value protects the next value. name is the member name it is known by
// (an array element takes its array's); byName says whether **.NAME rules
// may select it (not for elements, which only path rules and their array's
// rule select). inherited is the rule of the nearest container a rule named,
// which applies where no rule names the value itself.
func (w *walker) value(name []byte, byName bool, inherited *compiled) error {
	lookup := name
	if !byName {
		lookup = nil
	}
	c := w.s.scope.body(w.wpath, lookup)
	defaulted := false
	if c == nil {
		c = inherited
	}
	if c == nil {
		defaulted = true
	}
	switch w.dec.PeekKind() {
	case '{', '[':
		if c != nil && c.action == ActionDrop {
			if err := w.dec.SkipValue(); err != nil {
				return err
			}
			w.out = append(w.out, `"`+mdtap.Dropped+`"`...)
			return nil
		}
		if w.dec.PeekKind() == '{' {
			return w.object(c)
		}
		return w.array(c, name)
	}
	raw, err := w.dec.ReadValue()
	if err != nil {
		return err
	}
	if raw[0] == 'n' { // null says nothing but that the field is empty; keep the shape
		w.out = append(w.out, "null"...)
		return nil
	}
	if defaulted {
		w.s.noteDefault(string(w.path), name)
		c = defaultRule
	}
	isString := raw[0] == '"'
	text, content := []byte(raw), []byte(nil)
	if isString {
		if bytes.IndexByte(raw, '\\') < 0 {
			content = raw[1 : len(raw)-1]
		} else { // canonical text: what a query value of the same content quotes to
			if w.str, err = jsontext.AppendUnquote(w.str[:0], raw); err != nil {
				return err
			}
			content = w.str
			if w.canon, err = jsontext.AppendQuote(w.canon[:0], w.str); err != nil {
				return err
			}
			text = w.canon
		}
	}
	w.out, err = w.s.apply(c, w.out, w.path, name, text, content, isString)
	return err
}

func (w *walker) enter() error {
	w.depth++
	if w.depth > MaxDepth {
		return errTooDeep
	}
	return nil
}

func (w *walker) object(c *compiled) error {
	if err := w.enter(); err != nil {
		return err
	}
	if _, err := w.dec.ReadToken(); err != nil {
		return err
	}
	w.out = append(w.out, '{')
	pathLen, wpathLen, namesLen := len(w.path), len(w.wpath), len(w.names)
	for i := 0; w.dec.PeekKind() != '}'; i++ {
		rawName, err := w.dec.ReadValue()
		if err != nil {
			return err
		}
		if rawName[0] != '"' {
			return &errOpaque{mdtap.OpaqueMalformed}
		}
		if i > 0 {
			w.out = append(w.out, ',')
		}
		w.out = append(w.out, rawName...)
		w.out = append(w.out, ':')
		// The decoder's buffer moves on the next read: keep the name in the
		// walker's own stack. Ancestors' names stay valid below namesLen.
		w.names = w.names[:namesLen]
		if bytes.IndexByte(rawName, '\\') < 0 {
			w.names = append(w.names, rawName[1:len(rawName)-1]...)
		} else if w.names, err = jsontext.AppendUnquote(w.names, rawName); err != nil {
			return err
		}
		name := w.names[namesLen:len(w.names):len(w.names)]
		w.path = appendField(w.path[:pathLen], name)
		if wpathLen == 0 {
			w.wpath = appendName(w.wpath[:0], name)
		} else {
			w.wpath = appendField(w.wpath[:wpathLen], name)
		}
		if err := w.value(name, true, c); err != nil {
			return err
		}
	}
	w.path, w.wpath, w.names = w.path[:pathLen], w.wpath[:wpathLen], w.names[:namesLen]
	if _, err := w.dec.ReadToken(); err != nil {
		return err
	}
	w.out = append(w.out, '}')
	w.depth--
	return nil
}

func (w *walker) array(c *compiled, name []byte) error {
	if err := w.enter(); err != nil {
		return err
	}
	if _, err := w.dec.ReadToken(); err != nil {
		return err
	}
	w.out = append(w.out, '[')
	pathLen, wpathLen := len(w.path), len(w.wpath)
	w.wpath = append(w.wpath, "[*]"...)
	for i := 0; w.dec.PeekKind() != ']'; i++ {
		if i > 0 {
			w.out = append(w.out, ',')
		}
		w.path = appendIndex(w.path[:pathLen], i)
		// An element takes its array's name (so "asset_list": ["…"] under
		// **.asset_list tokenizes each asset alike) and its array's rule.
		if err := w.value(name, false, c); err != nil {
			return err
		}
	}
	w.path, w.wpath = w.path[:pathLen], w.wpath[:wpathLen]
	if _, err := w.dec.ReadToken(); err != nil {
		return err
	}
	w.out = append(w.out, ']')
	w.depth--
	return nil
}

// appendField appends .name, or ["name"] for a name that is not plain, as
// mdtap.PathField spells it.
func appendField(p []byte, name []byte) []byte {
	if plainName(name) {
		return append(append(p, '.'), name...)
	}
	return appendQuotedName(p, name)
}

// appendName starts a body-relative path with a member name.
func appendName(p []byte, name []byte) []byte {
	if plainName(name) {
		return append(p, name...)
	}
	return appendQuotedName(p, name)
}

func appendQuotedName(p []byte, name []byte) []byte {
	p = append(p, '[')
	p = strconv.AppendQuote(p, string(name))
	return append(p, ']')
}

func appendIndex(p []byte, i int) []byte {
	p = append(p, '[')
	p = strconv.AppendInt(p, int64(i), 10)
	return append(p, ']')
}

// plainName matches mdtap.PathField's rule for names that follow a dot.
func plainName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	if c := name[0]; (c >= '0' && c <= '9') || c == '-' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
