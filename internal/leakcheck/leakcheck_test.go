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
