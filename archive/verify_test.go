package archive_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// chainOf5 archives 25 records into a chain of five manifests.
func chainOf5(t *testing.T) (*env, []*archive.Manifest) {
	t.Helper()
	e := newEnv(t)
	e.src.Publish(archivetest.Records(25, t0, 1<<10, nil, nil, nil)...)
	o := e.options()
	o.BatchMaxRecords = 5
	e.run(e.archiver(o), e.ackedAll(25))
	ms, _ := manifests(t, e.fs, testChain)
	if len(ms) != 5 {
		t.Fatalf("%d manifests, want 5", len(ms))
	}
	return e, ms
}

func (e *env) file(key string) string {
	return filepath.Join(e.fs.Dir(), filepath.FromSlash(key))
}

func TestVerifyChain(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env, ms []*archive.Manifest)
		want   []archive.Problem // kinds and seqs
	}{
		{"intact", func(*testing.T, *env, []*archive.Manifest) {}, nil},
		{"one byte flipped in an object", func(t *testing.T, e *env, ms []*archive.Manifest) {
			p := e.file(ms[2].Object)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x20
			if err := os.WriteFile(p, data, 0o640); err != nil {
				t.Fatal(err)
			}
		}, []archive.Problem{{Kind: archive.ProblemAlteredObject, Seq: 3}}},
		{"object deleted", func(t *testing.T, e *env, ms []*archive.Manifest) {
			if err := os.Remove(e.file(ms[1].Object)); err != nil {
				t.Fatal(err)
			}
		}, []archive.Problem{{Kind: archive.ProblemMissingObject, Seq: 2}}},
		{"manifest deleted", func(t *testing.T, e *env, ms []*archive.Manifest) {
			if err := os.Remove(e.file(archive.ManifestKey(testChain, 3))); err != nil {
				t.Fatal(err)
			}
		}, []archive.Problem{{Kind: archive.ProblemMissingManifest, Seq: 3}, {Kind: archive.ProblemUnlistedObject, Seq: 3}}},
		{"tail deleted", func(t *testing.T, e *env, ms []*archive.Manifest) {
			for _, seq := range []uint64{4, 5} {
				if err := os.Remove(e.file(archive.ManifestKey(testChain, seq))); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.file(ms[seq-1].Object)); err != nil {
					t.Fatal(err)
				}
			}
		}, []archive.Problem{{Kind: archive.ProblemTailDeleted, Seq: 4}}},
		{"last manifest replaced", func(t *testing.T, e *env, ms []*archive.Manifest) {
			p := e.file(archive.ManifestKey(testChain, 5))
			data, _ := os.ReadFile(p)
			data = bytes.Replace(data, []byte(`"records":5`), []byte(`"records":4`), 1)
			os.WriteFile(p, data, 0o640)
		}, []archive.Problem{{Kind: archive.ProblemBadManifest, Seq: 5}, {Kind: archive.ProblemHeadMismatch, Seq: 5}}},
		{"middle manifest altered", func(t *testing.T, e *env, ms []*archive.Manifest) {
			p := e.file(archive.ManifestKey(testChain, 2))
			data, _ := os.ReadFile(p)
			// A consistent edit of the manifest itself (drop a subject it never
			// had, re-time it) still breaks the link from manifest 3.
			data = bytes.Replace(data, []byte(`"created":"2026-03-15T09:00:00.000000Z"`), []byte(`"created":"2026-03-15T09:00:01.000000Z"`), 1)
			os.WriteFile(p, data, 0o640)
		}, []archive.Problem{{Kind: archive.ProblemOutOfChain, Seq: 3}}},
		{"object without manifest", func(t *testing.T, e *env, ms []*archive.Manifest) {
			k, _ := archive.ParseObjectKey(ms[0].Object)
			k.Seq = 99
			data, _ := os.ReadFile(e.file(ms[0].Object))
			if err := e.fs.Put(context.Background(), k.String(), data); err != nil {
				t.Fatal(err)
			}
		}, []archive.Problem{{Kind: archive.ProblemUnlistedObject, Seq: 99}}},
		{"manifest not valid", func(t *testing.T, e *env, ms []*archive.Manifest) {
			os.WriteFile(e.file(archive.ManifestKey(testChain, 4)), []byte("{"), 0o640)
		}, []archive.Problem{{Kind: archive.ProblemBadManifest, Seq: 4}, {Kind: archive.ProblemUnlistedObject, Seq: 4}}},
		{"head lost", func(t *testing.T, e *env, ms []*archive.Manifest) {
			e.heads.Delete(testChain)
		}, []archive.Problem{{Kind: archive.ProblemNoHead}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ms := chainOf5(t)
			tt.tamper(t, e, ms)
			r, err := archive.VerifyChain(context.Background(), e.fs, e.heads, testChain)
			if err != nil {
				t.Fatalf("VerifyChain: %v", err)
			}
			var got []archive.Problem
			for _, p := range r.Problems {
				got = append(got, archive.Problem{Kind: p.Kind, Seq: p.Seq})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("VerifyChain problems = %v, want %v", r.Problems, tt.want)
			}
			if r.OK() != (len(tt.want) == 0) {
				t.Errorf("OK() = %v with problems %v", r.OK(), r.Problems)
			}
		})
	}
}

