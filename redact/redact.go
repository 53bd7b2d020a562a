// Package redact applies a protection policy to mdtap records: it walks JSON
// bodies, form bodies, URL queries, headers and path parameters field by
// field and replaces each value with what the policy allows to leave the
// sidecar — a protected value (see mdtap's protected.go) or, where the policy
// says keep, the clear value.
//
// Guarantees: a value no rule names is encrypted (default-deny), a header no
// rule names is left out, and a body that cannot be walked (not JSON or form,
// malformed, too deep, invalid UTF-8, truncated) is encrypted whole and
// flagged, never kept in clear and never silently lost. Errors never quote a
// payload value.
package redact

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"sort"
	"strings"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/keys"
)

// Sealer is the subset of the keys package the redactor uses. Implementations
// are safe for concurrent use; every method uses the current primary key.
type Sealer interface {
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	Tokenize(plaintext, associatedData []byte) ([]byte, error)
	// Hash returns the PRF output (mdtap.HashBytes long) and its key id.
	Hash(input []byte) (keyID uint32, sum []byte, err error)
	Primary() mdtap.KeyIDs
}

// SubjectSealers gives the sealers of data subjects' own keys (per-subject
// keys, for consent withdrawal: see docs/keys.md). keys.SubjectKeys behind a
// small adapter implements it.
type SubjectSealers interface {
	// ForSubject returns the sealer of the subject with this blind index
	// (the protected record's subject value), creating the subject's keys on
	// first use. Its Encrypt and Tokenize use the subject's keys, its Hash
	// the main PRF keyset, and its Primary names those keys. An error means
	// the subject's keys could not be had; the record is then not protected
	// (never under the main keys instead, which could not be forgotten).
	ForSubject(ctx context.Context, blindIndex string) (Sealer, error)
}

// MaxDepth is how deeply a JSON body may nest before it is carried opaque.
// MyData bodies nest four or five levels; the limit bounds the walker's stack.
const MaxDepth = 64

// Hash domains of values the redactor hashes on its own account.
const (
	DomainSubject = "subject"     // x-mdtap-subject blind index
	DomainBody    = "body_digest" // body_digest
)

// SubjectHasher computes a value's PRF under every enabled PRF key, as
// keys.Set does.
type SubjectHasher interface {
	HashAll(input []byte) ([]keys.KeyedHash, error)
}

// SubjectIndexes returns the blind indexes a protected record's subject can
// hold for subject: its hash value under every enabled PRF key, primary
// first. A search by subject looks for each, and forgetting a subject
// destroys the keys stored under each, since records tagged before a prf
// rotation carry the old index.
func SubjectIndexes(h SubjectHasher, subject string) ([]string, error) {
	if subject == "" {
		return nil, errors.New("subject indexes: empty subject")
	}
	hs, err := h.HashAll(hashInput([]byte(subject), DomainSubject))
	if err != nil {
		return nil, fmt.Errorf("subject indexes: %w", err)
	}
	out := make([]string, len(hs))
	for i, kh := range hs {
		out[i] = mdtap.HashValue(kh.KeyID, kh.Sum)
	}
	return out, nil
}

// Redactor applies one policy with one set of keys.
type Redactor struct {
	policy *Policy
	keys   Sealer
	// Subjects, when set, gives each record that carries a subject its
	// subject's own keys: every encrypt and tokenize value of the record is
	// protected under them, and the record's keys field names them (aead,
	// daead) beside the main prf key. Hash values and the subject's blind
	// index stay under the main keys. Records without a subject, and every
	// record when Subjects is nil, use the main keys.
	Subjects SubjectSealers
	// OnUnclassified, when set, is called with the field name of every value
	// that only the default rule caught (for the unclassified-fields metric).
	OnUnclassified func(field string)
}

// New returns a Redactor.
func New(p *Policy, keys Sealer) *Redactor {
	return &Redactor{policy: p, keys: keys}
}

// Policy returns the redactor's policy.
func (r *Redactor) Policy() *Policy { return r.policy }

// errOpaque marks a body the walker gave up on; reason says why.
type errOpaque struct{ reason string }

