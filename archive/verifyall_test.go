package archive_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

const otherChain = "mdtap-archive.other-host"

// twoChains archives records through two archivers (chains testChain and
// otherChain, heads in e.heads), a few dead letters among them, and writes
// a few access-log entries (head in logHeads).
func twoChains(t *testing.T) (*env, *archivetest.Heads) {
	t.Helper()
	e := newEnv(t)
	recs := queryRecords(60)
	lines := shuffled(recs)
	lines = append(lines[:20:20], append([][]byte{[]byte(`{"not":"protected"}`)}, lines[20:]...)...)
	archiveRecords(e, testChain, lines[:40], 10)
	archiveRecords(e, otherChain, lines[40:], 7)
	logHeads := archivetest.NewHeads()
	appendN(t, archive.NewStoreAccessLog(e.fs, logHeads, zerolog.Nop()), "kim", 4)
	return e, logHeads
}

func verifyAll(t *testing.T, s archive.Store, o archive.VerifyOptions) archive.VerifyAllReport {
	t.Helper()
	r, err := archive.VerifyAll(context.Background(), s, o)
	if err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	return r
}

// sameAsVerifyChain checks that VerifyAll's report of each chain is what
// VerifyChain reports on its own.
func sameAsVerifyChain(t *testing.T, s archive.Store, heads archive.HeadStore, r archive.VerifyAllReport) {
	t.Helper()
	for _, got := range r.Chains {
		want, err := archive.VerifyChain(context.Background(), s, heads, got.Chain)
		if err != nil {
			t.Fatalf("VerifyChain(%s): %v", got.Chain, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("chain %s:\nVerifyAll   %+v\nVerifyChain %+v", got.Chain, got, want)
		}
	}
}

func TestVerifyAllSound(t *testing.T) {
	e, logHeads := twoChains(t)
	r := verifyAll(t, e.fs, archive.VerifyOptions{Heads: e.heads, AccessLogHeads: logHeads})
	if !r.OK() || len(r.Chains) != 2 || r.AccessLog.Entries != 4 {
		t.Fatalf("VerifyAll = %+v, want 2 chains and 4 access-log entries, no problems", r)
	}
	var records uint64
	for _, c := range r.Chains {
		records += c.Records
		if c.Head == nil || c.Head.Seq != c.LastSeq {
			t.Errorf("chain %s: head %+v, last seq %d", c.Chain, c.Head, c.LastSeq)
		}
	}
	if records != 61 {
		t.Errorf("records checked = %d, want 60 and a dead letter", records)
	}
	sameAsVerifyChain(t, e.fs, e.heads, r)
}

func TestVerifyAllFindsTampering(t *testing.T) {
	type where struct {
		chain string // "" for the access log, "stray" for the stray list
		kind  string
		key   string
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string, ms []*archive.Manifest) []where
	}{
		{"object with one byte flipped", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			path := filepath.Join(dir, ms[2].Object)
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			os.WriteFile(path, b, 0o640)
			return []where{{testChain, archive.ProblemAlteredObject, ms[2].Object}}
		}},
		{"deleted object", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			rm(t, dir, ms[3].Object)
			return []where{{testChain, archive.ProblemMissingObject, ms[3].Object}}
		}},
		{"deleted manifest", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			key := archive.ManifestKey(testChain, ms[1].Seq)
			rm(t, dir, key)
			return []where{
				{testChain, archive.ProblemMissingManifest, ""},
				{testChain, archive.ProblemUnlistedObject, ms[1].Object},
			}
		}},
		{"deleted last manifest", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			last := ms[len(ms)-1]
			rm(t, dir, archive.ManifestKey(testChain, last.Seq))
			return []where{
				{testChain, archive.ProblemUnlistedObject, last.Object},
				{testChain, archive.ProblemTailDeleted, ""},
			}
		}},
		{"replaced manifest", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			flip(t, filepath.Join(dir, archive.ManifestKey(testChain, ms[1].Seq)), `"writer":"`, `"writer":"`+"x")
			return []where{{testChain, archive.ProblemOutOfChain, archive.ManifestKey(testChain, ms[2].Seq)}}
		}},
		{"deleted access-log entry", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			rm(t, dir, archive.AccessLogKey(2))
			return []where{{"", archive.ProblemMissingEntry, ""}}
		}},
		{"object nobody wrote", func(t *testing.T, dir string, ms []*archive.Manifest) []where {
			k, _ := archive.ParseObjectKey(ms[0].Object)
			k.Seq = 999
			os.WriteFile(filepath.Join(dir, k.String()), []byte("x"), 0o640)
			os.WriteFile(filepath.Join(dir, archive.HourPrefix(t0), "notes.txt"), []byte("x"), 0o640)
			return []where{
				{testChain, archive.ProblemUnlistedObject, k.String()},
				{"stray", archive.ProblemUnlistedObject, archive.HourPrefix(t0) + "notes.txt"},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, logHeads := twoChains(t)
			ms, _ := manifests(t, e.fs, testChain)
			want := tc.tamper(t, e.fs.Dir(), ms)
			r := verifyAll(t, e.fs, archive.VerifyOptions{Heads: e.heads, AccessLogHeads: logHeads})
			var got []where
			for _, c := range r.Chains {
				for _, p := range c.Problems {
					got = append(got, where{c.Chain, p.Kind, p.Key})
				}
			}
			for _, p := range r.AccessLog.Problems {
				got = append(got, where{"", p.Kind, p.Key})
			}
			for _, p := range r.Stray {
				got = append(got, where{"stray", p.Kind, p.Key})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("problems = %+v\nwant %+v\nreport %+v", got, want, r)
			}
			if r.OK() || r.Problems() != len(want) {
				t.Errorf("OK = %v, Problems = %d; want %d", r.OK(), r.Problems(), len(want))
			}
			sameAsVerifyChain(t, e.fs, e.heads, r)
		})
	}
}

