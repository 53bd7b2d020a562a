package mdtap

import (
	"encoding/json"
	"fmt"
	"time"
)

// SchemaVersion is the record schema version this package writes (the "v" field).
// A reader refuses records of a higher version rather than misreading them.
const SchemaVersion = 1

// Record describes one request/response exchange between a client service and an
// information provider. docs/record.md is its reference and docs/record.schema.json
// its JSON Schema; both must change together with this type.
//
// A record exists in two states. A raw record holds payloads as captured and never
// leaves the sidecar's memory (the only exception is the input of `mdtap redact`,
// which a user supplies). A protected record has gone through the policy: every
// payload value is kept, or replaced by one of the protected forms of protected.go,
// and Policy names the policy that did it. Code that publishes or stores records
// refuses any record whose Policy is empty.
type Record struct {
	V          int       `json:"v"`
	ID         string    `json:"id"`
	Time       Timestamp `json:"time"`
	DurationMS float64   `json:"duration_ms"`
	Service    string    `json:"service,omitempty"`
	OrgCode    string    `json:"org_code,omitempty"`
	Sector     Sector    `json:"sector"`
	API        string    `json:"api"`

	// TranID is the x-api-tran-id request header, the MyData correlation key.
	TranID string `json:"tran_id,omitempty"`
	// TranIDEchoed says whether the provider echoed x-api-tran-id in its
	// response, as the standard requires; nil when there was no response.
	TranIDEchoed *bool `json:"tran_id_echoed,omitempty"`
	// APIType is the raw x-api-type header; Transmission is what it means.
	APIType      string       `json:"api_type,omitempty"`
	Transmission Transmission `json:"transmission"`

	// Subject is the blind index (a hash form) of the x-mdtap-subject header.
	Subject string `json:"subject,omitempty"`

	Request  Request   `json:"request"`
	Response *Response `json:"response,omitempty"`

	// Error is the shape of a transport failure (refused, timed out, bad
	// certificate); it never carries a URL's query string or a header value.
	Error string `json:"error,omitempty"`

	// Policy identifies the policy that protected the record ("builtin@<digest>").
	// Empty means raw.
	Policy string `json:"policy,omitempty"`
	// Keys are the primary key ids the record was protected under.
	Keys *KeyIDs `json:"keys,omitempty"`
	// Unclassified lists the paths (array indexes as [*]) of values that no
	// policy rule named, so the default rule protected them. Names only.
	Unclassified []string `json:"unclassified,omitempty"`
	// Degraded, when set, is why the payloads were removed and only metadata
	// (sizes, digests) kept. See the Degrade* reasons.
	Degraded string `json:"degraded,omitempty"`
}

// Request is the client's half of an exchange.
type Request struct {
	Method string `json:"method"`
	// Host is the provider's host[:port] as the client addressed it.
	Host string `json:"host"`
	// Path is the URL path; in a protected record every path parameter of the
	// matched API template is replaced by its protected form.
	Path string `json:"path"`
	// PathParams holds the API template's parameters ({card_id} …) by name.
	PathParams map[string]string `json:"path_params,omitempty"`
	// Query holds the URL query; values keep their order per name.
	Query   map[string][]string `json:"query,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Payload
}

// Response is the provider's half of an exchange. It is absent when the
// upstream call failed before a response arrived.
type Response struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers,omitempty"`
	Payload
	// RspCode and RspMsg copy the body's rsp_code and rsp_msg; they are
	// protected by the same rules as the body fields of those names.
	RspCode string `json:"rsp_code,omitempty"`
	RspMsg  string `json:"rsp_msg,omitempty"`
	// OAuthError copies the body's "error" on /oauth/2.0 endpoints, which
	// answer errors the OAuth way instead of with rsp_code.
	OAuthError string `json:"oauth_error,omitempty"`
}

