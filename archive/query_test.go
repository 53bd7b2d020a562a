package archive_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// qrec is one generated record of a query test and what it holds.
type qrec struct {
	id, tranID, api, rspCode, org, subject string
	time                                   time.Time
	sector                                 mdtap.Sector
	noResponse                             bool
	line                                   []byte
}

// queryRecords generates n records over three hours from t0, three minutes
// apart, across two sectors, three orgs (and none), four subjects (and none),
// two apis, two result codes and a few without a response.
func queryRecords(n int) []qrec {
	sectors := []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}
	out := make([]qrec, n)
	for i := range out {
		r := qrec{
			time:    t0.Add(time.Duration(i) * 3 * time.Minute),
			sector:  sectors[i%2],
			tranID:  fmt.Sprintf("TESTMD0001M%014d", i),
			api:     []string{"/v1/bank/accounts", "/v1/card/cards/{card_id}/approval-domestic"}[i%3%2],
			rspCode: "00000",
		}
		if i%3 != 0 {
			r.org = fmt.Sprintf("TESTORG%03d", i%3)
		}
		if i%5 != 0 {
			r.subject = archivetest.Subject(i % 4)
		}
		if i%7 == 0 {
			r.rspCode = "40101"
		}
		r.noResponse = i%11 == 0
		r.line = buildRecord(r, uint64(i+1))
		var rec mdtap.Record
		json.Unmarshal(r.line, &rec)
		r.id = rec.ID
		out[i] = r
	}
	return out
}

// buildRecord shapes an archivetest record after r.
func buildRecord(r qrec, seed uint64) []byte {
	line := archivetest.Record(archivetest.Spec{Time: r.time, Sector: r.sector, Org: r.org, Subject: r.subject, Size: 700}, seed)
	var rec mdtap.Record
	if err := json.Unmarshal(line, &rec); err != nil {
		panic(err)
	}
	rec.API, rec.TranID = r.api, r.tranID
	if r.noResponse {
		rec.Response, rec.TranIDEchoed, rec.Error = nil, nil, "upstream: timeout awaiting response headers"
	} else {
		rec.Response.RspCode = r.rspCode
	}
	out, err := json.Marshal(&rec)
	if err != nil {
		panic(err)
	}
	return out
}

// archiveRecords archives the lines in batches of batchSize through one
// archiver per batch, on e's chain.
func archiveRecords(e *env, chain string, lines [][]byte, batchSize int) {
	e.t.Helper()
	o := e.options()
	o.Chain = chain
	o.Registerer = nil
	for len(lines) > 0 {
		n := min(batchSize, len(lines))
		want := e.src.AckedCount() + n
		e.src.Publish(lines[:n]...)
		e.run(e.archiver(o), e.ackedAll(want))
		lines = lines[n:]
	}
}

