package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

// newAuditCmd is the `mdtap audit` group: query the archive, review its
// access log, verify it.
func newAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query, review and verify the archive (the compliance audit)",
		Long: `The compliance audit of an archive store (docs/audit.md):

  audit query    find records by time, sector, org, api, tran id, result
                 code or customer; --decrypt restores encrypted values
  audit log      list the access log: who looked at what, when and why
  audit verify   check every object, manifest chain and the access log

Every query is logged in the store's access log before it prints anything.`,
	}
	cmd.AddCommand(newAuditQueryCmd(a), newAuditLogCmd(a), newAuditVerifyCmd(a))
	return cmd
}

// storeFlags name an archive store.
type storeFlags struct{ url, ca string }

func (s *storeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&s.url, "store", "", "archive store `URL`: s3://BUCKET[/PREFIX]?endpoint=… or file:///ABS/DIR (required)")
	f.StringVar(&s.ca, "store-ca", "", "PEM `file` of CAs to trust for a private S3 endpoint")
}

// open opens the store to read it (and append to its access log): a
// missing directory or bucket is an error, never created.
func (s *storeFlags) open(ctx context.Context) (archive.Store, error) {
	if s.url == "" {
		return nil, usagef("--store is required")
	}
	u, err := mdtap.ParseStoreURL(s.url)
	if err != nil {
		return nil, usagef("--store: %w", err)
	}
	if u.Scheme == "file" {
		if st, err := os.Stat(u.Dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("store %s: no such directory", u.Dir)
		}
	}
	return openStore(ctx, s.url, s.ca, false)
}

// headFlags connect, when --nats is given, to the bucket that keeps the
// chain heads and the access log's head.
type headFlags struct {
	nats   natsFlags
	bucket string
}

func (h *headFlags) register(f *pflag.FlagSet) {
	h.nats.register(f)
	nf := f.Lookup("nats")
	nf.Usage = "NATS server `URL` whose key-value bucket keeps the chain heads (none by default: heads not used)"
	nf.DefValue, h.nats.url = "", ""
	f.StringVar(&h.bucket, "heads-bucket", stream.DefaultHeadsBucket, "NATS key-value `bucket` keeping the chain heads")
}

// open returns the head stores of the manifest chains and of the access log,
// both nil without --nats.
func (h *headFlags) open(ctx context.Context, a *app) (chains, accessLog archive.HeadStore, closeConn func(), err error) {
	if h.nats.url == "" {
		return nil, nil, func() {}, nil
	}
	if err := h.nats.validate(); err != nil {
		return nil, nil, nil, err
	}
	o := h.nats.options()
	o.FailFast = true
	nc, err := stream.Connect(o, a.log)
	if err != nil {
		return nil, nil, nil, err
	}
	kv, err := stream.OpenKV(ctx, nc, h.bucket, 0)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return headsAdapter{kv}, accessLogHeads{kv}, nc.Close, nil
}

// accessLogHead is the key of the access log's head in the heads bucket,
// beside the manifest chains' "chains.<id>".
const accessLogHeadKey = "accesslog"

// accessLogHeads keeps the access log's head (archive.AccessLogHead) in
// the heads bucket under accessLogHeadKey.
type accessLogHeads struct{ kv *stream.KV }

func (h accessLogHeads) Get(ctx context.Context, name string) (archive.Head, uint64, error) {
	if name != archive.AccessLogHead {
		return archive.Head{}, 0, fmt.Errorf("access log heads: unknown head %q", name)
	}
	b, rev, err := h.kv.Get(ctx, accessLogHeadKey)
	if errors.Is(err, stream.ErrKeyNotFound) {
		return archive.Head{}, 0, archive.ErrNoHead
	}
	if err != nil {
		return archive.Head{}, 0, err
	}
	var head archive.Head
	if err := json.Unmarshal(b, &head); err != nil {
		return archive.Head{}, 0, fmt.Errorf("access log head: %w", err)
	}
	return head, rev, nil
}