// With a time range, objects outside it are not read, while the chains are
// still walked whole.
func TestVerifyAllTimeRange(t *testing.T) {
	e, logHeads := twoChains(t)
	ms, _ := manifests(t, e.fs, testChain)
	var late *archive.Manifest
	for _, m := range ms {
		if m.Kind == archive.KindRecords && !m.Time.Min.Before(t0.Add(2*time.Hour)) {
			late = m
			break
		}
	}
	if late == nil {
		t.Fatal("no object in the third hour")
	}
	rm(t, e.fs.Dir(), late.Object)
	rm(t, e.fs.Dir(), archive.AccessLogKey(1))
	o := archive.VerifyOptions{Heads: e.heads, AccessLogHeads: logHeads, From: t0, To: t0.Add(2 * time.Hour)}
	r := verifyAll(t, e.fs, o)
	if n := len(r.AccessLog.Problems); n != 1 || r.Problems() != 1 {
		t.Fatalf("VerifyAll over the first two hours: %+v; want only the access log's problem", r)
	}
	o.To = t0.Add(3 * time.Hour)
	r = verifyAll(t, e.fs, o)
	var kinds []string
	for _, c := range r.Chains {
		for _, p := range c.Problems {
			kinds = append(kinds, p.Kind)
		}
	}
	if !slices.Equal(kinds, []string{archive.ProblemMissingObject}) {
		t.Fatalf("VerifyAll over three hours: chain problems %v, want the missing object", kinds)
	}
}

// A chain whose every manifest is gone still shows, by its objects.
func TestVerifyAllChainWithoutManifests(t *testing.T) {
	e, logHeads := twoChains(t)
	if err := os.RemoveAll(filepath.Join(e.fs.Dir(), archive.ChainPrefix(otherChain))); err != nil {
		t.Fatal(err)
	}
	r := verifyAll(t, e.fs, archive.VerifyOptions{Heads: e.heads, AccessLogHeads: logHeads})
	var other *archive.Report
	for i := range r.Chains {
		if r.Chains[i].Chain == otherChain {
			other = &r.Chains[i]
		}
	}
	if other == nil || other.Count(archive.ProblemUnlistedObject) == 0 || other.Count(archive.ProblemTailDeleted) != 1 {
		t.Fatalf("chain %s: %+v; want its objects unlisted and its tail deleted", otherChain, other)
	}
	sameAsVerifyChain(t, e.fs, e.heads, r)
}

// A chain deleted whole — every manifest and object gone — leaves nothing
// in the store to walk; its head in the head store still names it.
func TestVerifyAllFindsDeletedChain(t *testing.T) {
	e, logHeads := twoChains(t)
	ms, _ := manifests(t, e.fs, otherChain)
	for _, m := range ms {
		for _, key := range []string{archive.ManifestKey(otherChain, m.Seq), m.Object} {
			if err := os.Remove(filepath.Join(e.fs.Dir(), filepath.FromSlash(key))); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := verifyAll(t, e.fs, archive.VerifyOptions{Heads: e.heads, AccessLogHeads: logHeads})
	var found bool
	for _, c := range r.Chains {
		if c.Chain != otherChain {
			if !c.OK() {
				t.Errorf("chain %s: %+v", c.Chain, c.Problems)
			}
			continue
		}
		found = len(c.Problems) == 1 && c.Problems[0].Kind == archive.ProblemTailDeleted &&
			c.Problems[0].Seq == 1 && c.Problems[0].Last == ms[len(ms)-1].Seq
	}
	if !found || r.OK() {
		t.Fatalf("deleted chain %s not reported as tail_deleted from seq 1: %+v", otherChain, r.Chains)
	}
	sameAsVerifyChain(t, e.fs, e.heads, r)
}
