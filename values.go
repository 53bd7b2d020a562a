package mdtap

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// ParseValues parses a URL query or a form body the way records hold them:
// leniently, so nothing is lost. A name or value whose %-escapes are broken
// is kept as written; a name that would not be UTF-8 once unescaped stays
// escaped (a JSON object key cannot hold such bytes). It reports false only
// for input that is not UTF-8 text.
func ParseValues(s string) (map[string][]string, bool) {
	if !utf8.ValidString(s) {
		return nil, false
	}
	vals := map[string][]string{}
	for s != "" {
		var part string
		part, s, _ = strings.Cut(s, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		name := unescape(k)
		if !utf8.ValidString(name) {
			name = k
		}
		vals[name] = append(vals[name], unescape(v))
	}
	return vals, true
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// ParseQuery parses a raw URL query into a record's query field. A query that
// is not UTF-8 is kept whole under the empty name, to be protected as one value.
func ParseQuery(raw string) map[string][]string {
	vals, ok := ParseValues(raw)
	if !ok {
		return map[string][]string{"": {raw}}
	}
	if len(vals) == 0 {
		return nil
	}
	return vals
}