func (h accessLogHeads) Put(ctx context.Context, name string, head archive.Head, rev uint64) (uint64, error) {
	if name != archive.AccessLogHead {
		return 0, fmt.Errorf("access log heads: unknown head %q", name)
	}
	b, err := json.Marshal(head)
	if err != nil {
		return 0, err
	}
	n, err := h.kv.Put(ctx, accessLogHeadKey, b, rev)
	if errors.Is(err, stream.ErrRevisionConflict) {
		return 0, archive.ErrHeadConflict
	}
	return n, err
}

var _ archive.HeadStore = accessLogHeads{}

// parseTime reads an RFC 3339 time flag; "" gives the zero time.
func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("--%s %q: want an RFC 3339 time, like 2026-03-15T00:00:00+09:00", flag, v)
	}
	return t, nil
}

// parseRange reads --from and --to; either may be empty (the zero time),
// and when both are given --from must come first.
func parseRange(fromFlag, toFlag string) (from, to time.Time, err error) {
	if from, err = parseTime("from", fromFlag); err != nil {
		return from, to, err
	}
	if to, err = parseTime("to", toFlag); err != nil {
		return from, to, err
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, usagef("--from must be before --to")
	}
	return from, to, nil
}

func checkFormat(format string, allowed ...string) error {
	if !slices.Contains(allowed, format) {
		return usagef("--format %q: want %s", format, strings.Join(allowed, " or "))
	}
	return nil
}

type auditQueryConfig struct {
	store          storeFlags
	heads          headFlags
	subjectsBucket string
	from, to       string
	keyDir         string
	sectors        []string
	orgs           []string
	apis           []string
	tranIDs        []string
	rspCodes       []string
	subjects       []string
	decrypt        bool
	actor          string
	reason         string
	format         string
}