func (e *errOpaque) Error() string { return "body is opaque: " + e.reason }

// Protect returns the protected form of a raw record. raw is not modified.
//
// A raw body is given either as captured bytes with an empty BodyKind (the
// proxy's in-memory form: the kind follows from the Content-Type header), or
// in the documented raw record form with BodyKind set (json value, form
// object, base64 opaque string), as `mdtap redact` reads it.
//
// Protect is ProtectContext without a deadline of its own (per-subject keys
// bound their store round trips themselves).
func (r *Redactor) Protect(raw *mdtap.Record) (*mdtap.Record, error) {
	return r.ProtectContext(context.Background(), raw)
}

// ProtectContext is Protect; ctx bounds the lookup of the record's
// subject's keys when the redactor has Subjects.
func (r *Redactor) ProtectContext(ctx context.Context, raw *mdtap.Record) (*mdtap.Record, error) {
	if raw.Policy != "" {
		return nil, errors.New("protect: record is already protected")
	}
	if !mdtap.ValidRecordID(raw.ID) {
		return nil, errors.New("protect: record id is not a ULID")
	}
	out := *raw
	out.Policy = r.policy.ID
	ids := r.keys.Primary()
	out.Keys = &ids
	s := &session{r: r, rec: &out, scope: r.policy.scope(raw.API), seal: r.keys}

	if raw.Subject != "" {
		v, err := s.hashValue([]byte(raw.Subject), DomainSubject)
		if err != nil {
			return nil, fmt.Errorf("protect subject: %w", err)
		}
		out.Subject = v
		if r.Subjects != nil {
			seal, err := r.Subjects.ForSubject(ctx, v)
			if err != nil {
				return nil, fmt.Errorf("protect: the subject's keys: %w", err)
			}
			s.seal = seal
			sk := seal.Primary()
			ids.AEAD, ids.DAEAD = sk.AEAD, sk.DAEAD
		}
	}
	req, err := s.request(&raw.Request)
	if err != nil {
		return nil, err
	}
	out.Request = req
	if raw.Response != nil {
		resp, err := s.response(raw.Response)
		if err != nil {
			return nil, err
		}
		out.Response = resp
	}
	out.Unclassified = s.unclassifiedList()
	return &out, nil
}

// session is the state of protecting one record.
type session struct {
	r            *Redactor
	seal         Sealer // encrypts and tokenizes: the subject's keys, or the main ones
	rec          *mdtap.Record
	scope        scope
	unclassified map[string]struct{}
	buf          []byte // scratch for plaintexts
	ad           []byte // scratch for associated data
}

func (s *session) noteDefault(path string, field []byte) {
	if s.unclassified == nil {
		s.unclassified = map[string]struct{}{}
	}
	s.unclassified[mdtap.PathWildcard(path)] = struct{}{}
	if s.r.OnUnclassified != nil && len(field) > 0 {
		s.r.OnUnclassified(string(field))
	}
}

func (s *session) unclassifiedList() []string {
	if len(s.unclassified) == 0 {
		return nil
	}
	list := make([]string, 0, len(s.unclassified))
	for p := range s.unclassified {
		list = append(list, p)
	}
	sort.Strings(list)
	return list
}

