package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/archivetest"
)

// What the archive reads back — manifests, objects, access-log entries —
// is outside input to a verifier: someone with write access to the bucket
// may have put anything there. Seeds in testdata/fuzz/<Target>/ were
// written by the archiver and the access logs themselves.

// FuzzParseManifest: a manifest that parses encodes to bytes that parse to
// the same manifest (a fixed point after one round: times are cut to
// microseconds).
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"v":1,"chain":"c","seq":1,"prev":"","kind":"records","object":"o","bytes":1,"sha256":"","encoding":"jsonl+zstd","raw_bytes":1,"records":1,"chain_records":1,"stream_seq":{"min":1,"max":1},"time":{"min":"2026-03-15T09:30:00.1234567Z","max":"2026-03-15T09:30:00Z"},"sectors":["bank"],"orgs":["_"],"subjects":[],"created":"2026-03-15T09:30:00Z","writer":"w"}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := archive.ParseManifest(data)
		if err != nil {
			return
		}
		if m.V != archive.ManifestVersion {
			t.Fatalf("accepted version %d", m.V)
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("encode a parsed manifest: %v", err)
		}
		back, err := archive.ParseManifest(enc)
		if err != nil {
			t.Fatalf("parse an encoded manifest: %v", err)
		}
		again, _ := json.Marshal(back)
		if !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not a fixed point:\n%s\n%s", enc, again)
		}
		if back.Chain != m.Chain || back.Seq != m.Seq || back.Prev != m.Prev || back.Object != m.Object || back.SHA256 != m.SHA256 {
			t.Fatalf("chain fields changed: %+v → %+v", m, back)
		}
	})
}

// FuzzVerifyChain puts arbitrary bytes in place of one manifest of a real
// chain: VerifyChain runs (the store works, so no error) and finds the chain
// intact exactly when the bytes are the original ones — any other bytes,
// however well-formed, break a prev link or the head.
func FuzzVerifyChain(f *testing.F) {
	base, heads, n := realChain(f)
	var genuine [][]byte
	for seq := uint64(1); seq <= n; seq++ {
		genuine = append(genuine, base.objs[archive.ManifestKey(testChain, seq)])
		f.Add(uint8(seq-1), genuine[seq-1])
	}
	f.Add(uint8(1), bytes.Replace(genuine[1], []byte(`"records":1`), []byte(`"records":2`), 1))
	f.Add(uint8(2), []byte("{}"))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		i := uint64(which) % n
		s := base.clone()
		s.objs[archive.ManifestKey(testChain, i+1)] = data
		r, err := archive.VerifyChain(ctx, s, heads, testChain)
		if err != nil {
			t.Fatalf("VerifyChain: %v", err)
		}
		if want := bytes.Equal(data, genuine[i]); r.OK() != want {
			t.Fatalf("manifest %d replaced (original: %v): report OK %v, problems %v", i+1, want, r.OK(), r.Problems)
		}
		if r.LastSeq != n {
			t.Fatalf("last seq %d, want %d", r.LastSeq, n)
		}
	})
}

// realChain runs the archiver over four records of two sectors in batches
// of two (an object per partition, so four manifests) and returns what it
// stored, in memory, its head store and the chain's length.
func realChain(tb testing.TB) (*memStore, *archivetest.Heads, uint64) {
	e := newEnv(tb)
	e.src.Publish(archivetest.Records(4, t0, 600, []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard}, []string{"TESTBK0001"}, []string{archivetest.Subject(1)})...)
	o := e.options()
	o.BatchMaxRecords = 2
	o.Logger = zerolog.Nop()
	e.run(e.archiver(o), e.ackedAll(4))
	ctx := context.Background()
	s := &memStore{objs: map[string][]byte{}}
	for obj, err := range archive.Walk(ctx, e.fs, "", "") {
		if err != nil {
			tb.Fatal(err)
		}
		data, err := e.fs.Get(ctx, obj.Key)
		if err != nil {
			tb.Fatal(err)
		}
		s.objs[obj.Key] = data
	}
	r, err := archive.VerifyChain(ctx, s, e.heads, testChain)
	if err != nil || !r.OK() || r.LastSeq < 2 {
		tb.Fatalf("the real chain does not verify: %+v, %v", r, err)
	}
	return s, e.heads, r.LastSeq
}

// FuzzDecodeObject: an object that decodes splits into lines without
// newlines, which encode to an object that decodes to the same lines.
func FuzzDecodeObject(f *testing.F) {
	obj, err := archive.EncodeObject([][]byte{[]byte(`{"id":"a"}`), []byte(`{"id":"b"}`)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(obj)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// A few KiB of zstd can claim a GiB (the reader's cap); a fuzzer's
		// memory is better spent on the frame parser than on RLE.
		if len(data) > 2<<10 {
			return
		}
		lines, err := archive.DecodeObject(data)
		if err != nil {
			return
		}
		for i, l := range lines {
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line %d holds a newline", i)
			}
		}
		again, err := archive.EncodeObject(lines)
		if err != nil {
			t.Fatalf("EncodeObject: %v", err)
		}
		back, err := archive.DecodeObject(again)
		if err != nil || !slices.EqualFunc(back, lines, bytes.Equal) {
			t.Fatalf("re-encoded object decodes to %d lines (%v), want %d", len(back), err, len(lines))
		}
	})
}

