package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

func accessEntry(actor string, n int) mdtap.AccessEntry {
	return mdtap.AccessEntry{
		ID: fmt.Sprintf("01JQ%022d", n), Time: mdtap.Timestamp{Time: t0.Add(time.Duration(n) * time.Second)},
		Event: mdtap.AccessStart, Actor: actor, Reason: "FSS request <42> & co", Command: "audit query",
		Filter: map[string]string{"subject": archivetest.Subject(n)},
	}
}

func appendN(t *testing.T, l *archive.StoreAccessLog, actor string, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(context.Background(), accessEntry(actor, i)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

func verifyLog(t *testing.T, s archive.Store, heads archive.HeadStore) archive.AccessLogReport {
	t.Helper()
	r, err := archive.VerifyAccessLogStore(context.Background(), s, heads)
	if err != nil {
		t.Fatalf("VerifyAccessLogStore: %v", err)
	}
	return r
}

func TestStoreAccessLogChain(t *testing.T) {
	s := newFileStore(t)
	heads := archivetest.NewHeads()
	l := archive.NewStoreAccessLog(s, heads, zerolog.New(zerolog.NewTestWriter(t)))
	appendN(t, l, "kim", 3)
	// A second process continues the chain.
	appendN(t, archive.NewStoreAccessLog(s, heads, zerolog.Nop()), "lee", 2)
	appendN(t, l, "kim", 1)

	items, err := archive.ReadAccessLog(context.Background(), s)
	if err != nil || len(items) != 6 {
		t.Fatalf("ReadAccessLog = %d entries, %v; want 6", len(items), err)
	}
	var file bytes.Buffer
	for i, it := range items {
		if it.Seq != uint64(i+1) || it.Key != archive.AccessLogKey(it.Seq) || it.Err != nil || it.Entry.V != 1 {
			t.Errorf("entry %d: %+v", i, it)
		}
		file.Write(it.Data)
	}
	// The objects concatenated make a valid local access log.
	if n, err := archive.VerifyAccessLog(&file); n != 6 || err != nil {
		t.Errorf("VerifyAccessLog of the concatenated entries = %d, %v", n, err)
	}
	if !bytes.Contains(items[0].Data, []byte("<42> & co")) {
		t.Errorf("entry escapes HTML: %s", items[0].Data)
	}
	r := verifyLog(t, s, heads)
	if !r.OK() || r.Entries != 6 || r.LastSeq != 6 || r.Head == nil || r.Head.Seq != 6 || r.Head.Hash != items[5].Hash {
		t.Fatalf("verify = %+v, want 6 entries up to the head", r)
	}
}

// Several writers at once, each its own log (as separate processes are):
// every entry is stored once and the chain does not fork.
func TestStoreAccessLogConcurrent(t *testing.T) {
	s := newFileStore(t)
	heads := archivetest.NewHeads()
	const writers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			l := archive.NewStoreAccessLog(s, heads, zerolog.Nop())
			for i := range each {
				if _, err := l.Append(context.Background(), accessEntry(fmt.Sprintf("w%d", w), i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	r := verifyLog(t, s, heads)
	if !r.OK() || r.Entries != writers*each || r.Head == nil || r.Head.Seq != writers*each {
		t.Fatalf("verify = %+v, want %d entries in one chain, head at the last", r, writers*each)
	}
}

// lostAnswer stores a PutIfAbsent and then reports a failure, once: the
// retry finds its own entry there.
type lostAnswer struct {
	archive.Store
	once sync.Once
}

func (l *lostAnswer) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	err := l.Store.PutIfAbsent(ctx, key, data)
	lost := false
	l.once.Do(func() { lost = true })
	if lost && err == nil {
		return errors.New("connection reset")
	}
	return err
}

func TestStoreAccessLogRetries(t *testing.T) {
	s := &lostAnswer{Store: newFileStore(t)}
	l := archive.NewStoreAccessLog(s, nil, zerolog.Nop())
	appendN(t, l, "kim", 2)
	if r := verifyLog(t, s, nil); !r.OK() || r.Entries != 2 {
		t.Fatalf("after a lost answer: %+v, want 2 entries", r)
	}

	// A store that keeps failing: Append gives up with the error.
	fs := archivetest.NewFaultStore(newFileStore(t))
	fs.FailNext(1000)
	l = archive.NewStoreAccessLog(fs, nil, zerolog.Nop())
	l.Attempts, l.Backoff = 3, time.Millisecond
	if _, err := l.Append(context.Background(), accessEntry("kim", 1)); !errors.Is(err, archivetest.ErrInjected) {
		t.Fatalf("Append on a failing store = %v, want the store's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := archive.NewStoreAccessLog(newFileStore(t), nil, zerolog.Nop()).Append(ctx, accessEntry("kim", 1)); err == nil {
		t.Fatal("Append with a cancelled context succeeded")
	}
}

// A writer whose head store is ahead of the store (its tail deleted) goes on
// after the head, leaving the gap visible.
func TestStoreAccessLogAfterDeletedTail(t *testing.T) {
	s := newFileStore(t)
	heads := archivetest.NewHeads()
	appendN(t, archive.NewStoreAccessLog(s, heads, zerolog.Nop()), "kim", 4)
	for _, seq := range []uint64{3, 4} {
		os.Remove(filepath.Join(s.Dir(), archive.AccessLogKey(seq)))
	}
	r := verifyLog(t, s, heads)
	if len(r.Problems) != 1 || r.Problems[0].Kind != archive.ProblemTailDeleted || r.Problems[0].Seq != 3 || r.Problems[0].Last != 4 {
		t.Fatalf("verify = %+v, want tail_deleted 3-4", r.Problems)
	}
	seq, err := archive.NewStoreAccessLog(s, heads, zerolog.Nop()).Append(context.Background(), accessEntry("lee", 9))
	if err != nil || seq != 5 {
		t.Fatalf("Append = %d, %v; want seq 5, after the head", seq, err)
	}
	r = verifyLog(t, s, heads)
	if len(r.Problems) != 1 || r.Problems[0].Kind != archive.ProblemMissingEntry || r.Problems[0].Seq != 3 || r.Problems[0].Last != 4 {
		t.Fatalf("verify = %+v, want missing_entry 3-4", r.Problems)
	}
}

func TestVerifyAccessLogStoreFindsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		heads  bool
		tamper func(t *testing.T, dir string)
		want   []archive.Problem
	}{
		{"deleted entry", true, func(t *testing.T, dir string) { rm(t, dir, archive.AccessLogKey(3)) },
			[]archive.Problem{{Kind: archive.ProblemMissingEntry, Seq: 3, Last: 3}}},
		{"altered entry", true, func(t *testing.T, dir string) {
			flip(t, filepath.Join(dir, archive.AccessLogKey(2)), "kim", "lee")
		}, []archive.Problem{{Kind: archive.ProblemOutOfChain, Seq: 3, Key: archive.AccessLogKey(3)}}},
		{"altered last entry", true, func(t *testing.T, dir string) {
			flip(t, filepath.Join(dir, archive.AccessLogKey(5)), "kim", "lee")
		}, []archive.Problem{{Kind: archive.ProblemHeadMismatch, Seq: 5, Key: archive.AccessLogKey(5)}}},
		{"garbage entry", true, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, archive.AccessLogKey(4)), []byte("{"), 0o640)
		}, []archive.Problem{{Kind: archive.ProblemBadEntry, Seq: 4, Key: archive.AccessLogKey(4)}}},
		{"deleted tail", true, func(t *testing.T, dir string) { rm(t, dir, archive.AccessLogKey(5)) },
			[]archive.Problem{{Kind: archive.ProblemTailDeleted, Seq: 5, Last: 5}}},
		{"deleted tail without a head", false, func(t *testing.T, dir string) { rm(t, dir, archive.AccessLogKey(5)) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFileStore(t)
			heads := archivetest.NewHeads()
			appendN(t, archive.NewStoreAccessLog(s, heads, zerolog.Nop()), "kim", 5)
			tc.tamper(t, s.Dir())
			var hs archive.HeadStore
			if tc.heads {
				hs = heads
			}
			r := verifyLog(t, s, hs)
			var got []archive.Problem
			for _, p := range r.Problems {
				p.Detail = ""
				got = append(got, p)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("problems = %+v, want %+v", got, tc.want)
			}
		})
	}
	// No head for a log that has entries.
	s := newFileStore(t)
	appendN(t, archive.NewStoreAccessLog(s, nil, zerolog.Nop()), "kim", 1)
	if r := verifyLog(t, s, archivetest.NewHeads()); len(r.Problems) != 1 || r.Problems[0].Kind != archive.ProblemNoHead {
		t.Fatalf("problems = %+v, want no_head", r.Problems)
	}
}

func rm(t *testing.T, dir, key string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, key)); err != nil {
		t.Fatal(err)
	}
}

// flip replaces the first old in a file by new (same length).
func flip(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(old))
	if i < 0 {
		t.Fatalf("%s does not hold %q", path, old)
	}
	copy(b[i:], new)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestAccessLogKey(t *testing.T) {
	if k := archive.AccessLogKey(42); k != "access-log/000000000042.json" {
		t.Errorf("AccessLogKey(42) = %q", k)
	}
	if seq, err := archive.ParseAccessLogKey("access-log/000000000042.json"); seq != 42 || err != nil {
		t.Errorf("ParseAccessLogKey = %d, %v", seq, err)
	}
	for _, k := range []string{"access-log/42.json", "access-log/000000000000.json", "manifests/000000000001.json", "access-log/00000000000x.json"} {
		if _, err := archive.ParseAccessLogKey(k); err == nil {
			t.Errorf("ParseAccessLogKey(%q) = nil error", k)
		}
	}
	if archive.ValidChain(archive.AccessLogHead) == nil {
		t.Error("AccessLogHead is a valid chain id: it could collide with a manifest chain's head")
	}
}
