// Package storetest is the conformance suite of archive.Store and
// archive.HeadStore: one body of tests run against every implementation
// (the local-directory store, the S3 store on a real versitygw, the NATS KV
// head store), as litestream runs one suite against every replica client.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdtap/mdtap/archive"
)

// Timeout bounds each conformance test.
const Timeout = 2 * time.Minute

// LargeObjectBytes is the size of the large-object test: over minio-go's
// 16 MiB multipart threshold.
const LargeObjectBytes = 17<<20 + 123

// Run runs the Store conformance suite. newStore returns a new, empty store
// for each subtest (a fresh directory, bucket or prefix); it cleans up
// through t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) archive.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s archive.Store)
	}{
		{"PutGet", testPutGet},
		{"EmptyObject", testEmptyObject},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"Stat", testStat},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"ListOrder", testListOrder},
		{"KeyCharacters", testKeyCharacters},
		{"InvalidKeys", testInvalidKeys},
		{"LargeObject", testLargeObject},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ContextCanceled", testContextCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			tt.fn(t, ctx, newStore(t))
		})
	}
}

func mustPut(t *testing.T, ctx context.Context, s archive.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx, key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func checkGet(t *testing.T, ctx context.Context, s archive.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %.40q, want %d bytes %.40q", key, len(got), got, len(want), want)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testPutGet(t *testing.T, ctx context.Context, s archive.Store) {
	data := randomBytes(4096)
	mustPut(t, ctx, s, "records/dt=2026-03-15/hour=09/sector=bank/c-000000000001-0a1b2c3d.jsonl.zst", data)
	checkGet(t, ctx, s, "records/dt=2026-03-15/hour=09/sector=bank/c-000000000001-0a1b2c3d.jsonl.zst", data)
	mustPut(t, ctx, s, "top", []byte("level"))
	checkGet(t, ctx, s, "top", []byte("level"))
}

func testEmptyObject(t *testing.T, ctx context.Context, s archive.Store) {
	mustPut(t, ctx, s, "empty", nil)
	checkGet(t, ctx, s, "empty", []byte{})
	info, err := s.Stat(ctx, "empty")
	if err != nil {
		t.Fatalf("Stat(empty): %v", err)
	}
	if info.Size != 0 {
		t.Errorf("Stat(empty).Size = %d, want 0", info.Size)
	}
	if err := s.PutIfAbsent(ctx, "empty2", []byte{}); err != nil {
		t.Fatalf("PutIfAbsent(empty2, empty): %v", err)
	}
	checkGet(t, ctx, s, "empty2", []byte{})
}

func testNotFound(t *testing.T, ctx context.Context, s archive.Store) {
	mustPut(t, ctx, s, "dir/present", []byte("x"))
	for _, key := range []string{"absent", "dir/absent", "dir", "absent/deeper/key", "dir/present/below"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Stat(%q) error = %v, want ErrNotFound", key, err)
		}
	}
	got, err := s.List(ctx, "nothing/here/", "", 10)
	if err != nil {
		t.Fatalf("List(nothing/here/): %v", err)
	}
	if len(got) != 0 {
		t.Errorf("List(nothing/here/) = %v, want nothing", got)
	}
}

func testOverwrite(t *testing.T, ctx context.Context, s archive.Store) {
	mustPut(t, ctx, s, "a/key", []byte("first version, longer"))
	mustPut(t, ctx, s, "a/key", []byte("second"))
	checkGet(t, ctx, s, "a/key", []byte("second"))
	info, err := s.Stat(ctx, "a/key")
	if err != nil {
		t.Fatalf("Stat(a/key): %v", err)
	}
	if info.Size != int64(len("second")) {
		t.Errorf("Stat(a/key).Size = %d, want %d", info.Size, len("second"))
	}
	list, err := s.List(ctx, "a/", "", 10)
	if err != nil {
		t.Fatalf("List(a/): %v", err)
	}
	if len(list) != 1 {
		t.Errorf("List(a/) after overwrite = %v, want one object", keys(list))
	}
}