// FuzzVerifyAccessLog: the local access log's verifier counts every entry
// of a log it accepts, accepts it with one more entry chained the way
// FileAccessLog.Append chains it, and refuses it without its first entry.
func FuzzVerifyAccessLog(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"01JQ3V7ZC8M4W5X6Y7Z8A9B0CD","time":"2026-03-15T09:30:00.000000Z","event":"start","actor":"auditor","command":"reveal","decrypt":true,"prev":""}` + "\n"))
	f.Add([]byte("\n \r\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := archive.VerifyAccessLog(bytes.NewReader(data))
		var lines [][]byte
		for l := range bytes.SplitSeq(data, []byte("\n")) {
			if l = bytes.TrimSpace(l); len(l) > 0 {
				lines = append(lines, l)
			}
		}
		if n > len(lines) || n < 0 {
			t.Fatalf("%d entries counted in %d lines", n, len(lines))
		}
		if err != nil {
			return
		}
		if n != len(lines) {
			t.Fatalf("accepted with %d entries counted of %d lines", n, len(lines))
		}
		prev := ""
		if len(lines) > 0 {
			sum := sha256.Sum256(lines[len(lines)-1])
			prev = hex.EncodeToString(sum[:])
		}
		next, _ := json.Marshal(mdtap.AccessEntry{V: 1, ID: "01JQ3V7ZC8M4W5X6Y7Z8A9B0CD", Event: mdtap.AccessComplete, Actor: "auditor", Command: "reveal", Prev: prev})
		longer := append(append(append(bytes.Clone(data), '\n'), next...), '\n')
		if m, err := archive.VerifyAccessLog(bytes.NewReader(longer)); err != nil || m != n+1 {
			t.Fatalf("log with one entry appended: %d entries, %v; want %d", m, err, n+1)
		}
		if n >= 2 {
			rest := bytes.Join(lines[1:], []byte("\n"))
			if _, err := archive.VerifyAccessLog(bytes.NewReader(rest)); err == nil {
				t.Fatal("log without its first entry verifies")
			}
		}
	})
}

// FuzzVerifyAccessLogStore puts arbitrary bytes in place of one entry of a
// real three-entry access log in a store: the verifier runs and finds the
// log intact exactly when the bytes are the original entry.
func FuzzVerifyAccessLogStore(f *testing.F) {
	ctx := context.Background()
	s := &memStore{objs: map[string][]byte{}}
	heads := archivetest.NewHeads()
	log := archive.NewStoreAccessLog(s, heads, zerolog.Nop())
	for i, ev := range []string{mdtap.AccessStart, mdtap.AccessComplete, mdtap.AccessStart} {
		e := mdtap.AccessEntry{ID: fmt.Sprintf("01JQ3V7ZC8M4W5X6Y7Z8A9B0C%d", i/2), Time: mdtap.Timestamp{Time: t0.Add(time.Duration(i) * time.Second)},
			Event: ev, Actor: "auditor@example.test", Reason: "민원 확인 (test)", Command: "audit query",
			Filter: map[string]string{"subject": archivetest.Subject(1), "org": "TESTBK0001"}, Decrypt: true}
		if ev == mdtap.AccessComplete {
			e.Records, e.Revealed, e.KeyIDs = 2, 7, []uint32{1001}
		}
		if _, err := log.Append(ctx, e); err != nil {
			f.Fatal(err)
		}
	}
	var genuine [][]byte
	for seq := uint64(1); seq <= 3; seq++ {
		genuine = append(genuine, s.objs[archive.AccessLogKey(seq)])
		f.Add(uint8(seq-1), genuine[seq-1])
	}
	if r, err := archive.VerifyAccessLogStore(ctx, s, heads); err != nil || !r.OK() || r.LastSeq != 3 {
		f.Fatalf("the real access log does not verify: %+v, %v", r, err)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		i := int(which) % 3
		c := s.clone()
		c.objs[archive.AccessLogKey(uint64(i+1))] = data
		r, err := archive.VerifyAccessLogStore(ctx, c, heads)
		if err != nil {
			t.Fatalf("VerifyAccessLogStore: %v", err)
		}
		// An entry's hash leaves out its final newline (AccessEntryHash),
		// so the entry without it is the same entry.
		nl := []byte("\n")
		if want := bytes.Equal(bytes.TrimSuffix(data, nl), bytes.TrimSuffix(genuine[i], nl)); r.OK() != want || r.Entries != 3 {
			t.Fatalf("entry %d replaced (original: %v): OK %v, %d entries, problems %v", i+1, want, r.OK(), r.Entries, r.Problems)
		}
	})
}

// memStore is an archive.Store in memory, so that a fuzz body can verify a
// whole chain thousands of times a second.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

var _ archive.Store = (*memStore)(nil)

func (s *memStore) clone() *memStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &memStore{objs: maps.Clone(s.objs)}
}

func (s *memStore) Put(_ context.Context, key string, data []byte) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[key] = bytes.Clone(data)
	return nil
}

func (s *memStore) PutIfAbsent(_ context.Context, key string, data []byte) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; ok {
		return archive.ErrExists
	}
	s.objs[key] = bytes.Clone(data)
	return nil
}

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.objs[key]
	if !ok {
		return nil, archive.ErrNotFound
	}
	return bytes.Clone(data), nil
}

func (s *memStore) Stat(_ context.Context, key string) (archive.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.objs[key]
	if !ok {
		return archive.ObjectInfo{}, archive.ErrNotFound
	}
	return archive.ObjectInfo{Key: key, Size: int64(len(data))}, nil
}

func (s *memStore) List(_ context.Context, prefix, startAfter string, limit int) ([]archive.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []archive.ObjectInfo
	for _, k := range slices.Sorted(maps.Keys(s.objs)) {
		if strings.HasPrefix(k, prefix) && k > startAfter && len(out) < limit {
			out = append(out, archive.ObjectInfo{Key: k, Size: int64(len(s.objs[k]))})
		}
	}
	return out, nil
}