func (s *session) request(in *mdtap.Request) (mdtap.Request, error) {
	out := mdtap.Request{Method: in.Method, Host: in.Host}
	match := mdtap.MatchAPI(in.Path)
	// The path: parameters of a known template are protected one by one;
	// the path of an unknown API is protected whole.
	if s.rec.API == mdtap.APIUnknown || match.API != s.rec.API {
		v, err := s.stringValue(nil, "request.path", []byte("path"), in.Path)
		if err != nil {
			return out, fmt.Errorf("protect request path: %w", err)
		}
		out.Path = v
	} else {
		out.Path = in.Path
		if len(match.Params) > 0 {
			out.PathParams = make(map[string]string, len(match.Params))
			// Matching succeeded, so the trimmed path and the template have the
			// same segments; replace each {name} segment by its protected value.
			segs := strings.Split(strings.Trim(in.Path, "/"), "/")
			tpl := strings.Split(strings.Trim(s.rec.API, "/"), "/")
			for i, t := range tpl {
				name, ok := strings.CutPrefix(t, "{")
				if !ok || i >= len(segs) {
					continue
				}
				name = strings.TrimSuffix(name, "}")
				c := s.scope.param(placePathParam, name)
				v, err := s.stringValue(c, mdtap.PathField("request.path_params", name), []byte(name), segs[i])
				if err != nil {
					return out, fmt.Errorf("protect path parameter %s: %w", name, err)
				}
				out.PathParams[name], segs[i] = v, v
			}
			out.Path = "/" + strings.Join(segs, "/")
		}
	}
	var err error
	if out.Query, err = s.values(placeQuery, "request.query", in.Query); err != nil {
		return out, err
	}
	if out.Headers, err = s.headers("request.headers", in.Headers); err != nil {
		return out, err
	}
	if out.Payload, err = s.payload("request", &in.Payload, in.Headers); err != nil {
		return out, err
	}
	return out, nil
}

func (s *session) response(in *mdtap.Response) (*mdtap.Response, error) {
	out := &mdtap.Response{Status: in.Status}
	var err error
	if out.Headers, err = s.headers("response.headers", in.Headers); err != nil {
		return nil, err
	}
	if out.Payload, err = s.payload("response", &in.Payload, in.Headers); err != nil {
		return nil, err
	}
	// Copies of body fields follow the rules of the fields they copy.
	for _, f := range []struct {
		name string
		from string
		to   *string
	}{{"rsp_code", in.RspCode, &out.RspCode}, {"rsp_msg", in.RspMsg, &out.RspMsg}, {"error", in.OAuthError, &out.OAuthError}} {
		if f.from == "" {
			continue
		}
		c := s.scope.body([]byte(f.name), []byte(f.name))
		v, err := s.stringValue(c, mdtap.PathField("response", f.name), []byte(f.name), f.from)
		if err != nil {
			return nil, fmt.Errorf("protect response %s: %w", f.name, err)
		}
		*f.to = v
	}
	return out, nil
}

// values protects a query or form: name → values.
func (s *session) values(pl place, parent string, in map[string][]string) (map[string][]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(in))
	for name, vals := range in {
		c := s.scope.param(pl, name)
		base := mdtap.PathField(parent, name)
		pv := make([]string, len(vals))
		for i, v := range vals {
			p, err := s.stringValue(c, mdtap.PathIndex(base, i), []byte(name), v)
			if err != nil {
				return nil, fmt.Errorf("protect %s parameter: %w", parent, err)
			}
			pv[i] = p
		}
		out[name] = pv
	}
	return out, nil
}

// hopByHop headers describe one connection, not the exchange; they are never
// recorded. x-mdtap-subject is consumed by the proxy and recorded only as the
// record's subject.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-authenticate": true, "proxy-authorization": true,
	"proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"x-mdtap-subject": true,
}

// headers protects headers; a header no rule names is left out.
func (s *session) headers(parent string, in map[string][]string) (map[string][]string, error) {
	var out map[string][]string
	for name, vals := range in {
		lname := strings.ToLower(name)
		if hopByHop[lname] {
			continue
		}
		c := s.scope.param(placeHeader, lname)
		if c == nil {
			continue
		}
		base := mdtap.PathField(parent, lname)
		pv := make([]string, 0, len(vals))
		for i, v := range vals {
			p, err := s.stringValue(c, mdtap.PathIndex(base, i), []byte(lname), v)
			if err != nil {
				return nil, fmt.Errorf("protect header %s: %w", lname, err)
			}
			pv = append(pv, p)
		}
		if out == nil {
			out = make(map[string][]string)
		}
		out[lname] = append(out[lname], pv...)
	}
	return out, nil
}