// want applies f to recs the slow way: full decoding, then sorting.
func want(recs []qrec, f archive.Filter) []string {
	var out []qrec
	for _, r := range recs {
		switch {
		case r.time.Before(f.From) || !r.time.Before(f.To):
		case len(f.Sectors) > 0 && !slices.Contains(f.Sectors, r.sector):
		case len(f.Orgs) > 0 && !slices.Contains(f.Orgs, cmpOr(r.org, "_")):
		case len(f.APIs) > 0 && !slices.Contains(f.APIs, r.api):
		case len(f.TranIDs) > 0 && !slices.Contains(f.TranIDs, r.tranID):
		case len(f.RspCodes) > 0 && (r.noResponse || !slices.Contains(f.RspCodes, r.rspCode)):
		case len(f.Subjects) > 0 && (r.subject == "" || !slices.Contains(f.Subjects, r.subject)):
		default:
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b qrec) int {
		if c := a.time.Compare(b.time); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(out))
	for i, r := range out {
		ids[i] = r.id
	}
	return ids
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// query runs archive.Query and returns the ids emitted, checking that each
// line is a stored record.
func query(t *testing.T, s archive.Store, f archive.Filter) ([]string, archive.QueryStats) {
	t.Helper()
	var ids []string
	st, err := archive.Query(context.Background(), s, f, archive.QueryOptions{Workers: 3}, func(line []byte) error {
		id, err := archive.RecordID(line)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		t.Fatalf("Query(%+v): %v", f, err)
	}
	return ids, st
}

// shuffled returns the lines of recs in a random (seeded) order, so that
// objects hold records out of time order.
func shuffled(recs []qrec) [][]byte {
	lines := make([][]byte, len(recs))
	for i, r := range recs {
		lines[i] = r.line
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	return lines
}

func TestQueryFilters(t *testing.T) {
	e := newEnv(t)
	recs := queryRecords(60)
	archiveRecords(e, testChain, shuffled(recs), 17)
	all := archive.Filter{From: t0, To: t0.Add(3 * time.Hour)}
	with := func(mod func(f *archive.Filter)) archive.Filter {
		f := all
		mod(&f)
		return f
	}
	for _, tc := range []struct {
		name string
		f    archive.Filter
	}{
		{"all", all},
		{"from inclusive, to exclusive", archive.Filter{From: recs[10].time, To: recs[30].time}},
		{"within one hour", archive.Filter{From: t0.Add(70 * time.Minute), To: t0.Add(100 * time.Minute)}},
		{"wider than the archive", archive.Filter{From: t0.Add(-48 * time.Hour), To: t0.Add(48 * time.Hour)}},
		{"sector", with(func(f *archive.Filter) { f.Sectors = []mdtap.Sector{mdtap.SectorCard} })},
		{"org", with(func(f *archive.Filter) { f.Orgs = []string{"TESTORG002"} })},
		{"no org", with(func(f *archive.Filter) { f.Orgs = []string{"_"} })},
		{"api", with(func(f *archive.Filter) { f.APIs = []string{"/v1/card/cards/{card_id}/approval-domestic"} })},
		{"tran id", with(func(f *archive.Filter) { f.TranIDs = []string{recs[42].tranID} })},
		{"rsp code", with(func(f *archive.Filter) { f.RspCodes = []string{"40101"} })},
		{"subject", with(func(f *archive.Filter) { f.Subjects = []string{archivetest.Subject(3)} })},
		{"two subjects (a subject under two PRF keys)", with(func(f *archive.Filter) {
			f.Subjects = []string{archivetest.Subject(1), archivetest.Subject(2)}
		})},
		{"unknown subject", with(func(f *archive.Filter) { f.Subjects = []string{archivetest.Subject(99)} })},
		{"everything at once", archive.Filter{From: t0.Add(30 * time.Minute), To: t0.Add(150 * time.Minute),
			Sectors: []mdtap.Sector{mdtap.SectorBank}, Orgs: []string{"TESTORG001", "TESTORG002"},
			APIs: []string{"/v1/bank/accounts"}, RspCodes: []string{"00000"}, Subjects: []string{archivetest.Subject(2)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, st := query(t, e.fs, tc.f)
			w := want(recs, tc.f)
			if len(w) == 0 != strings.HasPrefix(tc.name, "unknown") {
				t.Fatalf("test case selects %d records", len(w))
			}
			if !slices.Equal(got, w) {
				t.Fatalf("Query ids = %v\nwant (in time order) %v", got, w)
			}
			if st.Matched != len(w) || st.Duplicates != 0 {
				t.Errorf("stats %+v: want %d matched, no duplicates", st, len(w))
			}
			if len(st.Unmanifested)+len(st.Altered)+len(st.Missing)+len(st.Stray)+len(st.Corrupt)+st.Unreadable > 0 {
				t.Errorf("stats report trouble in a sound archive: %+v", st)
			}
		})
	}
}

// The query reads only the partitions of its hours and sectors, and of those
// objects only the ones whose manifest names the subject or org.
func TestQueryPrunes(t *testing.T) {
	e := newEnv(t)
	recs := queryRecords(60)
	archiveRecords(e, testChain, shuffled(recs), 17)
	objects := 0
	withSubject, withOrg := 0, 0
	ms, _ := manifests(t, e.fs, testChain)
	for _, m := range ms {
		objects++
		if slices.Contains(m.Subjects, archivetest.Subject(3)) {
			withSubject++
		}
		if slices.Contains(m.Orgs, "TESTORG001") && m.Time.Min.Before(t0.Add(time.Hour)) {
			withOrg++
		}
	}

	_, st := query(t, e.fs, archive.Filter{From: t0, To: t0.Add(3 * time.Hour), Subjects: []string{archivetest.Subject(3)}})
	if st.Partitions != 3 || st.Objects != objects || st.Scanned != withSubject || st.Skipped != objects-withSubject {
		t.Errorf("subject query stats %+v: want 3 partitions, %d objects, %d scanned, the rest skipped", st, objects, withSubject)
	}
	if withSubject == objects {
		t.Fatal("test archive: every object holds the subject, nothing to prune")
	}

	_, st = query(t, e.fs, archive.Filter{From: t0, To: t0.Add(time.Hour), Sectors: []mdtap.Sector{mdtap.SectorBank}})
	inBank := 0
	for _, m := range ms {
		if m.Sectors[0] == mdtap.SectorBank && m.Time.Min.Before(t0.Add(time.Hour)) {
			inBank++
		}
	}
	if st.Partitions != 1 || st.Objects != inBank || st.Scanned != inBank {
		t.Errorf("sector query stats %+v: want 1 partition, %d objects scanned", st, inBank)
	}

	_, st = query(t, e.fs, archive.Filter{From: t0, To: t0.Add(time.Hour), Orgs: []string{"TESTORG001"}})
	if st.Scanned != withOrg {
		t.Errorf("org query stats %+v: want %d scanned", st, withOrg)
	}
}

// A batch stored twice (archived again after a lost acknowledgement, or by
// a second archiver) gives each record once.
func TestQueryDedup(t *testing.T) {
	e := newEnv(t)
	recs := queryRecords(40)
	lines := shuffled(recs)
	archiveRecords(e, testChain, lines, 40)
	archiveRecords(e, "second-archiver", lines[:25], 25)
	got, st := query(t, e.fs, archive.Filter{From: t0, To: t0.Add(3 * time.Hour)})
	if w := want(recs, archive.Filter{From: t0, To: t0.Add(3 * time.Hour)}); !slices.Equal(got, w) {
		t.Fatalf("Query ids = %v, want each once in time order: %v", got, w)
	}
	if st.Duplicates != 25 || st.Records != 65 {
		t.Errorf("stats %+v: want 65 lines scanned, 25 duplicates", st)
	}
}

// What does not add up is reported and does not stop the query: an object
// without its manifest is scanned whole, an altered one is flagged, one that
// does not decompress is skipped.
func TestQueryDamagedArchive(t *testing.T) {
	e := newEnv(t)
	recs := queryRecords(60)
	archiveRecords(e, testChain, shuffled(recs), 20)
	ms, _ := manifests(t, e.fs, testChain)
	f := archive.Filter{From: t0, To: t0.Add(3 * time.Hour), Subjects: []string{archivetest.Subject(1)}}
	// Pick two objects holding the subject: remove one's manifest, and
	// replace the other with a valid object of other bytes (its first line
	// dropped).
	var holders []*archive.Manifest
	for _, m := range ms {
		if slices.Contains(m.Subjects, archivetest.Subject(1)) {
			holders = append(holders, m)
		}
	}
	if len(holders) < 3 {
		t.Fatalf("test archive: %d objects hold the subject, want 3", len(holders))
	}
	root := e.fs.Dir()
	ctx := context.Background()
	lines1, err := archive.ReadObject(ctx, e.fs, holders[1].Object)
	if err != nil {
		t.Fatal(err)
	}
	lines2, err := archive.ReadObject(ctx, e.fs, holders[2].Object)
	if err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	id, _ := archive.RecordID(lines1[0])
	lost[id] = true
	for _, l := range lines2 {
		id, _ := archive.RecordID(l)
		lost[id] = true
	}
	if err := os.Remove(filepath.Join(root, archive.ManifestKey(testChain, holders[0].Seq))); err != nil {
		t.Fatal(err)
	}
	data, _ := archive.EncodeObject(lines1[1:])
	os.WriteFile(filepath.Join(root, holders[1].Object), data, 0o640)
	os.WriteFile(filepath.Join(root, holders[2].Object), []byte("not zstd"), 0o640)
	os.WriteFile(filepath.Join(root, archive.HourPrefix(t0), "stray.txt"), []byte("x"), 0o640)

	got, st := query(t, e.fs, f)
	if len(st.Unmanifested) != 1 || st.Unmanifested[0] != holders[0].Object {
		t.Errorf("Unmanifested = %v, want [%s]", st.Unmanifested, holders[0].Object)
	}
	if len(st.Altered) != 2 || !slices.Contains(st.Altered, holders[1].Object) {
		t.Errorf("Altered = %v, want %s and the undecodable one", st.Altered, holders[1].Object)
	}
	if len(st.Corrupt) != 1 || st.Corrupt[0] != holders[2].Object {
		t.Errorf("Corrupt = %v, want [%s]", st.Corrupt, holders[2].Object)
	}
	if len(st.Stray) != 1 {
		t.Errorf("Stray = %v, want the stray file", st.Stray)
	}
	var w []string
	for _, id := range want(recs, f) {
		if !lost[id] {
			w = append(w, id)
		}
	}
	if !slices.Equal(got, w) {
		t.Errorf("Query ids = %v\nwant %v", got, w)
	}
}

func TestQueryRefusesBadFilters(t *testing.T) {
	s := newFileStore(t)
	for _, f := range []archive.Filter{
		{},
		{From: t0},
		{From: t0, To: t0},
		{From: t0.Add(time.Hour), To: t0},
		{From: t0, To: t0.Add(time.Hour), Sectors: []mdtap.Sector{"nope"}},
		{From: t0, To: t0.Add(time.Hour), Subjects: []string{"customer-42"}},
	} {
		if _, err := archive.Query(context.Background(), s, f, archive.QueryOptions{}, func([]byte) error { return nil }); err == nil {
			t.Errorf("Query(%+v) = nil error, want one", f)
		}
	}
}

// An error from emit stops the query and comes back; no goroutine is left.
func TestQueryEmitError(t *testing.T) {
	e := newEnv(t)
	archiveRecords(e, testChain, shuffled(queryRecords(60)), 10)
	stop := errors.New("stop")
	n := 0
	_, err := archive.Query(context.Background(), e.fs, archive.Filter{From: t0, To: t0.Add(3 * time.Hour)},
		archive.QueryOptions{Workers: 2, Lookahead: 2}, func([]byte) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("Query = %v after %d records, want the emit error after 3", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := archive.Query(ctx, e.fs, archive.Filter{From: t0, To: t0.Add(3 * time.Hour)}, archive.QueryOptions{},
		func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Query with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestFilterLogFields(t *testing.T) {
	f := archive.Filter{From: t0, To: t0.Add(time.Hour), Sectors: []mdtap.Sector{"bank", "card"},
		Subjects: []string{archivetest.Subject(1), archivetest.Subject(2)}}
	got := f.LogFields()
	wantFields := map[string]string{
		"from": "2026-03-15T09:00:00Z", "to": "2026-03-15T10:00:00Z", "sector": "bank,card",
		"subject": archivetest.Subject(1) + "," + archivetest.Subject(2),
	}
	if fmt.Sprint(got) != fmt.Sprint(wantFields) {
		t.Errorf("LogFields = %v, want %v", got, wantFields)
	}
}

func TestQueryPrefixes(t *testing.T) {
	d := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		from, to time.Time
		sectors  []mdtap.Sector
		want     []string
	}{
		{d.Add(22 * time.Hour), d.Add(50*time.Hour + 30*time.Minute), nil, []string{
			"records/dt=2026-03-15/hour=22/", "records/dt=2026-03-15/hour=23/", "records/dt=2026-03-16/",
			"records/dt=2026-03-17/hour=00/", "records/dt=2026-03-17/hour=01/", "records/dt=2026-03-17/hour=02/"}},
		{d, d.Add(24 * time.Hour), []mdtap.Sector{"bank"}, archive.PartitionPrefixes(d, d.Add(24*time.Hour), []mdtap.Sector{"bank"})},
		// Hour 00 is needed whole even from 00:30: the records' times are checked one by one.
		{d.Add(30 * time.Minute), d.Add(25 * time.Hour), nil, []string{"records/dt=2026-03-15/", "records/dt=2026-03-16/hour=00/"}},
		{d.Add(30 * time.Minute), d.Add(23*time.Hour + time.Minute), nil, archive.PartitionPrefixes(d, d.Add(24*time.Hour), nil)},
		{d.In(time.FixedZone("KST", 9*3600)), d.Add(48 * time.Hour), nil, []string{"records/dt=2026-03-15/", "records/dt=2026-03-16/"}},
	} {
		if got := archive.QueryPrefixesForTest(tc.from, tc.to, tc.sectors); !slices.Equal(got, tc.want) {
			t.Errorf("queryPrefixes(%s, %s, %v) = %v\nwant %v", tc.from, tc.to, tc.sectors, got, tc.want)
		}
	}
}

// A query over days lists each whole day once and finds the same records.
func TestQueryOverDays(t *testing.T) {
	e := newEnv(t)
	recs := queryRecords(60)
	archiveRecords(e, testChain, shuffled(recs), 30)
	f := archive.Filter{From: t0.Add(-72 * time.Hour), To: t0.Add(72 * time.Hour)}
	got, st := query(t, e.fs, f)
	if w := want(recs, f); !slices.Equal(got, w) || len(w) != 60 {
		t.Fatalf("Query over six days: %v\nwant %v", got, w)
	}
	if st.Partitions != 15+5+9 {
		t.Errorf("%d prefixes listed, want 15 hours, 5 days and 9 hours", st.Partitions)
	}
}
