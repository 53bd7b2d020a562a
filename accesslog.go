package mdtap

// AccessEntry is one line of the access log: the trail of who read archived
// or captured payloads, and why, that the Credit Information Act's security
// rules expect to be kept and reviewed. A reading writes a "start" entry
// before any output and a "complete" (or "fail") entry after, sharing an id.
// Entries form a hash chain: Prev is the hex SHA-256 of the previous entry's
// exact line (without its newline), empty for the first. An entry never holds
// a revealed value.
type AccessEntry struct {
	V       int       `json:"v"`
	ID      string    `json:"id"` // ULID of the access, shared by its entries
	Time    Timestamp `json:"time"`
	Event   string    `json:"event"` // AccessStart, AccessComplete or AccessFail
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason,omitempty"`
	Command string    `json:"command"` // "reveal", "audit query"
	// Filter is what selected the records (query flags; the input's name).
	// A subject filter is recorded as its blind index, never the id itself.
	Filter  map[string]string `json:"filter,omitempty"`
	Decrypt bool              `json:"decrypt"`
	// On completion: how many records were returned and what was done.
	Records     int      `json:"records,omitempty"`
	Revealed    int      `json:"revealed,omitempty"`
	Shredded    int      `json:"shredded,omitempty"`
	Unavailable int      `json:"unavailable,omitempty"`
	KeyIDs      []uint32 `json:"key_ids,omitempty"`
	Error       string   `json:"error,omitempty"`
	Prev        string   `json:"prev"`
}

// Access-log events.
const (
	AccessStart    = "start"
	AccessComplete = "complete"
	AccessFail     = "fail"
)
