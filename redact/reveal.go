package redact

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

// Opener is the subset of the keys package that reverses protected values.
// Both methods return an error wrapping mdtap.ErrShredded when the value's key
// was destroyed and mdtap.ErrKeyUnavailable when the caller does not hold it.
type Opener interface {
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
	Detokenize(ciphertext, associatedData []byte) ([]byte, error)
}

// SubjectOpeners gives the openers of data subjects' own keys (per-subject
// keys; see SubjectSealers). keys.SubjectKeys behind a small adapter
// implements it.
type SubjectOpeners interface {
	// ForSubject returns the opener of the subject with this blind index
	// (the record's subject value). It never creates keys. For a subject
	// whose keys were destroyed (forgotten) it returns an opener under which
	// the subject's values fail with mdtap.ErrShredded while values under
	// the main keys still open. An error means the subject's keys could not
	// be looked up at all (the store is unreachable): Reveal then fails
	// rather than report values as shredded that may not be.
	ForSubject(ctx context.Context, blindIndex string) (Opener, error)
}

// Revealer reverses protected records: with Keys, and for a record that
// carries a subject, with the subject's opener from Subjects when set.
type Revealer struct {
	Keys     Opener
	Subjects SubjectOpeners
}

// RevealStats counts what Reveal did, for the access log.
type RevealStats struct {
	Revealed    int             // values restored
	Shredded    int             // values whose key was destroyed
	Unavailable int             // values whose key the caller does not hold
	KeyIDs      map[uint32]bool // keys used to restore values
}

func (s *RevealStats) use(id uint32) {
	if s.KeyIDs == nil {
		s.KeyIDs = map[uint32]bool{}
	}
	s.KeyIDs[id] = true
}

// Reveal returns a copy of a protected record with every encrypt and tokenize
// value restored where the keys allow: values under a destroyed key read as
// mdtap.ShredValue, values under keys the caller lacks stay as they are.
// Opaque bodies come back in the raw record form (base64 of their bytes).
// drop, mask and hash values are irreversible and stay.
func Reveal(rec *mdtap.Record, keys Opener) (*mdtap.Record, RevealStats, error) {
	return (&Revealer{Keys: keys}).Reveal(context.Background(), rec)
}

// Reveal is the package's Reveal, with the subject's keys for a record that
// carries a subject: its values under them are restored, or read as
// shredded once the subject was forgotten; its values under main keys (a
// record protected before per-subject keys were in use) open with Keys.
func (r *Revealer) Reveal(ctx context.Context, rec *mdtap.Record) (*mdtap.Record, RevealStats, error) {
	if rec.Policy == "" {
		return nil, RevealStats{}, errors.New("reveal: record is not protected")
	}
	keys := r.Keys
	if rec.Subject != "" && r.Subjects != nil {
		o, err := r.Subjects.ForSubject(ctx, rec.Subject)
		if err != nil {
			return nil, RevealStats{}, fmt.Errorf("reveal: the subject's keys: %w", err)
		}
		keys = o
	}
	out := *rec
	rv := &revealer{keys: keys, id: rec.ID}
	var err error
	req := rec.Request
	if req.Path, err = rv.str("request.path", "path", rec.Request.Path); err != nil {
		return nil, rv.stats, err
	}
	if len(rec.Request.PathParams) > 0 {
		req.PathParams = make(map[string]string, len(rec.Request.PathParams))
		for name, v := range rec.Request.PathParams {
			clear, err := rv.str(mdtap.PathField("request.path_params", name), name, v)
			if err != nil {
				return nil, rv.stats, err
			}
			req.PathParams[name] = clear
			req.Path = strings.Replace(req.Path, v, clear, 1)
		}
	}
	if req.Query, err = rv.values("request.query", rec.Request.Query); err != nil {
		return nil, rv.stats, err
	}
	if req.Headers, err = rv.values("request.headers", rec.Request.Headers); err != nil {
		return nil, rv.stats, err
	}
	if req.Payload, err = rv.payload("request", rec.Request.Payload); err != nil {
		return nil, rv.stats, err
	}
	out.Request = req
	if rec.Response != nil {
		resp := *rec.Response
		if resp.Headers, err = rv.values("response.headers", rec.Response.Headers); err != nil {
			return nil, rv.stats, err
		}
		if resp.Payload, err = rv.payload("response", rec.Response.Payload); err != nil {
			return nil, rv.stats, err
		}
		for _, f := range []struct {
			name string
			v    *string
		}{{"rsp_code", &resp.RspCode}, {"rsp_msg", &resp.RspMsg}, {"error", &resp.OAuthError}} {
			if *f.v, err = rv.str(mdtap.PathField("response", f.name), f.name, *f.v); err != nil {
				return nil, rv.stats, err
			}
		}
		out.Response = &resp
	}
	return &out, rv.stats, nil
}

type revealer struct {
	keys  Opener
	id    string
	stats RevealStats
}

// outcome is what open did with one value.
type outcome int

const (
	kept     outcome = iota // not reversible, or the key is not held: unchanged
	restored                // text holds the plaintext (JSON text, or blob bytes)
	literal                 // a lit value: p.Data is the clear string
	shredded                // the key was destroyed
)