func newAuditQueryCmd(a *app) *cobra.Command {
	var c auditQueryConfig
	cmd := &cobra.Command{
		Use:   "query --store URL --from TIME --to TIME [filters] [--decrypt --actor NAME --reason TEXT]",
		Short: "Print the archived records that match a filter, once each, in time order",
		Long: `Print the archived records whose time is in [--from, --to) and that match
every filter given, as JSON lines (or a table), each record once (the archive
may hold a record twice) and in time order. TIME is RFC 3339.

It reads only the partitions of the hours (and --sector) asked for, and of
their objects only those whose manifest names the --org and --subject asked
for; stderr says how many objects it scanned and skipped. Filters given
several times (or comma-separated) match any of their values.

--subject takes a customer's internal id (the x-mdtap-subject header) and
looks for its blind index under every enabled PRF key, so records written
before a PRF rotation are found too. It needs --keys with the prf keyset.

--decrypt restores the encrypt and tokenize values of the records printed;
values under a destroyed key print as mdtap:shred:v1:…. It needs --keys with
the aead and daead keysets, --actor and --reason.

Every query appends to the store's access log (access-log/…, hash-chained):
a start entry (actor, reason, time, filter — a subject as its blind index,
never the id — and whether it decrypts) before any output, then a completion
entry (records, values revealed, key ids used). --actor defaults to the OS
user ($USER) when not decrypting; with --decrypt it is required. With --nats
the log's head is kept in NATS too, so a deleted tail shows in audit verify.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditQuery(cmd.Context(), a, c)
		},
	}
	f := cmd.Flags()
	c.store.register(f)
	c.heads.register(f)
	f.StringVar(&c.from, "from", "", "records from this `time` on (RFC 3339, inclusive; required)")
	f.StringVar(&c.to, "to", "", "records before this `time` (RFC 3339, exclusive; required)")
	f.StringVar(&c.keyDir, "keys", "", "key `dir`: the prf keyset for --subject, the aead and daead keysets for --decrypt")
	f.StringVar(&c.subjectsBucket, "subjects-bucket", stream.DefaultSubjectsBucket, "NATS key-value `bucket` of the per-subject keysets (with --nats and --decrypt)")
	f.StringSliceVar(&c.sectors, "sector", nil, "only this `sector` (bank, card, invest, …)")
	f.StringSliceVar(&c.orgs, "org", nil, "only this provider's org `code` (_ for records without one)")
	f.StringSliceVar(&c.apis, "api", nil, "only this API `template` (/v1/bank/accounts)")
	f.StringSliceVar(&c.tranIDs, "tran-id", nil, "only this x-api-tran-id `value`")
	f.StringSliceVar(&c.rspCodes, "rsp-code", nil, "only this MyData result `code` (response rsp_code)")
	f.StringArrayVar(&c.subjects, "subject", nil, "only this customer: the internal `id` sent as x-mdtap-subject (repeatable)")
	f.BoolVar(&c.decrypt, "decrypt", false, "restore encrypt and tokenize values (needs --keys, --actor and --reason; logged)")
	f.StringVar(&c.actor, "actor", "", "who is asking, for the access log (default $USER; required with --decrypt)")
	f.StringVar(&c.reason, "reason", "", "why, for the access log (required with --decrypt)")
	f.StringVar(&c.format, "format", "jsonl", "output `format`: jsonl or table")
	return cmd
}

func runAuditQuery(ctx context.Context, a *app, c auditQueryConfig) error {
	from, to, err := parseRange(c.from, c.to)
	if err != nil {
		return err
	}
	switch {
	case c.store.url == "":
		return usagef("--store is required")
	case from.IsZero() || to.IsZero():
		return usagef("--from and --to are required: the time range to search")
	case c.decrypt && c.actor == "":
		return usagef("--actor is required with --decrypt: who is reading")
	case c.decrypt && c.reason == "":
		return usagef("--reason is required with --decrypt: why (the access log keeps it)")
	case (c.decrypt || len(c.subjects) > 0) && c.keyDir == "":
		return usagef("--keys is required with --subject and --decrypt")
	}
	if err := checkFormat(c.format, "jsonl", "table"); err != nil {
		return err
	}
	f := archive.Filter{From: from, To: to, Orgs: c.orgs, APIs: c.apis, TranIDs: c.tranIDs, RspCodes: c.rspCodes}
	for _, s := range c.sectors {
		if !mdtap.Sector(s).Valid() {
			return usagef("--sector %q: not a sector (bank, card, invest, insu, …)", s)
		}
		f.Sectors = append(f.Sectors, mdtap.Sector(s))
	}
	actor := c.actor
	if actor == "" {
		actor = osUser(a)
		if actor == "" {
			return usagef("--actor is required: the OS user name is unknown")
		}
	}

	// Key access: blind indexes need the PRF keyset only, decrypting the
	// AEAD and deterministic-AEAD keysets only.
	var purposes []keys.Purpose
	if len(c.subjects) > 0 {
		purposes = append(purposes, keys.PurposePRF)
	}
	if c.decrypt {
		purposes = append(purposes, keys.PurposeAEAD, keys.PurposeDAEAD)
	}
	var set *keys.Set
	if len(purposes) > 0 {
		if set, err = keys.Load(ctx, c.keyDir, purposes...); err != nil {
			return err
		}
	}
	keyIDs := map[uint32]bool{}
	for _, id := range c.subjects {
		hs, err := set.HashAll([]byte(redact.DomainSubject + "\x00" + id))
		if err != nil {
			return fmt.Errorf("subject blind index: %w", err)
		}
		for _, h := range hs {
			f.Subjects = append(f.Subjects, mdtap.HashValue(h.KeyID, h.Sum))
			keyIDs[h.KeyID] = true
		}
	}

	// Values under a subject's own keys open with them (read from NATS
	// before the first log entry, so a missing server fails early).
	rv := &redact.Revealer{Keys: set}
	if c.decrypt {
		openers, closeSubjects, err := subjectOpenersFor(ctx, a, &c.heads.nats, c.subjectsBucket, set)
		if err != nil {
			return err
		}
		defer closeSubjects()
		rv.Subjects = openers
	}

	store, err := c.store.open(ctx)
	if err != nil {
		return err
	}
	_, logHeads, closeConn, err := c.heads.open(ctx, a)
	if err != nil {
		return err
	}
	defer closeConn()
	alog := archive.NewStoreAccessLog(store, logHeads, a.log)
	start := mdtap.AccessEntry{
		ID: ulid.Make().String(), Time: mdtap.Timestamp{Time: time.Now()}, Event: mdtap.AccessStart,
		Actor: actor, Reason: c.reason, Command: "audit query", Filter: f.LogFields(), Decrypt: c.decrypt,
	}
	if _, err := alog.Append(ctx, start); err != nil {
		return fmt.Errorf("no access without a log entry: %w", err)
	}

	began := time.Now()
	w := bufio.NewWriterSize(a.stdout, 256<<10)
	p := &queryPrinter{w: w, table: c.format == "table", ctx: ctx, rv: rv, decrypt: c.decrypt}
	st, err := archive.Query(ctx, store, f, archive.QueryOptions{}, p.emit)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write output: %w", ferr)
	}

	done := start
	done.Time, done.Event = mdtap.Timestamp{Time: time.Now()}, mdtap.AccessComplete
	done.Records = p.records
	done.Revealed, done.Shredded, done.Unavailable = p.stats.Revealed, p.stats.Shredded, p.stats.Unavailable
	for id := range p.stats.KeyIDs {
		keyIDs[id] = true
	}
	for id := range keyIDs {
		done.KeyIDs = append(done.KeyIDs, id)
	}
	slices.Sort(done.KeyIDs)
	if err != nil {
		done.Event, done.Error = mdtap.AccessFail, err.Error()
	}
	// The completion is logged even when the query was interrupted.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, lerr := alog.Append(lctx, done); lerr != nil && err == nil {
		err = fmt.Errorf("write access log completion: %w", lerr)
	}
	printQueryStats(a.stderr, st, p, time.Since(began))
	return err
}

// osUser is the default actor: $USER, else the account's name.
func osUser(a *app) string {
	if u, ok := a.lookupEnv("USER"); ok && u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// queryPrinter writes the records a query emits.
type queryPrinter struct {
	w       *bufio.Writer
	table   bool
	decrypt bool
	ctx     context.Context
	rv      *redact.Revealer

	records int
	stats   redact.RevealStats
	header  bool
}

func (p *queryPrinter) emit(line []byte) error {
	p.records++
	if p.decrypt {
		var rec mdtap.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		out, st, err := p.rv.Reveal(p.ctx, &rec)
		if err != nil {
			return fmt.Errorf("record %s: %w", rec.ID, err)
		}
		p.stats.Revealed += st.Revealed
		p.stats.Shredded += st.Shredded
		p.stats.Unavailable += st.Unavailable
		for id := range st.KeyIDs {
			if p.stats.KeyIDs == nil {
				p.stats.KeyIDs = map[uint32]bool{}
			}
			p.stats.KeyIDs[id] = true
		}
		if line, err = marshalLine(out); err != nil {
			return err
		}
	}
	if p.table {
		return p.row(line)
	}
	p.w.Write(line)
	return p.w.WriteByte('\n')
}

func marshalLine(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

// tableRow is what the table shows of a record.
type tableRow struct {
	ID       string `json:"id"`
	Time     string `json:"time"`
	Sector   string `json:"sector"`
	Org      string `json:"org_code"`
	API      string `json:"api"`
	TranID   string `json:"tran_id"`
	Error    string `json:"error"`
	Response *struct {
		Status  int    `json:"status"`
		RspCode string `json:"rsp_code"`
	} `json:"response"`
}

const queryTableFormat = "%-27s  %-26s  %-7s  %-10s  %-6s  %-8s  %-25s  %s\n"

func (p *queryPrinter) row(line []byte) error {
	if !p.header {
		fmt.Fprintf(p.w, queryTableFormat, "TIME", "ID", "SECTOR", "ORG", "STATUS", "RSP_CODE", "TRAN_ID", "API")
		p.header = true
	}
	var r tableRow
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	status, code := "-", "-"
	if r.Response != nil {
		status, code = fmt.Sprint(r.Response.Status), r.Response.RspCode
	} else if r.Error != "" {
		status = "error"
	}
	_, err := fmt.Fprintf(p.w, queryTableFormat, r.Time, r.ID, r.Sector, dash(r.Org), status, dash(code), dash(r.TranID), r.API)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printQueryStats(w io.Writer, st archive.QueryStats, p *queryPrinter, took time.Duration) {
	fmt.Fprintf(w, "audit query: %d records", st.Matched)
	if st.Duplicates > 0 {
		fmt.Fprintf(w, " (%d duplicates removed)", st.Duplicates)
	}
	fmt.Fprintf(w, "; %d partitions, %d objects: %d scanned, %d skipped by their manifests; %d lines, %s read, in %s\n",
		st.Partitions, st.Objects, st.Scanned, st.Skipped, st.Records, humanBytes(st.Bytes), took.Round(time.Millisecond))
	if p.decrypt {
		fmt.Fprintf(w, "audit query: %d values revealed", p.stats.Revealed)
		if p.stats.Shredded > 0 {
			fmt.Fprintf(w, ", %d shredded (their key was destroyed)", p.stats.Shredded)
		}
		if p.stats.Unavailable > 0 {
			fmt.Fprintf(w, ", %d left encrypted (key not held or disabled)", p.stats.Unavailable)
		}
		fmt.Fprintln(w)
	}
	trouble := false
	for _, x := range []struct {
		keys []string
		what string
	}{
		{st.Unmanifested, "has no manifest naming it; scanned whole"},
		{st.Altered, "differs from its manifest; its records are printed"},
		{st.Corrupt, "does not decompress; none of its records are printed"},
		{st.Missing, "was listed, then gone"},
		{st.Stray, "is not an archive object"},
	} {
		for _, k := range x.keys {
			fmt.Fprintf(w, "warning: %s %s\n", k, x.what)
			trouble = true
		}
	}
	if st.Unreadable > 0 {
		fmt.Fprintf(w, "warning: %d lines are not records\n", st.Unreadable)
		trouble = true
	}
	if trouble {
		fmt.Fprintln(w, "hint: run 'mdtap audit verify' on this store")
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type auditLogConfig struct {
	store    storeFlags
	from, to string
	actors   []string
	format   string
}

func newAuditLogCmd(a *app) *cobra.Command {
	var c auditLogConfig
	cmd := &cobra.Command{
		Use:   "log --store URL [--from TIME] [--to TIME] [--actor NAME]",
		Short: "List the access log, for the periodic review of lookups",
		Long: `List the entries of the store's access log in chain order: every audit query
and reveal, its start (actor, reason, filter, whether it decrypts) and its
completion (records, values revealed, key ids), for the periodic review of
lookups that the Credit Information Act's security rules expect.

JSON lines are the entries exactly as stored (docs/audit.md); --format table
is for reading. --from and --to (RFC 3339) bound the entries' times, --actor
selects actors. A break in the log's chain is reported on stderr; audit
verify checks it in full.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditLog(cmd.Context(), a, c)
		},
	}
	f := cmd.Flags()
	c.store.register(f)
	f.StringVar(&c.from, "from", "", "entries from this `time` on (RFC 3339)")
	f.StringVar(&c.to, "to", "", "entries before this `time` (RFC 3339)")
	f.StringSliceVar(&c.actors, "actor", nil, "only this `actor`'s entries")
	f.StringVar(&c.format, "format", "jsonl", "output `format`: jsonl or table")
	return cmd
}