func testPutIfAbsent(t *testing.T, ctx context.Context, s archive.Store) {
	key := "manifests/chain-a/000000000001.json"
	if err := s.PutIfAbsent(ctx, key, []byte("first")); err != nil {
		t.Fatalf("PutIfAbsent(%q) on a new key: %v", key, err)
	}
	err := s.PutIfAbsent(ctx, key, []byte("second"))
	if !errors.Is(err, archive.ErrExists) {
		t.Fatalf("PutIfAbsent(%q) on an existing key: error = %v, want ErrExists", key, err)
	}
	if errors.Is(err, archive.ErrNotFound) {
		t.Errorf("PutIfAbsent error %v is also ErrNotFound", err)
	}
	checkGet(t, ctx, s, key, []byte("first"))
	// Same bytes again: still refused (the caller compares).
	if err := s.PutIfAbsent(ctx, key, []byte("first")); !errors.Is(err, archive.ErrExists) {
		t.Errorf("PutIfAbsent(%q) with identical bytes: error = %v, want ErrExists", key, err)
	}
	// A key made with Put is present too.
	mustPut(t, ctx, s, "plain", []byte("p"))
	if err := s.PutIfAbsent(ctx, "plain", []byte("q")); !errors.Is(err, archive.ErrExists) {
		t.Errorf("PutIfAbsent(plain) after Put: error = %v, want ErrExists", err)
	}
	checkGet(t, ctx, s, "plain", []byte("p"))
}

// testPutIfAbsentRace: of concurrent PutIfAbsent calls for one key exactly
// one wins, and the object holds the winner's bytes.
func testPutIfAbsentRace(t *testing.T, ctx context.Context, s archive.Store) {
	const writers = 8
	for round := range 3 {
		key := fmt.Sprintf("manifests/race/%012d.json", round+1)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				errs[i] = s.PutIfAbsent(ctx, key, []byte(fmt.Sprintf("writer %d", i)))
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: PutIfAbsent succeeded for writers %d and %d", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, archive.ErrExists):
				t.Fatalf("round %d: PutIfAbsent for writer %d: error = %v, want nil or ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no PutIfAbsent succeeded", round)
		}
		checkGet(t, ctx, s, key, []byte(fmt.Sprintf("writer %d", winner)))
	}
}

func testStat(t *testing.T, ctx context.Context, s archive.Store) {
	before := time.Now().Add(-time.Hour)
	data := randomBytes(1234)
	mustPut(t, ctx, s, "stat/me", data)
	info, err := s.Stat(ctx, "stat/me")
	if err != nil {
		t.Fatalf("Stat(stat/me): %v", err)
	}
	if info.Key != "stat/me" || info.Size != 1234 {
		t.Errorf("Stat(stat/me) = %+v, want key stat/me, size 1234", info)
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Hour)) {
		t.Errorf("Stat(stat/me).ModTime = %v, want about now", info.ModTime)
	}
}

func keys(list []archive.ObjectInfo) []string {
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.Key
	}
	return out
}

// layout is a small archive: partitions, a dead letter, two chains.
var layout = []string{
	"deadletter/dt=2026-03-15/c1-000000000009-0a1b2c3d.jsonl.zst",
	"manifests/c1/000000000001.json",
	"manifests/c1/000000000002.json",
	"manifests/c1/000000000010.json",
	"manifests/c2/000000000001.json",
	"records/dt=2026-03-14/hour=23/sector=card/c2-000000000001-0a1b2c3d.jsonl.zst",
	"records/dt=2026-03-15/hour=09/sector=bank/c1-000000000001-0a1b2c3d.jsonl.zst",
	"records/dt=2026-03-15/hour=09/sector=bank/c1-000000000010-0a1b2c3d.jsonl.zst",
	"records/dt=2026-03-15/hour=09/sector=card/c1-000000000002-0a1b2c3d.jsonl.zst",
	"records/dt=2026-03-15/hour=10/sector=bank/c1-000000000003-0a1b2c3d.jsonl.zst",
}