// Payload is a message body and what is known of it. Sizes count bytes on the
// wire (before content decoding), so they can be compared with what the client
// and the provider saw.
type Payload struct {
	// BodyKind says how Body is represented; empty when there was no body.
	BodyKind BodyKind `json:"body_kind,omitempty"`
	// Body is a JSON value whose shape depends on BodyKind:
	//   json:   the body's JSON value, with protected values in place;
	//   form:   an object mapping each form field to an array of strings;
	//   opaque: one string — in a raw record the standard base64 of the
	//           captured (decoded) bytes, in a protected record a blob form.
	Body json.RawMessage `json:"body,omitempty"`
	// OpaqueReason says why a body is opaque (see the Opaque* reasons).
	OpaqueReason string `json:"opaque_reason,omitempty"`
	// ContentEncoding is the body's Content-Encoding (gzip, deflate, br) when
	// it was decoded for capture; Body then holds the decoded content.
	ContentEncoding string `json:"content_encoding,omitempty"`
	// BodyBytes is the full size of the body on the wire, also when truncated.
	BodyBytes int64 `json:"body_bytes"`
	// CapturedBytes is how many of those bytes were captured.
	CapturedBytes int64 `json:"captured_bytes"`
	// DecodedBytes is the size of the captured bytes after content decoding.
	DecodedBytes int64 `json:"decoded_bytes,omitempty"`
	// Truncated is set when the capture stopped before the body's end, at the
	// capture cap or at the decoded-size cap.
	Truncated bool `json:"truncated,omitempty"`
	// BodyDigest is a keyed digest (hash form, PRF keyset) of the full wire
	// body. Always set when Truncated or the record is degraded. Never a plain
	// SHA-256, which would let anyone confirm a guessed small body offline.
	BodyDigest string `json:"body_digest,omitempty"`

	// FullSHA256 is the SHA-256 of the whole wire body (as far as it went)
	// when the capture was cut short. It lives in memory only, between the
	// proxy and the redactor, which turns it into the keyed BodyDigest; it
	// is never written out, since a plain hash of a small body could be
	// confirmed by guessing.
	FullSHA256 []byte `json:"-"`
}

// BodyKind names the representation of Payload.Body.
type BodyKind string

const (
	BodyJSON   BodyKind = "json"
	BodyForm   BodyKind = "form"
	BodyOpaque BodyKind = "opaque"
)

// Reasons a body is carried as one opaque value instead of field by field.
const (
	OpaqueNotJSON     = "not_json"      // a content type mdtap does not walk
	OpaqueMalformed   = "malformed"     // claimed JSON or form, did not parse
	OpaqueTooDeep     = "too_deep"      // JSON nested beyond the walker's limit
	OpaqueInvalidUTF8 = "invalid_utf8"  // text that is not UTF-8
	OpaqueTruncated   = "truncated"     // cut at the capture cap, so unparsable
	OpaqueDecodeLimit = "decode_limit"  // decompression stopped at its cap
	OpaqueDecodeError = "decode_failed" // Content-Encoding could not be decoded
)

// Reasons a record is degraded to metadata.
const (
	DegradeSpoolFull    = "spool_full"    // neither NATS nor the spool could take the full record
	DegradeTooLarge     = "too_large"     // larger than the server's max payload
	DegradeProtectError = "protect_error" // the policy could not be applied; payloads withheld
)

// Transmission is what x-api-type means: the standard marks scheduled
// (정기적) transmissions with "scheduled"; anything else, including a missing
// header, is a user-initiated (비정기적) call.
type Transmission string

const (
	Scheduled     Transmission = "scheduled"
	UserInitiated Transmission = "user_initiated"
)

// TransmissionOf maps a raw x-api-type header value to a Transmission.
func TransmissionOf(apiType string) Transmission {
	if apiType == "scheduled" {
		return Scheduled
	}
	return UserInitiated
}

// KeyIDs are the Tink key ids that were primary when a record was protected.
// Each ciphertext also carries its own key id; these say which keys a record
// depends on without parsing every value.
type KeyIDs struct {
	AEAD  uint32 `json:"aead,omitempty"`
	DAEAD uint32 `json:"daead,omitempty"`
	PRF   uint32 `json:"prf,omitempty"`
}

