package archive

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdtap/mdtap"
)

// Filter selects records for Query. From and To are required; every other
// field, when not empty, keeps only the records whose member equals one of
// its values (OR within a field, AND across fields).
type Filter struct {
	// From and To bound the record's time: From <= time < To.
	From, To time.Time
	Sectors  []mdtap.Sector
	// Orgs match org_code; "_" matches records without one, as in manifests.
	Orgs []string
	// APIs match the record's api template (/v1/bank/accounts).
	APIs    []string
	TranIDs []string
	// RspCodes match response.rsp_code in clear (the built-in policy keeps
	// it); a record without a response never matches.
	RspCodes []string
	// Subjects are blind indexes (mdtap:hash:v1:…): give the index of the
	// subject under every enabled PRF key, so that records hashed before a
	// rotation match too.
	Subjects []string
}

// Validate reports the first unusable field, by name.
func (f *Filter) Validate() error {
	switch {
	case f.From.IsZero() || f.To.IsZero():
		return errors.New("filter: From and To are required")
	case !f.From.Before(f.To):
		return fmt.Errorf("filter: From %s is not before To %s", f.From.UTC().Format(time.RFC3339), f.To.UTC().Format(time.RFC3339))
	}
	for _, s := range f.Sectors {
		if !s.Valid() {
			return fmt.Errorf("filter: sector %q is not in the vocabulary", s)
		}
	}
	for _, s := range f.Subjects {
		if p, err := mdtap.ParseProtected(s); err != nil || p.Form != mdtap.FormHash {
			return errors.New("filter: a subject is not a blind index (mdtap:hash:v1:…)")
		}
	}
	return nil
}

// LogFields describes the filter for an access-log entry: flag names to
// values, lists comma-separated. Subjects appear as their blind indexes
// only, never as the id they were computed from.
func (f *Filter) LogFields() map[string]string {
	m := map[string]string{
		"from": f.From.UTC().Format(time.RFC3339Nano),
		"to":   f.To.UTC().Format(time.RFC3339Nano),
	}
	add := func(name string, vals []string) {
		if len(vals) > 0 {
			m[name] = strings.Join(vals, ",")
		}
	}
	sectors := make([]string, len(f.Sectors))
	for i, s := range f.Sectors {
		sectors[i] = string(s)
	}
	add("sector", sectors)
	add("org", f.Orgs)
	add("api", f.APIs)
	add("tran_id", f.TranIDs)
	add("rsp_code", f.RspCodes)
	add("subject", f.Subjects)
	return m
}

// DefaultQueryWorkers is how many objects Query reads and scans at once:
// enough to hide an S3 round trip behind the decompression of others, which
// runs on every core.
var DefaultQueryWorkers = max(8, 2*runtime.GOMAXPROCS(0))

// QueryOptions tune Query. Zero fields take their defaults.
type QueryOptions struct {
	Workers int // default DefaultQueryWorkers
	// Lookahead bounds the objects in flight ahead of the one being
	// emitted; default 4 × Workers.
	Lookahead int
}

// QueryStats says what a query read and what it found.
type QueryStats struct {
	Partitions int `json:"partitions"` // key prefixes listed
	Objects    int `json:"objects"`    // records objects listed under them
	Manifests  int `json:"manifests"`  // manifests read
	Skipped    int `json:"skipped"`    // objects not read: their manifest rules them out
	Scanned    int `json:"scanned"`    // objects read and scanned

	Records    int64 `json:"records"`    // lines scanned
	Bytes      int64 `json:"bytes"`      // compressed bytes read
	RawBytes   int64 `json:"raw_bytes"`  // decompressed bytes scanned
	Matched    int   `json:"matched"`    // records emitted
	Duplicates int   `json:"duplicates"` // matching records dropped as duplicates

	// What does not add up, by key; `audit verify` tells the whole story.
	// An object without a (matching) manifest is scanned whole; an altered
	// one is scanned too, its records emitted, and reported here.
	Unmanifested []string `json:"unmanifested,omitempty"`
	Altered      []string `json:"altered,omitempty"`
	Corrupt      []string `json:"corrupt,omitempty"`    // does not decompress: nothing of it is emitted
	Missing      []string `json:"missing,omitempty"`    // listed, then gone
	Stray        []string `json:"stray,omitempty"`      // not an archive object name
	Unreadable   int      `json:"unreadable,omitempty"` // lines that are not records
}