func testList(t *testing.T, ctx context.Context, s archive.Store) {
	for i, k := range layout {
		mustPut(t, ctx, s, k, []byte(strings.Repeat("x", i)))
	}
	tests := []struct {
		prefix, after string
		want          []string
	}{
		{"", "", layout},
		{"records/", "", layout[5:]},
		{"records/dt=2026-03-15/", "", layout[6:]},
		{"records/dt=2026-03-15/hour=09/", "", layout[6:9]},
		{"records/dt=2026-03-15/hour=09/sector=bank/", "", layout[6:8]},
		{"records/dt=2026-03-1", "", layout[5:]}, // a prefix that ends mid-segment
		{"records/dt=2026-03-15/hour=09/sector=b", "", layout[6:8]},
		{"manifests/c1/", "", layout[1:4]},
		{"manifests/c1/", "manifests/c1/000000000001.json", layout[2:4]},
		{"manifests/c1/", "manifests/c1/000000000002.json", layout[3:4]},
		{"manifests/c1/", "manifests/c1/000000000010.json", nil},
		{"manifests/c1/", "manifests/c1/000000000005.json", layout[3:4]}, // startAfter need not exist
		{"manifests/", "manifests/c1/~", layout[4:5]},
		{"records/", "records/dt=2026-03-15/hour=09/sector=bank/c1-000000000001-0a1b2c3d.jsonl.zst", layout[7:]},
		{"records/", "records/dt=2026-03-15/hour=09/", layout[6:]},
		{"records/", "records/dt=2026-03-15/hour=09/sector=card/", layout[8:]},
		{"manifests/c3/", "", nil},
		{"manifest", "", layout[1:5]},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix, tt.after, 100)
		if err != nil {
			t.Errorf("List(%q, %q): %v", tt.prefix, tt.after, err)
			continue
		}
		if !slices.Equal(keys(got), tt.want) {
			t.Errorf("List(%q, %q) = %q, want %q", tt.prefix, tt.after, keys(got), tt.want)
		}
		for _, o := range got {
			if want := int64(slices.Index(layout, o.Key)); o.Size != want {
				t.Errorf("List(%q, %q): %s has size %d, want %d", tt.prefix, tt.after, o.Key, o.Size, want)
			}
		}
	}
}

func testListPaging(t *testing.T, ctx context.Context, s archive.Store) {
	var want []string
	for i := range 23 {
		k := fmt.Sprintf("manifests/paging/%012d.json", i+1)
		want = append(want, k)
	}
	for i := range 5 { // other keys around the prefix
		mustPut(t, ctx, s, fmt.Sprintf("manifests/pagin/%d", i), []byte("o"))
		mustPut(t, ctx, s, fmt.Sprintf("manifests/paging0/%d", i), []byte("o"))
	}
	// Write in a shuffled order: listing order must not depend on it.
	for _, i := range []int{7, 0, 22, 3, 15, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21} {
		mustPut(t, ctx, s, want[i], []byte("m"))
	}
	for _, limit := range []int{1, 5, 7, 23, 24, 1000} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > 30 {
				t.Fatalf("limit %d: more than 30 pages", limit)
			}
			page, err := s.List(ctx, "manifests/paging/", after, limit)
			if err != nil {
				t.Fatalf("List(limit %d, after %q): %v", limit, after, err)
			}
			if len(page) > limit {
				t.Fatalf("List(limit %d) returned %d objects", limit, len(page))
			}
			got = append(got, keys(page)...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].Key
		}
		if !slices.Equal(got, want) {
			t.Errorf("paging with limit %d gave %q, want %q", limit, got, want)
		}
	}
	var walked []string
	for o, err := range archive.Walk(ctx, s, "manifests/paging/", "") {
		if err != nil {
			t.Fatalf("Walk: %v", err)
		}
		walked = append(walked, o.Key)
	}
	if !slices.Equal(walked, want) {
		t.Errorf("Walk gave %q, want %q", walked, want)
	}
}

// testListOrder: keys come in byte order even where a directory walk would
// give another ("a-b" < "a/c" because '-' < '/', but "a" < "a-b").
func testListOrder(t *testing.T, ctx context.Context, s archive.Store) {
	want := []string{"o/a-b", "o/a.c", "o/a/c", "o/a/d/e", "o/a0", "o/aZ", "o/b"}
	for _, i := range []int{6, 2, 0, 4, 1, 3, 5} {
		mustPut(t, ctx, s, want[i], []byte("k"))
	}
	got, err := s.List(ctx, "o/", "", 100)
	if err != nil {
		t.Fatalf("List(o/): %v", err)
	}
	if !slices.Equal(keys(got), want) {
		t.Errorf("List(o/) = %q, want %q", keys(got), want)
	}
	for i := range want {
		page, err := s.List(ctx, "o/", want[i], 2)
		if err != nil {
			t.Fatalf("List(o/, %q): %v", want[i], err)
		}
		end := min(i+3, len(want))
		if !slices.Equal(keys(page), want[i+1:end]) {
			t.Errorf("List(o/, after %q, 2) = %q, want %q", want[i], keys(page), want[i+1:end])
		}
	}
}

