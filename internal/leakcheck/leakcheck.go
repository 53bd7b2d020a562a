// Package leakcheck looks for known plaintext values in bytes and files, in
// every encoding a value could hide in: raw, JSON \u escapes, URL escapes and
// base64. The demo's self-check, the redaction property tests and the soak
// test use it with the simulator's sensitive values.
package leakcheck

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Scanner holds the values to look for, each in all its encodings. It
// makes one pass over the data however many values it holds (a soak run
// looks for ~100k encoded forms): each position's first bytes are looked up
// in a table of every encoding.
type Scanner struct {
	values []string
	forms  int
	k      int               // bytes of the lookup key: the shortest encoding, at most 8
	table  map[string][]form // first k bytes → the encodings starting so
}

type form struct {
	b     []byte
	value int
}

// New returns a scanner for values, leaving out those too short to mean
// anything when found: fewer than 2 characters of Hangul (a one-syllable
// family name occurs inside kept institution names), fewer than 6 ASCII.
func New(values []string) *Scanner {
	s := &Scanner{k: 8, table: map[string][]form{}}
	seen := map[string]bool{}
	var forms []form
	for _, v := range values {
		if seen[v] || !Significant(v) {
			continue
		}
		seen[v] = true
		for _, e := range Encodings(v) {
			forms = append(forms, form{b: []byte(e), value: len(s.values)})
			s.k = min(s.k, len(e))
		}
		s.values = append(s.values, v)
	}
	s.forms = len(forms)
	for _, f := range forms {
		key := string(f.b[:s.k])
		s.table[key] = append(s.table[key], f)
	}
	return s
}

// Forms reports how many encoded forms the scanner looks for.
func (s *Scanner) Forms() int { return s.forms }

// Len reports how many values the scanner looks for.
func (s *Scanner) Len() int { return len(s.values) }

// Significant reports whether finding v means something.
func Significant(v string) bool {
	if n := utf8.RuneCountInString(v); n != len(v) {
		return n >= 2
	}
	return len(v) >= 6
}

// Encodings lists the ways a value could appear in a record or file.
func Encodings(v string) []string {
	var esc strings.Builder
	for _, r := range v {
		if r < 0x80 {
			esc.WriteRune(r)
		} else {
			fmt.Fprintf(&esc, `\u%04x`, r)
		}
	}
	out := []string{v, url.QueryEscape(v), url.PathEscape(v),
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v))}
	if esc.String() != v {
		out = append(out, esc.String(), strings.ToUpper(esc.String()))
	}
	return out
}

// Find returns the indexes of the values found in data, in increasing order.
func (s *Scanner) Find(data []byte) []int {
	if len(s.values) == 0 {
		return nil
	}
	found := map[int]bool{}
	for i := 0; i+s.k <= len(data); i++ {
		for _, f := range s.table[string(data[i:i+s.k])] {
			if bytes.HasPrefix(data[i:], f.b) {
				found[f.value] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(found))
}

// Finding is a value found in a file; Value is only a short prefix, so a
// report of leaks does not repeat them.
type Finding struct {
	File  string
	Value string
}

// ScanDir reads every regular file under dir (zstd files decompressed) and
// reports each value found in each file.
func (s *Scanner) ScanDir(dir string) (files int, findings []Finding, err error) {
	files, _, findings, err = s.ScanDirs(dir)
	return files, findings, err
}

// ScanDirs is ScanDir over several directories; it also reports the bytes
// read (before decompression).
func (s *Scanner) ScanDirs(dirs ...string) (files int, size int64, findings []Finding, err error) {
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
			for _, i := range s.Find(data) {
				findings = append(findings, Finding{File: path, Value: prefix(s.values[i])})
			}
			return nil
		})
		if err != nil {
			return files, size, findings, err
		}
	}
	return files, size, findings, nil
}

func prefix(v string) string {
	r := []rune(v)
	if len(r) > 2 {
		r = r[:2]
	}
	return string(r) + "…"
}