// Query finds the records that f selects and passes each to emit, once per
// record id, in time order (then id order), from the calling goroutine. The
// line passed to emit is the record exactly as stored; it is only valid
// during the call. An error from emit stops the query and is returned.
//
// It reads only what can match: the partitions of f's hours (and sectors),
// and of the objects listed there only those whose manifest admits f's
// time range, orgs and subjects; it then filters the records themselves on
// every field. Objects are read, decompressed and scanned Workers at a
// time; matching records are held one hour at a time, to be sorted and rid
// of duplicates (a duplicate is the same record stored twice, so always in
// the same hour).
//
//	list partitions ──▶ keys ──▶ workers: manifest? ─no─▶ skip
//	(hour order)          │               │ yes
//	                      │               ▼
//	                      │      object ─▶ zstd ─▶ scan lines, filter
//	                      ▼                                  │
//	              emitter: per hour, in key order ◀──────────┘
//	              sort by time, drop duplicate ids ─▶ emit
func Query(ctx context.Context, s Store, f Filter, o QueryOptions, emit func(line []byte) error) (QueryStats, error) {
	var st QueryStats
	if err := f.Validate(); err != nil {
		return st, fmt.Errorf("query: %w", err)
	}
	if o.Workers <= 0 {
		o.Workers = DefaultQueryWorkers
	}
	if o.Lookahead <= 0 {
		o.Lookahead = 4 * o.Workers
	}
	cf := compileFilter(&f)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	prefixes := queryPrefixes(f.From, f.To, f.Sectors)
	st.Partitions = len(prefixes)
	work := make(chan *queryTask, o.Workers)
	ordered := make(chan *queryTask, o.Lookahead)
	var listErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(work)
		defer close(ordered)
		for _, p := range prefixes {
			for info, err := range Walk(ctx, s, p, "") {
				if err != nil {
					listErr = fmt.Errorf("query: list %s: %w", p, err)
					return
				}
				t := &queryTask{key: info.Key, done: make(chan struct{})}
				select {
				case ordered <- t:
				case <-ctx.Done():
					return
				}
				select {
				case work <- t:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	for range o.Workers {
		wg.Go(func() {
			for t := range work {
				if ctx.Err() == nil {
					cf.run(ctx, s, t)
				} else {
					t.res.err = ctx.Err()
				}
				close(t.done)
			}
		})
	}
	defer wg.Wait()

	var hour []queryMatch
	hourOf := int64(-1)
	flush := func() error {
		slices.SortFunc(hour, func(a, b queryMatch) int {
			return cmp.Or(cmp.Compare(a.t, b.t), strings.Compare(a.id, b.id))
		})
		seen := make(map[string]struct{}, len(hour))
		for _, m := range hour {
			if _, dup := seen[m.id]; dup {
				st.Duplicates++
				continue
			}
			seen[m.id] = struct{}{}
			st.Matched++
			if err := emit(m.line); err != nil {
				return err
			}
		}
		hour = hour[:0]
		return nil
	}
	for t := range ordered {
		select {
		case <-t.done:
		case <-ctx.Done():
			return st, ctx.Err()
		}
		r := &t.res
		if r.err != nil {
			cancel()
			return st, r.err
		}
		if r.stray {
			st.Stray = append(st.Stray, t.key)
			continue
		}
		st.Objects++
		if r.manifest {
			st.Manifests++
		}
		switch {
		case r.missing:
			st.Missing = append(st.Missing, t.key)
			continue
		case r.skipped:
			st.Skipped++
			continue
		}
		st.Scanned++
		if r.unmanifested {
			st.Unmanifested = append(st.Unmanifested, t.key)
		}
		if r.altered {
			st.Altered = append(st.Altered, t.key)
		}
		if r.corrupt {
			st.Corrupt = append(st.Corrupt, t.key)
		}
		st.Records += int64(r.lines)
		st.Bytes += r.bytes
		st.RawBytes += r.rawBytes
		st.Unreadable += r.unreadable
		if r.hour != hourOf && len(hour) > 0 {
			if err := flush(); err != nil {
				cancel()
				return st, err
			}
		}
		hourOf = r.hour
		hour = append(hour, r.matches...)
	}
	if listErr != nil {
		return st, listErr
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, nil
}

// queryPrefixes returns the key prefixes to list for records with
// from <= time < to, in time order: PartitionPrefixes, except that a whole
// UTC day without a sector filter is listed as one prefix, so a query over
// a year lists 365 prefixes rather than 8,760 (a day's keys still come hour
// by hour: "hour=00/" sorts before "hour=01/").
func queryPrefixes(from, to time.Time, sectors []mdtap.Sector) []string {
	if len(sectors) > 0 {
		return PartitionPrefixes(from, to, sectors)
	}
	var out []string
	h := from.UTC().Truncate(time.Hour)
	for h.Before(to) {
		if h.Hour() == 0 && !h.Add(24*time.Hour).After(to) {
			out = append(out, RecordsDir+"/dt="+h.Format("2006-01-02")+"/")
			h = h.Add(24 * time.Hour)
			continue
		}
		out = append(out, HourPrefix(h))
		h = h.Add(time.Hour)
	}
	return out
}

// queryTask is one listed object on its way through the workers.
type queryTask struct {
	key  string
	done chan struct{} // closed once res is set
	res  queryResult
}

type queryResult struct {
	hour         int64 // the partition's hour, Unix seconds
	stray        bool
	manifest     bool // a manifest was read
	skipped      bool
	missing      bool
	unmanifested bool
	altered      bool
	corrupt      bool
	lines        int
	unreadable   int
	bytes        int64
	rawBytes     int64
	matches      []queryMatch
	err          error
}

type queryMatch struct {
	t    int64 // Unix microseconds
	id   string
	line []byte
}

// compiledFilter is a Filter ready for matching.
type compiledFilter struct {
	f        *Filter
	from, to int64 // Unix microseconds
	want     scanField
	// needles are the quoted forms of the subject and org values, looked
	// for in a manifest's bytes before it is decoded: a manifest that holds
	// none of them cannot name them in its sets. Nil when some value might
	// be written escaped, so that only decoding can tell.
	subjectNeedles, orgNeedles [][]byte
}

func compileFilter(f *Filter) *compiledFilter {
	cf := &compiledFilter{f: f, from: f.From.UnixMicro(), to: f.To.UnixMicro(), want: fieldID | fieldTime}
	if len(f.Orgs) > 0 {
		cf.want |= fieldOrg
		cf.orgNeedles = needles(f.Orgs)
	}
	if len(f.APIs) > 0 {
		cf.want |= fieldAPI
	}
	if len(f.TranIDs) > 0 {
		cf.want |= fieldTranID
	}
	if len(f.Subjects) > 0 {
		cf.want |= fieldSubject
		cf.subjectNeedles = needles(f.Subjects)
	}
	if len(f.RspCodes) > 0 {
		cf.want |= fieldRspCode
	}
	return cf
}

// needles returns the values as JSON strings, or nil if any of them holds a
// character that a JSON encoder might escape.
func needles(vals []string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		for j := 0; j < len(v); j++ {
			if !chainByte(v[j]) && v[j] != ':' {
				return nil
			}
		}
		out[i] = []byte(`"` + v + `"`)
	}
	return out
}

func containsAny(data []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

// manifestMayMatch is the cheap test on a manifest's bytes.
func (cf *compiledFilter) manifestMayMatch(data []byte) bool {
	if cf.subjectNeedles != nil && !containsAny(data, cf.subjectNeedles) {
		return false
	}
	if cf.orgNeedles != nil && !containsAny(data, cf.orgNeedles) {
		return false
	}
	return true
}

// manifestMatches reports whether an object with manifest m can hold a
// record the filter selects.
func (cf *compiledFilter) manifestMatches(m *Manifest) bool {
	f := cf.f
	if m.Time != nil && (m.Time.Max.Before(f.From) || !m.Time.Min.Before(f.To)) {
		return false
	}
	if len(f.Sectors) > 0 && !intersects(f.Sectors, m.Sectors) {
		return false
	}
	if len(f.Orgs) > 0 && !intersects(f.Orgs, m.Orgs) {
		return false
	}
	if len(f.Subjects) > 0 && !intersects(f.Subjects, m.Subjects) {
		return false
	}
	return true
}

func intersects[T comparable](want, have []T) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// recordMatches applies the filter to a scanned record.
func (cf *compiledFilter) recordMatches(r *scanned) bool {
	f := cf.f
	if r.timeUnix < cf.from || r.timeUnix >= cf.to {
		return false
	}
	if len(f.Orgs) > 0 {
		org := r.org
		if org == "" {
			org = "_"
		}
		if !slices.Contains(f.Orgs, org) {
			return false
		}
	}
	if len(f.APIs) > 0 && !slices.Contains(f.APIs, r.api) {
		return false
	}
	if len(f.TranIDs) > 0 && !slices.Contains(f.TranIDs, r.tranID) {
		return false
	}
	if len(f.Subjects) > 0 && (r.subject == "" || !slices.Contains(f.Subjects, r.subject)) {
		return false
	}
	if len(f.RspCodes) > 0 {
		if r.has&fieldRspCode == 0 {
			return false
		}
		code := strings.TrimPrefix(r.rspCode, "mdtap:lit:v1:")
		if !slices.Contains(f.RspCodes, code) {
			return false
		}
	}
	return true
}

// rawPool recycles decompression buffers: matching lines are copied out.
var rawPool = sync.Pool{New: func() any { return new([]byte) }}

// run reads, checks and scans one object.
func (cf *compiledFilter) run(ctx context.Context, s Store, t *queryTask) {
	r := &t.res
	k, err := ParseObjectKey(t.key)
	if err != nil || k.Kind != KindRecords {
		r.stray = true
		return
	}
	r.hour = k.Partition.Hour.Unix()

	var m *Manifest
	data, err := s.Get(ctx, k.Manifest())
	switch {
	case errors.Is(err, ErrNotFound):
		r.unmanifested = true
	case err != nil:
		r.err = fmt.Errorf("query: read manifest of %s: %w", t.key, err)
		return
	default:
		r.manifest = true
		if !cf.manifestMayMatch(data) {
			r.skipped = true
			return
		}
		m, err = ParseManifest(data)
		if err != nil || m.Object != t.key || m.Kind != KindRecords {
			m, r.unmanifested = nil, true
		}
	}
	if m != nil && !cf.manifestMatches(m) {
		r.skipped = true
		return
	}
	obj, err := s.Get(ctx, t.key)
	switch {
	case errors.Is(err, ErrNotFound):
		r.missing = true
		return
	case err != nil:
		r.err = fmt.Errorf("query: read object %s: %w", t.key, err)
		return
	}
	r.bytes = int64(len(obj))
	if m != nil {
		sum := sha256.Sum256(obj)
		r.altered = int64(len(obj)) != m.Bytes || hex.EncodeToString(sum[:]) != m.SHA256
	}
	bufp := rawPool.Get().(*[]byte)
	defer rawPool.Put(bufp)
	raw, err := decoder().DecodeAll(obj, (*bufp)[:0])
	if err != nil {
		r.corrupt = true
		return
	}
	*bufp = raw
	r.rawBytes = int64(len(raw))

	type span struct {
		t     int64
		id    string
		start int
		end   int
	}
	var spans []span
	var arena []byte
	var rec scanned
	for len(raw) > 0 {
		n := bytes.IndexByte(raw, '\n')
		line := raw
		if n >= 0 {
			line, raw = raw[:n], raw[n+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 {
			continue
		}
		r.lines++
		if err := scanRecord(line, cf.want, &rec); err != nil || rec.has&(fieldID|fieldTime) != fieldID|fieldTime {
			r.unreadable++
			continue
		}
		if !cf.recordMatches(&rec) {
			continue
		}
		start := len(arena)
		arena = append(arena, line...)
		spans = append(spans, span{t: rec.timeUnix, id: rec.id, start: start, end: len(arena)})
	}
	r.matches = make([]queryMatch, len(spans))
	for i, sp := range spans {
		r.matches[i] = queryMatch{t: sp.t, id: sp.id, line: arena[sp.start:sp.end:sp.end]}
	}
}
