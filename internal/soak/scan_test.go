package soak

import (
	"bytes"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/mdtap/mdtap/internal/leakcheck"
)

// leakScan looks for the simulator's sensitive values in files, in every
// encoding leakcheck knows (raw, JSON \u escapes, URL escapes, base64). A
// soak run issues thousands of tokens and writes tens of megabytes, which
// leakcheck.Scanner's one-pass-per-encoding search cannot cover in
// reasonable time; this matcher makes one pass per file, looking each
// position's first bytes up in a table of all the encodings.
type leakScan struct {
	values   []string
	patterns int
	k        int               // bytes of the lookup key: the shortest encoding, at most 8
	table    map[string][]form // first k bytes → encodings starting so
}

type form struct {
	b     []byte
	value int
}

func newLeakScan(values []string) *leakScan {
	s := &leakScan{k: 8, table: map[string][]form{}}
	seen := map[string]bool{}
	var forms []form
	for _, v := range values {
		if seen[v] || !leakcheck.Significant(v) {
			continue
		}
		seen[v] = true
		for _, e := range leakcheck.Encodings(v) {
			forms = append(forms, form{b: []byte(e), value: len(s.values)})
			s.k = min(s.k, len(e))
		}
		s.values = append(s.values, v)
	}
	s.patterns = len(forms)
	for _, f := range forms {
		key := string(f.b[:s.k])
		s.table[key] = append(s.table[key], f)
	}
	return s
}

// find returns the indexes of the values found in data.
func (s *leakScan) find(data []byte) map[int]bool {
	found := map[int]bool{}
	if s.k == 0 {
		return found
	}
	for i := 0; i+s.k <= len(data); i++ {
		fs, ok := s.table[string(data[i:i+s.k])]
		if !ok {
			continue
		}
		for _, f := range fs {
			if bytes.HasPrefix(data[i:], f.b) {
				found[f.value] = true
			}
		}
	}
	return found
}

// finding is a value found in a file; only a prefix of the value is kept,
// so a report of leaks does not repeat them.
type finding struct {
	file, value string
}

// scanDirs reads every regular file under dirs (zstd files also
// decompressed) and reports each value found in each file.
func (s *leakScan) scanDirs(dirs ...string) (files int, size int64, findings []finding, err error) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return 0, 0, nil, err
	}
	defer dec.Close()
	for _, dir := range dirs {
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			size += int64(len(data))
			if strings.HasSuffix(path, ".zst") {
				if plain, err := dec.DecodeAll(data, nil); err == nil {
					data = append(data, plain...)
				}
			}
			for i := range s.find(data) {
				r := []rune(s.values[i])
				findings = append(findings, finding{file: path, value: string(r[:min(2, len(r))]) + "…"})
			}
			return nil
		})
		if err != nil {
			return files, size, findings, err
		}
	}
	return files, size, findings, nil
}

// The soak's one-pass matcher finds what leakcheck.Scanner finds.
func TestLeakScanMatchesLeakcheck(t *testing.T) {
	values := []string{"홍길동", "1234567890", "abc", "토큰-시크릿", "secret-token-0001"}
	jsonEscaped := leakcheck.Encodings("홍길동")[6] // \uXXXX form
	data := []byte(`{"a":"` + jsonEscaped + `","b":"MTIzNDU2Nzg5MA==","c":"abc","d":"` + url.QueryEscape("토큰-시크릿") + `"}`)
	want := leakcheck.New(values).Find(data)
	got := newLeakScan(values).find(data)
	if len(got) != len(want) || len(want) != 3 {
		t.Fatalf("found %v, leakcheck found %v (want 3)", got, want)
	}
}