// open restores one protected value's JSON text (or, for blob, its bytes).
func (rv *revealer) open(path, field, v string) (text []byte, p mdtap.Protected, o outcome, err error) {
	p, err = mdtap.ParseProtected(v)
	if err != nil {
		if errors.Is(err, mdtap.ErrNotProtected) {
			return nil, p, kept, nil
		}
		return nil, p, kept, fmt.Errorf("reveal %s: %w", path, err)
	}
	var ct []byte
	switch p.Form {
	case mdtap.FormLit:
		return nil, p, literal, nil
	case mdtap.FormEnc, mdtap.FormBlob, mdtap.FormTok:
		if ct, err = p.Bytes(); err != nil {
			return nil, p, kept, fmt.Errorf("reveal %s: %w", path, err)
		}
	default:
		return nil, p, kept, nil
	}
	if p.Form == mdtap.FormTok {
		text, err = rv.keys.Detokenize(ct, []byte(field))
	} else {
		text, err = rv.keys.Decrypt(ct, mdtap.AssociatedData(rv.id, path))
	}
	switch {
	case errors.Is(err, mdtap.ErrShredded):
		rv.stats.Shredded++
		return nil, p, shredded, nil
	case errors.Is(err, mdtap.ErrKeyUnavailable):
		rv.stats.Unavailable++
		return nil, p, kept, nil
	case err != nil:
		return nil, p, kept, fmt.Errorf("reveal %s: %w", path, err)
	}
	rv.stats.Revealed++
	rv.stats.use(p.KeyID)
	return text, p, restored, nil
}

// str restores a value that is recorded as a string (query, header, path
// parameter, the response's rsp_* copies).
func (rv *revealer) str(path, field, v string) (string, error) {
	text, p, o, err := rv.open(path, field, v)
	switch {
	case err != nil:
		return "", err
	case o == literal:
		return p.Data, nil
	case o == shredded:
		return mdtap.ShredValue(p.Form, p.KeyID), nil
	case o == kept:
		return v, nil
	case p.Form == mdtap.FormBlob: // bytes that were not UTF-8
		return string(text), nil
	}
	var str string
	if err := json.Unmarshal(text, &str); err != nil {
		return "", fmt.Errorf("reveal %s: plaintext is not a JSON string", path)
	}
	return str, nil
}

func (rv *revealer) values(parent string, in map[string][]string) (map[string][]string, error) {
	if len(in) == 0 {
		return in, nil
	}
	out := make(map[string][]string, len(in))
	for name, vals := range in {
		base := mdtap.PathField(parent, name)
		nv := make([]string, len(vals))
		for i, v := range vals {
			s, err := rv.str(mdtap.PathIndex(base, i), name, v)
			if err != nil {
				return nil, err
			}
			nv[i] = s
		}
		out[name] = nv
	}
	return out, nil
}

func (rv *revealer) payload(part string, in mdtap.Payload) (mdtap.Payload, error) {
	out := in
	path := part + ".body"
	switch in.BodyKind {
	case mdtap.BodyOpaque:
		var v string
		if err := json.Unmarshal(in.Body, &v); err != nil {
			return out, fmt.Errorf("reveal %s: opaque body is not a string", path)
		}
		text, p, o, err := rv.open(path, "body", v)
		if err != nil {
			return out, err
		}
		switch {
		case o == restored && p.Form == mdtap.FormBlob:
			out.Body, _ = json.Marshal(base64.StdEncoding.EncodeToString(text))
		case o == shredded:
			out.Body, _ = json.Marshal(mdtap.ShredValue(p.Form, p.KeyID))
		}
	case mdtap.BodyForm:
		var vals map[string][]string
		if err := json.Unmarshal(in.Body, &vals); err != nil {
			return out, fmt.Errorf("reveal %s: form body is not an object of string arrays", path)
		}
		nv, err := rv.values(path, vals)
		if err != nil {
			return out, err
		}
		out.Body, _ = json.Marshal(nv)
	case mdtap.BodyJSON:
		b, err := rv.json(path, in.Body)
		if err != nil {
			return out, err
		}
		out.Body = b
	}
	return out, nil
}

// json restores every protected string in a JSON body, writing restored
// values back with their original type.
func (rv *revealer) json(root string, body []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	var out []byte
	var walk func(path, name string) error
	walk = func(path, name string) error {
		switch dec.PeekKind() {
		case '{':
			dec.ReadToken()
			out = append(out, '{')
			for i := 0; dec.PeekKind() != '}'; i++ {
				raw, err := dec.ReadValue()
				if err != nil {
					return err
				}
				if i > 0 {
					out = append(out, ',')
				}
				out = append(append(out, raw...), ':')
				var n string
				if err := json.Unmarshal(raw, &n); err != nil {
					return err
				}
				if err := walk(mdtap.PathField(path, n), n); err != nil {
					return err
				}
			}
			_, err := dec.ReadToken()
			out = append(out, '}')
			return err
		case '[':
			dec.ReadToken()
			out = append(out, '[')
			for i := 0; dec.PeekKind() != ']'; i++ {
				if i > 0 {
					out = append(out, ',')
				}
				if err := walk(mdtap.PathIndex(path, i), name); err != nil {
					return err
				}
			}
			_, err := dec.ReadToken()
			out = append(out, ']')
			return err
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if raw[0] != '"' || !bytes.HasPrefix(raw, []byte(`"mdtap:`)) {
			out = append(out, raw...)
			return nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		text, p, o, err := rv.open(path, name, v)
		switch {
		case err != nil:
			return err
		case o == literal:
			out, _ = jsontext.AppendQuote(out, p.Data)
		case o == restored:
			out = append(out, text...)
		case o == shredded:
			out, _ = jsontext.AppendQuote(out, mdtap.ShredValue(p.Form, p.KeyID))
		default:
			out = append(out, raw...)
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, fmt.Errorf("reveal %s: %w", root, err)
	}
	return out, nil
}