// Verification without a head store cannot see a deleted tail, and says
// nothing about it; everything else is checked.
func TestVerifyChainNoHeadStore(t *testing.T) {
	e, ms := chainOf5(t)
	os.Remove(e.file(archive.ManifestKey(testChain, 5)))
	os.Remove(e.file(ms[4].Object))
	r, err := archive.VerifyChain(context.Background(), e.fs, nil, testChain)
	if err != nil || !r.OK() || r.LastSeq != 4 || r.Records != 20 {
		t.Errorf("VerifyChain without heads = %+v, %v", r, err)
	}
}

func TestListChains(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, chain := range []string{"b.host", "a-1", "a", "a.0"} {
		if err := e.fs.Put(ctx, archive.ManifestKey(chain, 1), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := e.fs.Put(ctx, archive.ManifestKey(chain, 2), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	e.fs.Put(ctx, "manifests/stray", []byte("x"))
	got, err := archive.ListChains(ctx, e.fs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a-1", "a.0", "b.host"}; !slices.Equal(got, want) {
		t.Errorf("ListChains = %q, want %q", got, want)
	}
}

// A reader picks objects by partition, reads their manifests to filter by
// org and subject, and removes duplicates: the read path the audit uses.
func TestReadPath(t *testing.T) {
	e := newEnv(t)
	subj := archivetest.Subject(42)
	recs := archivetest.Records(40, t0.Add(59*time.Minute+30*time.Second), 1<<10,
		[]mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, []string{"ORG1", "ORG2"}, []string{subj, archivetest.Subject(7)})
	e.src.Publish(recs...)
	o := e.options()
	o.BatchMaxRecords = 10
	e.run(e.archiver(o), e.ackedAll(40))
	ctx := context.Background()
	var found int
	var d archive.Dedup
	for _, prefix := range archive.PartitionPrefixes(t0.Add(time.Hour), t0.Add(2*time.Hour), []mdtap.Sector{mdtap.SectorBank}) {
		for obj, err := range archive.Walk(ctx, e.fs, prefix, "") {
			if err != nil {
				t.Fatal(err)
			}
			k, err := archive.ParseObjectKey(obj.Key)
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := archive.ReadManifest(ctx, e.fs, k.Manifest())
			if err != nil {
				t.Fatal(err)
			}
			if m.Object != obj.Key {
				continue // an orphan: not in the chain
			}
			if _, ok := slices.BinarySearch(m.Subjects, subj); !ok {
				continue
			}
			lines, err := archive.ReadObject(ctx, e.fs, obj.Key)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lines {
				if first, _ := d.First(l); first && bytes.Contains(l, []byte(subj)) {
					found++
				}
			}
		}
	}
	// Records 30…39 fall in hour 10; the even ones are bank, ORG1 and
	// subject 42.
	if found != 5 {
		t.Errorf("found %d bank records of subject 42 in hour 10, want 5", found)
	}
}
