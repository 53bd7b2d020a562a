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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Scanner holds the values to look for, each in all its encodings.
type Scanner struct {
	values []string
	forms  [][][]byte // per value, its encodings
}

// New returns a scanner for values, leaving out those too short to mean
// anything when found: fewer than 2 characters of Hangul (a one-syllable
// family name occurs inside kept institution names), fewer than 6 ASCII.
func New(values []string) *Scanner {
	s := &Scanner{}
	seen := map[string]bool{}
	for _, v := range values {
		if seen[v] || !Significant(v) {
			continue
		}
		seen[v] = true
		s.values = append(s.values, v)
		var forms [][]byte
		for _, e := range Encodings(v) {
			forms = append(forms, []byte(e))
		}
		s.forms = append(s.forms, forms)
	}
	return s
}

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

// Find returns the indexes of the values found in data.
func (s *Scanner) Find(data []byte) []int {
	var found []int
	for i, forms := range s.forms {
		for _, f := range forms {
			if bytes.Contains(data, f) {
				found = append(found, i)
				break
			}
		}
	}
	return found
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
		if strings.HasSuffix(path, ".zst") {
			if plain, err := unzstd(data); err == nil {
				data = append(data, plain...)
			}
		}
		for _, i := range s.Find(data) {
			findings = append(findings, Finding{File: path, Value: prefix(s.values[i])})
		}
		return nil
	})
	return files, findings, err
}

func prefix(v string) string {
	r := []rune(v)
	if len(r) > 2 {
		r = r[:2]
	}
	return string(r) + "…"
}

func unzstd(data []byte) ([]byte, error) {
	d, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(data, nil)
}