func runAuditLog(ctx context.Context, a *app, c auditLogConfig) error {
	from, to, err := parseRange(c.from, c.to)
	if err != nil {
		return err
	}
	if err := checkFormat(c.format, "jsonl", "table"); err != nil {
		return err
	}
	store, err := c.store.open(ctx)
	if err != nil {
		return err
	}
	items, err := archive.ReadAccessLog(ctx, store)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(a.stdout)
	if c.format == "table" {
		fmt.Fprintf(w, "%-6s  %-27s  %-8s  %-12s  %-7s  %-7s  %-11s  %-24s  %s\n",
			"SEQ", "TIME", "EVENT", "ACTOR", "DECRYPT", "RECORDS", "COMMAND", "REASON", "FILTER")
	}
	var prev uint64
	prevHash := ""
	var broken []uint64
	shown := 0
	for _, it := range items {
		if it.Seq != prev+1 || it.Err != nil || it.Entry.Prev != prevHash {
			broken = append(broken, it.Seq)
		}
		prev, prevHash = it.Seq, it.Hash
		e := it.Entry
		if it.Err != nil ||
			!from.IsZero() && e.Time.Before(from) || !to.IsZero() && !e.Time.Before(to) ||
			len(c.actors) > 0 && !slices.Contains(c.actors, e.Actor) {
			continue
		}
		shown++
		if c.format == "jsonl" {
			w.Write(it.Data)
			if len(it.Data) == 0 || it.Data[len(it.Data)-1] != '\n' {
				w.WriteByte('\n')
			}
			continue
		}
		records := "-"
		if e.Event != mdtap.AccessStart {
			records = fmt.Sprint(e.Records)
		}
		fmt.Fprintf(w, "%-6d  %-27s  %-8s  %-12s  %-7v  %-7s  %-11s  %-24s  %s\n",
			it.Seq, e.Time.UTC().Format(mdtap.TimestampLayout), e.Event, e.Actor, e.Decrypt, records, e.Command,
			dash(e.Reason), filterText(e.Filter))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "audit log: %d of %d entries\n", shown, len(items))
	if len(broken) > 0 {
		fmt.Fprintf(a.stderr, "warning: the access log's chain is broken at entries %v\nhint: run 'mdtap audit verify'\n", broken)
	}
	return nil
}

