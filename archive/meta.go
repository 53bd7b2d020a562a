package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

// recordMeta is what the archiver reads of a record: what it partitions,
// indexes and checks on. It never looks at the payloads.
type recordMeta struct {
	ID      string
	Time    time.Time
	Sector  mdtap.Sector
	Org     string // "_" when the record names none
	Subject string
}

// rawMeta picks the top-level members the archiver reads, undecoded, so that
// a member of an unexpected type is reported as such rather than making the
// whole record unreadable.
type rawMeta struct {
	V       jsontext.Value `json:"v"`
	ID      jsontext.Value `json:"id"`
	Time    jsontext.Value `json:"time"`
	Sector  jsontext.Value `json:"sector"`
	OrgCode jsontext.Value `json:"org_code"`
	Subject jsontext.Value `json:"subject"`
	Policy  jsontext.Value `json:"policy"`
}

// Why a message goes to the dead-letter object instead of a records object.
const (
	// ReasonNotJSON: not one valid JSON object. Only its length is kept: it
	// may be anything, plaintext included.
	ReasonNotJSON = "not_json"
	// ReasonUnprotected: a JSON object without a policy, so a raw record, or
	// something posing as one. Only its id and length are kept.
	ReasonUnprotected = "unprotected"
	// ReasonVersion: a protected record of a schema version this archiver
	// does not know. Kept whole.
	ReasonVersion = "unsupported_version"
	// ReasonInvalid: a protected record whose id, time or sector is unusable
	// for partitioning. Kept whole.
	ReasonInvalid = "invalid"
)

// invalidRecord says why a message is not archivable as a record. The
// detail never quotes a value from the message.
type invalidRecord struct {
	reason    string
	detail    string
	id        string // when the message has a well-formed record id
	protected bool   // the message is a JSON object with a policy: its bytes may be kept
}

func (e *invalidRecord) Error() string { return e.reason + ": " + e.detail }

// parseMeta reads a message's record metadata and checks that it can be
// archived as a protected record: one JSON object (syntax checked in full),
// a non-empty policy, schema version 1, a record id, a time and a sector.
func parseMeta(data []byte) (recordMeta, *invalidRecord) {
	var raw rawMeta
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return recordMeta{}, &invalidRecord{reason: ReasonNotJSON, detail: "not a JSON object"}
	}
	if err := jsonv2.Unmarshal(data, &raw); err != nil {
		return recordMeta{}, &invalidRecord{reason: ReasonNotJSON, detail: "not a JSON object"}
	}
	inv := func(reason, detail string) (recordMeta, *invalidRecord) {
		e := &invalidRecord{reason: reason, detail: detail}
		var id string
		if jsonString(raw.ID, &id) && mdtap.ValidRecordID(id) {
			e.id = id
		}
		var policy string
		e.protected = jsonString(raw.Policy, &policy) && policy != ""
		return recordMeta{}, e
	}
	var policy string
	if !jsonString(raw.Policy, &policy) || policy == "" {
		return inv(ReasonUnprotected, "no policy: not a protected record")
	}
	var v int
	if len(raw.V) == 0 || jsonv2.Unmarshal(raw.V, &v) != nil {
		return inv(ReasonInvalid, "v is missing or not an integer")
	}
	if v != mdtap.SchemaVersion {
		return inv(ReasonVersion, fmt.Sprintf("schema version %d, want %d", v, mdtap.SchemaVersion))
	}
	var m recordMeta
	if !jsonString(raw.ID, &m.ID) || !mdtap.ValidRecordID(m.ID) {
		return inv(ReasonInvalid, "id is not a record id (ULID)")
	}
	var ts string
	if !jsonString(raw.Time, &ts) {
		return inv(ReasonInvalid, "time is missing")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return inv(ReasonInvalid, "time is not RFC 3339")
	}
	m.Time = t.UTC()
	var sector string
	if !jsonString(raw.Sector, &sector) || !mdtap.Sector(sector).Valid() {
		return inv(ReasonInvalid, "sector is missing or not in the vocabulary")
	}
	m.Sector = mdtap.Sector(sector)
	if !jsonString(raw.OrgCode, &m.Org) && len(raw.OrgCode) > 0 {
		return inv(ReasonInvalid, "org_code is not a string")
	}
	if m.Org == "" {
		m.Org = "_"
	}
	if !jsonString(raw.Subject, &m.Subject) && len(raw.Subject) > 0 {
		return inv(ReasonInvalid, "subject is not a string")
	}
	return m, nil
}

// jsonString decodes v into s if v is a JSON string.
func jsonString(v jsontext.Value, s *string) bool {
	if len(v) == 0 || v[0] != '"' {
		return false
	}
	return jsonv2.Unmarshal(v, s) == nil
}

// oneLine returns the record as one line: the message bytes themselves, or,
// for a (valid) JSON text spread over several lines, its compact form, which
// holds the same JSON value.
func oneLine(data []byte) []byte {
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 {
		return data
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return data // cannot happen for what parseMeta accepted
	}
	return b.Bytes()
}

// RecordID returns the id of a record line, for removing duplicates.
func RecordID(line []byte) (string, error) {
	var r struct {
		ID jsontext.Value `json:"id"`
	}
	if err := jsonv2.Unmarshal(line, &r); err != nil {
		return "", fmt.Errorf("record id: not a JSON object")
	}
	var id string
	if !jsonString(r.ID, &id) || id == "" {
		return "", fmt.Errorf("record id: missing")
	}
	return id, nil
}