// payload protects a body and copies what is known of it.
func (s *session) payload(part string, in *mdtap.Payload, headers map[string][]string) (mdtap.Payload, error) {
	out := *in
	out.Body, out.OpaqueReason = nil, ""
	if in.BodyDigest != "" && !mdtap.IsProtected(in.BodyDigest) {
		return out, fmt.Errorf("protect %s: body_digest is not a hash value", part)
	}
	out.FullSHA256 = nil
	if len(in.FullSHA256) > 0 && out.BodyDigest == "" {
		d, err := s.hashValue(in.FullSHA256, DomainBody)
		if err != nil {
			return out, fmt.Errorf("protect %s body digest: %w", part, err)
		}
		out.BodyDigest = d
	}
	if len(in.Body) == 0 {
		out.BodyKind = ""
		return out, nil
	}
	path := part + ".body"
	kind, body, err := s.classify(in, headers)
	if err != nil {
		var eo *errOpaque
		if !errors.As(err, &eo) {
			return out, fmt.Errorf("protect %s body: %w", part, err)
		}
		return s.opaque(out, path, body, eo.reason)
	}
	switch kind {
	case mdtap.BodyJSON:
		w := walker{s: s}
		b, err := w.walk(body, path)
		if err != nil {
			var eo *errOpaque
			if !errors.As(err, &eo) {
				return out, fmt.Errorf("protect %s body: %w", part, err)
			}
			return s.opaque(out, path, body, eo.reason)
		}
		out.BodyKind, out.Body = mdtap.BodyJSON, b
	case mdtap.BodyForm:
		vals, ok := mdtap.ParseValues(string(body))
		if !ok {
			return s.opaque(out, path, body, mdtap.OpaqueMalformed)
		}
		pv, err := s.values(placeForm, path, vals)
		if err != nil {
			return out, err
		}
		b, err := json.Marshal(pv)
		if err != nil {
			return out, fmt.Errorf("protect %s body: %w", part, err)
		}
		out.BodyKind, out.Body = mdtap.BodyForm, b
	}
	return out, nil
}

// classify decides how a raw body is walked and returns its bytes.
func (s *session) classify(in *mdtap.Payload, headers map[string][]string) (mdtap.BodyKind, []byte, error) {
	switch in.BodyKind {
	case mdtap.BodyJSON:
		return mdtap.BodyJSON, in.Body, nil
	case mdtap.BodyForm:
		var vals map[string][]string
		if err := json.Unmarshal(in.Body, &vals); err != nil {
			return "", nil, errors.New("raw form body is not an object of string arrays")
		}
		return mdtap.BodyForm, []byte(encodeValues(vals)), nil
	case mdtap.BodyOpaque:
		var b64 string
		if err := json.Unmarshal(in.Body, &b64); err != nil {
			return "", nil, errors.New("raw opaque body is not a base64 string")
		}
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return "", nil, errors.New("raw opaque body is not standard base64")
		}
		reason := in.OpaqueReason
		if reason == "" {
			reason = mdtap.OpaqueNotJSON
		}
		return "", b, &errOpaque{reason}
	case "":
	default:
		return "", nil, fmt.Errorf("body_kind %q is unknown", in.BodyKind)
	}
	body := []byte(in.Body)
	switch {
	case in.Truncated:
		return "", body, &errOpaque{mdtap.OpaqueTruncated}
	case in.OpaqueReason != "": // the capture already knows (decode limit, decode failure)
		return "", body, &errOpaque{in.OpaqueReason}
	}
	mt, _, _ := mime.ParseMediaType(headerValue(headers, "content-type"))
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json":
		return mdtap.BodyJSON, body, nil
	case mt == "application/x-www-form-urlencoded":
		return mdtap.BodyForm, body, nil
	}
	return "", body, &errOpaque{mdtap.OpaqueNotJSON}
}

// opaque protects a body as one value.
func (s *session) opaque(out mdtap.Payload, path string, body []byte, reason string) (mdtap.Payload, error) {
	ct, err := s.seal.Encrypt(body, mdtap.AssociatedData(s.rec.ID, path))
	if err != nil {
		return out, fmt.Errorf("encrypt %s: %w", path, err)
	}
	b, _ := json.Marshal(mdtap.BlobValue(ct))
	out.BodyKind, out.Body, out.OpaqueReason = mdtap.BodyOpaque, b, reason
	return out, nil
}

func headerValue(h map[string][]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func encodeValues(vals map[string][]string) string {
	return url.Values(vals).Encode()
}