func testKeyCharacters(t *testing.T, ctx context.Context, s archive.Store) {
	ks := []string{
		"records/dt=2026-03-15/hour=09/sector=bank/x=y=z.jsonl.zst",
		"uni/은행/거래내역 ü.json",
		"uni/日本/ファイル.txt",
		"sym/a+b c&d;e,f@g:h$i!j'k(l)m*n~o%20p",
		"sym/emoji-😀",
	}
	for i, k := range ks {
		mustPut(t, ctx, s, k, []byte(fmt.Sprintf("object %d", i)))
	}
	for i, k := range ks {
		checkGet(t, ctx, s, k, []byte(fmt.Sprintf("object %d", i)))
		if _, err := s.Stat(ctx, k); err != nil {
			t.Errorf("Stat(%q): %v", k, err)
		}
	}
	for _, prefix := range []string{"records/", "uni/", "sym/"} {
		got, err := s.List(ctx, prefix, "", 100)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		var want []string
		for _, k := range ks {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(keys(got), want) {
			t.Errorf("List(%q) = %q, want %q", prefix, keys(got), want)
		}
	}
	got, err := s.List(ctx, "uni/은", "", 100)
	if err != nil || len(got) != 1 || got[0].Key != ks[1] {
		t.Errorf("List(uni/은) = %q, %v; want [%q]", keys(got), err, ks[1])
	}
}

func testInvalidKeys(t *testing.T, ctx context.Context, s archive.Store) {
	for _, key := range []string{"", "/abs", "trailing/", "a//b", "../up", "a/../b", "a/./b", ".", "bad\x00nul", "back\\slash", ".tmp-x", "a/.tmp-y", strings.Repeat("k", archive.MaxKeyBytes+1)} {
		if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, archive.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if err := s.PutIfAbsent(ctx, key, []byte("x")); !errors.Is(err, archive.ErrInvalidKey) {
			t.Errorf("PutIfAbsent(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, archive.ErrInvalidKey) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, archive.ErrInvalidKey) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidKey", key, err)
		}
	}
	got, err := s.List(ctx, "", "", 10)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("after refused puts, List = %q, want nothing", keys(got))
	}
}

func testLargeObject(t *testing.T, ctx context.Context, s archive.Store) {
	data := randomBytes(LargeObjectBytes)
	mustPut(t, ctx, s, "large/object", data)
	checkGet(t, ctx, s, "large/object", data)
	info, err := s.Stat(ctx, "large/object")
	if err != nil {
		t.Fatalf("Stat(large/object): %v", err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Stat(large/object).Size = %d, want %d", info.Size, len(data))
	}
	if err := s.PutIfAbsent(ctx, "large/if-absent", data); err != nil {
		t.Fatalf("PutIfAbsent(large/if-absent): %v", err)
	}
	checkGet(t, ctx, s, "large/if-absent", data)
	if err := s.PutIfAbsent(ctx, "large/if-absent", data[:10]); !errors.Is(err, archive.ErrExists) {
		t.Errorf("PutIfAbsent(large/if-absent) again: error = %v, want ErrExists", err)
	}
}

// testConcurrentPuts: overwrites racing with reads never show a partial
// object.
func testConcurrentPuts(t *testing.T, ctx context.Context, s archive.Store) {
	versions := [][]byte{bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 300<<10)}
	mustPut(t, ctx, s, "race/key", versions[0])
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5 {
				if err := s.Put(ctx, "race/key", versions[(w+i)%2]); err != nil {
					t.Errorf("Put(race/key): %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			got, err := s.Get(ctx, "race/key")
			if err != nil {
				t.Errorf("Get(race/key) during overwrites: %v", err)
				return
			}
			if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
				t.Errorf("Get(race/key) during overwrites: %d bytes that are neither version", len(got))
				return
			}
		}
	})
	wg.Wait()
	list, err := s.List(ctx, "race/", "", 10)
	if err != nil {
		t.Fatalf("List(race/): %v", err)
	}
	if len(list) != 1 {
		t.Errorf("List(race/) = %q, want one object (no temporary files)", keys(list))
	}
}

func testContextCanceled(t *testing.T, ctx context.Context, s archive.Store) {
	mustPut(t, ctx, s, "present", []byte("x"))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: error = %v, want context.Canceled", op, err)
		}
	}
	check("Put", s.Put(canceled, "new", []byte("x")))
	check("PutIfAbsent", s.PutIfAbsent(canceled, "new2", []byte("x")))
	_, err := s.Get(canceled, "present")
	check("Get", err)
	_, err = s.Stat(canceled, "present")
	check("Stat", err)
	_, err = s.List(canceled, "", "", 10)
	check("List", err)
	for _, k := range []string{"new", "new2"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) after a canceled put: error = %v, want ErrNotFound", k, err)
		}
	}

	// A deadline that passes during a large upload.
	short, cancel2 := context.WithTimeout(ctx, time.Millisecond)
	defer cancel2()
	<-short.Done()
	if err := s.Put(short, "late", randomBytes(1<<20)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put with an expired deadline: error = %v, want context.DeadlineExceeded", err)
	}
}
