package leakcheck

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestFindsEveryEncoding(t *testing.T) {
	s := New([]string{"홍길동", "99900012345678", "김", "abc"})
	if s.Len() != 2 {
		t.Fatalf("scanner keeps %d values, want 2 (short ones left out)", s.Len())
	}
	for _, enc := range Encodings("홍길동") {
		if got := s.Find([]byte(`{"x":"` + enc + `"}`)); len(got) != 1 {
			t.Errorf("encoding %q not found", enc)
		}
	}
	if got := s.Find([]byte("nothing here")); len(got) != 0 {
		t.Fatalf("found %v in clean data", got)
	}
}

func TestScanDirReadsCompressedObjects(t *testing.T) {
	dir := t.TempDir()
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(dir, "a.jsonl.zst"), enc.EncodeAll([]byte(`{"account_num":"99900012345678"}`), nil), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "b.json"), []byte(`{"ok":true}`), 0o644)
	files, findings, err := New([]string{"99900012345678"}).ScanDir(dir)
	if err != nil || files != 2 || len(findings) != 1 || findings[0].Value != "99…" {
		t.Fatalf("files %d findings %+v err %v", files, findings, err)
	}
}

// Many values, several in one buffer, overlapping prefixes: each found once,
// in order.
func TestFindManyValues(t *testing.T) {
	values := []string{"홍길동", "1234567890", "abc", "토큰-시크릿", "secret-token-0001", "secret-token-0002"}
	s := New(values)
	data := []byte(`{"a":"` + Encodings("홍길동")[6] + `","b":"MTIzNDU2Nzg5MA==","c":"abc","d":"` +
		Encodings("토큰-시크릿")[1] + `","e":"secret-token-0002"}`)
	got := s.Find(data)
	if want := []int{0, 1, 2, 4}; len(got) != len(want) || got[0] != 0 || got[1] != 1 || got[2] != 2 || got[3] != 4 {
		t.Fatalf("Find = %v, want %v (abc is too short to keep)", got, want)
	}
	if s.Forms() == 0 || s.Len() != 5 {
		t.Fatalf("Len %d Forms %d", s.Len(), s.Forms())
	}
}
