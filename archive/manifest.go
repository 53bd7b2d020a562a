package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/mdtap/mdtap"
)

// ManifestVersion is the manifest format this package writes (the "v"
// field). A reader refuses a higher version rather than misreading it.
const ManifestVersion = 1

// ObjectEncoding names the encoding of every object: JSON lines, zstd.
const ObjectEncoding = "jsonl+zstd"

// Manifest describes one object and links it into its chain. It is written
// once, under ManifestKey(Chain, Seq), and never rewritten: the chain is
// append-only. A manifest's hash is the hex SHA-256 of its exact stored bytes
// (ManifestHash); the next manifest of the chain holds it as Prev.
type Manifest struct {
	V     int    `json:"v"`
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"` // position in the chain, from 1
	// Prev is the hash of manifest Seq-1 of the chain; "" for Seq 1.
	Prev string `json:"prev"`

	Kind     string `json:"kind"`     // KindRecords or KindDeadLetter
	Object   string `json:"object"`   // the object's key
	Bytes    int64  `json:"bytes"`    // the object's size
	SHA256   string `json:"sha256"`   // hex SHA-256 of the object's bytes
	Encoding string `json:"encoding"` // ObjectEncoding
	RawBytes int64  `json:"raw_bytes"`

	// Records counts the object's lines: records, or dead-letter entries.
	Records int `json:"records"`
	// ChainRecords counts the lines of every object of the chain up to and
	// including this one.
	ChainRecords uint64 `json:"chain_records"`

	IDs       *IDRange   `json:"ids,omitempty"` // absent when no line has a record id
	StreamSeq SeqRange   `json:"stream_seq"`
	Time      *TimeRange `json:"time,omitempty"` // the records' times; absent for dead letters

	// Sectors, Orgs ("_" for a record without org_code) and Subjects (the
	// records' subject blind indexes) are sorted sets, empty for dead letters.
	Sectors  []mdtap.Sector `json:"sectors"`
	Orgs     []string       `json:"orgs"`
	Subjects []string       `json:"subjects"`
	// Reasons counts a dead-letter object's entries by reason.
	Reasons map[string]int `json:"reasons,omitempty"`

	Created mdtap.Timestamp `json:"created"`
	// Writer is the archiver process that wrote it (the object name's last part).
	Writer string `json:"writer"`
}

// IDRange is the least and greatest record id (ULIDs sort by time).
type IDRange struct {
	Min string `json:"min"`
	Max string `json:"max"`
}

// SeqRange is the least and greatest stream sequence.
type SeqRange struct {
	Min uint64 `json:"min"`
	Max uint64 `json:"max"`
}

// TimeRange is the earliest and latest record time.
type TimeRange struct {
	Min mdtap.Timestamp `json:"min"`
	Max mdtap.Timestamp `json:"max"`
}

// Contains reports whether a record id in [min, max] may be in the object.
func (r *IDRange) Contains(id string) bool { return r != nil && id >= r.Min && id <= r.Max }

// encodeManifest gives a manifest's bytes: compact JSON and a newline.
func encodeManifest(m *Manifest) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b.Bytes(), nil
}

// ParseManifest decodes a manifest's bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.V != ManifestVersion {
		return nil, fmt.Errorf("parse manifest: version %d, want %d", m.V, ManifestVersion)
	}
	return &m, nil
}

// ManifestHash is the hash by which the next manifest links to this one:
// the hex SHA-256 of the manifest's bytes.
func ManifestHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