// Timestamp is a time that encodes as RFC 3339 in UTC with exactly six
// fractional digits, so records sort as strings and compare across languages.
type Timestamp struct{ time.Time }

// TimestampLayout is the encoding of a Timestamp.
const TimestampLayout = "2006-01-02T15:04:05.000000Z07:00"

func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimestampLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimestampLayout)
	return append(b, '"'), nil
}

func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.UTC()
	return nil
}

// Validate checks the invariants a reader relies on. It reports the first
// field that breaks one; it never quotes a payload value.
func (r *Record) Validate() error {
	switch {
	case r.V != SchemaVersion:
		return fmt.Errorf("record: v is %d, want %d", r.V, SchemaVersion)
	case !ValidRecordID(r.ID):
		return fmt.Errorf("record: id is not a 26-character ULID")
	case r.Time.IsZero():
		return fmt.Errorf("record: time is missing")
	case r.DurationMS < 0:
		return fmt.Errorf("record: duration_ms is negative")
	case !r.Sector.Valid():
		return fmt.Errorf("record: sector %q is not in the vocabulary", r.Sector)
	case r.API == "":
		return fmt.Errorf("record: api is missing")
	case r.Transmission != Scheduled && r.Transmission != UserInitiated:
		return fmt.Errorf("record: transmission %q is not scheduled or user_initiated", r.Transmission)
	case r.Request.Method == "":
		return fmt.Errorf("record: request.method is missing")
	}
	if err := r.Request.Payload.validate("request"); err != nil {
		return err
	}
	if r.Response != nil {
		if r.Response.Status < 100 || r.Response.Status > 999 {
			return fmt.Errorf("record: response.status %d is not an HTTP status", r.Response.Status)
		}
		if err := r.Response.Payload.validate("response"); err != nil {
			return err
		}
	}
	if r.Response == nil && r.Error == "" {
		return fmt.Errorf("record: neither response nor error is set")
	}
	return nil
}

func (p *Payload) validate(part string) error {
	switch p.BodyKind {
	case "", BodyJSON, BodyForm, BodyOpaque:
	default:
		return fmt.Errorf("record: %s.body_kind %q is unknown", part, p.BodyKind)
	}
	if p.BodyKind == "" && len(p.Body) > 0 {
		return fmt.Errorf("record: %s.body is set without body_kind", part)
	}
	if p.CapturedBytes > p.BodyBytes || p.CapturedBytes < 0 {
		return fmt.Errorf("record: %s.captured_bytes exceeds body_bytes", part)
	}
	if p.Truncated && p.BodyDigest == "" {
		return fmt.Errorf("record: %s is truncated without body_digest", part)
	}
	return nil
}

// ValidRecordID reports whether id has the form of a record id: a ULID, 26
// characters of Crockford base32, upper case, so ids sort by creation time.
func ValidRecordID(id string) bool {
	if len(id) != 26 || id[0] > '7' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U':
		default:
			return false
		}
	}
	return true
}

// Degrade strips a protected record to metadata for reason: every payload
// value goes (bodies, query, headers, path parameters, the protected path),
// while sizes, body digests, status, result codes and the top-level fields
// stay. The caller sets BodyDigest on each payload first (it needs the keys).
func (r *Record) Degrade(reason string) {
	r.Degraded = reason
	r.Request.Query, r.Request.Headers, r.Request.PathParams = nil, nil, nil
	// The path may hold protected parameters or, for an unknown API, be
	// protected whole; the api template says enough.
	r.Request.Path = ""
	strip := func(p *Payload) {
		p.Body, p.BodyKind, p.OpaqueReason = nil, "", ""
	}
	strip(&r.Request.Payload)
	if r.Response != nil {
		r.Response.Headers = nil
		strip(&r.Response.Payload)
	}
	r.Unclassified = nil
}