func filterText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

type auditVerifyConfig struct {
	store    storeFlags
	heads    headFlags
	from, to string
	format   string
}

func newAuditVerifyCmd(a *app) *cobra.Command {
	var c auditVerifyConfig
	cmd := &cobra.Command{
		Use:   "verify --store URL [--nats URL] [--from TIME --to TIME]",
		Short: "Check every object, manifest chain and the access log of an archive",
		Long: `Verify the archive in one pass: recompute every object's SHA-256 and size
against its manifest, walk every manifest chain and the access log's chain
(each entry holds the hash of the one before), and look for objects that no
manifest names. With --nats it also compares each chain's end with its head
in NATS (bucket --heads-bucket), which is what reveals entries or manifests
deleted from the end; without it that check is skipped.

--from and --to (RFC 3339) limit the objects read to those of records in the
range; the chains are still walked whole.

Output: one line per chain and for the access log, and one line per problem
under it (kind, position, key, detail); --format json prints the report as
one JSON object. Exit status: 0 all verified, 1 problems found, 2 the
verification could not run (bad flags, store or NATS unreachable).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd.Context(), a, c)
		},
	}
	f := cmd.Flags()
	c.store.register(f)
	c.heads.register(f)
	f.StringVar(&c.from, "from", "", "check objects of records from this `time` on (RFC 3339)")
	f.StringVar(&c.to, "to", "", "check objects of records before this `time` (RFC 3339)")
	f.StringVar(&c.format, "format", "text", "output `format`: text or json")
	return cmd
}

func runAuditVerify(ctx context.Context, a *app, c auditVerifyConfig) error {
	cannot := func(err error) error {
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return &exitError{code: exitUsage, err: err}
	}
	from, to, err := parseRange(c.from, c.to)
	if err != nil {
		return err
	}
	if err := checkFormat(c.format, "text", "json"); err != nil {
		return err
	}
	store, err := c.store.open(ctx)
	if err != nil {
		return cannot(err)
	}
	chainHeads, logHeads, closeConn, err := c.heads.open(ctx, a)
	if err != nil {
		return cannot(err)
	}
	defer closeConn()
	rep, err := archive.VerifyAll(ctx, store, archive.VerifyOptions{
		Heads: chainHeads, AccessLogHeads: logHeads, From: from, To: to,
	})
	if err != nil {
		return cannot(err)
	}
	if c.format == "json" {
		out := struct {
			archive.VerifyAllReport
			Problems int  `json:"problems"`
			OK       bool `json:"ok"`
			Heads    bool `json:"heads_checked"`
		}{rep, rep.Problems(), rep.OK(), chainHeads != nil}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return cannot(err)
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	} else {
		printVerify(a.stdout, &rep, chainHeads != nil)
	}
	if !rep.OK() {
		return &exitError{code: exitFailure}
	}
	return nil
}

func printVerify(w io.Writer, rep *archive.VerifyAllReport, heads bool) {
	head := func(h *archive.Head) string {
		switch {
		case !heads:
			return "head not checked"
		case h == nil:
			return "no head"
		}
		return fmt.Sprintf("head %d", h.Seq)
	}
	verdict := func(n int) string {
		if n == 0 {
			return "ok"
		}
		return fmt.Sprintf("%d problems", n)
	}
	problems := func(ps []archive.Problem) {
		for _, p := range ps {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	bad := 0
	for _, c := range rep.Chains {
		fmt.Fprintf(w, "chain %s: %d manifests, %d objects checked, %d records, last seq %d, %s: %s\n",
			c.Chain, c.Manifests, c.Objects, c.Records, c.LastSeq, head(c.Head), verdict(len(c.Problems)))
		problems(c.Problems)
		if len(c.Problems) > 0 {
			bad++
		}
	}
	al := rep.AccessLog
	fmt.Fprintf(w, "access log: %d entries, last seq %d, %s: %s\n", al.Entries, al.LastSeq, head(al.Head), verdict(len(al.Problems)))
	problems(al.Problems)
	if len(rep.Stray) > 0 {
		fmt.Fprintf(w, "stray keys: %d\n", len(rep.Stray))
		problems(rep.Stray)
	}
	if rep.OK() {
		fmt.Fprintf(w, "verified: %d chains and the access log, no problems\n", len(rep.Chains))
	} else {
		fmt.Fprintf(w, "FAILED: %d problems (%d of %d chains, access log %s, %d stray keys)\n",
			rep.Problems(), bad, len(rep.Chains), verdict(len(al.Problems)), len(rep.Stray))
	}
	if !heads {
		fmt.Fprintln(w, "note: without --nats the chain heads were not compared: manifests or entries deleted from the end go unseen")
	}
}

// revealAccessLog picks where `mdtap reveal` logs: the store's access log
// with --store, else the local file of --access-log.
func revealAccessLog(cmd *cobra.Command, a *app, logPath, storeURL, storeCA string) (func(mdtap.AccessEntry) error, error) {
	if storeURL == "" {
		l := archive.FileAccessLog{Path: logPath}
		return l.Append, nil
	}
	if cmd.Flags().Changed("access-log") {
		return nil, usagef("--store and --access-log: give one place for the access log")
	}
	ctx := cmd.Context()
	store, err := openStore(ctx, storeURL, storeCA, false)
	if err != nil {
		return nil, err
	}
	l := archive.NewStoreAccessLog(store, nil, a.log)
	return func(e mdtap.AccessEntry) error {
		_, err := l.Append(context.WithoutCancel(ctx), e)
		return err
	}, nil
}
