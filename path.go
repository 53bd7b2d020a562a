package mdtap

import (
	"strconv"
	"strings"
)

// A value's path names where it sits in a record, from the record's root:
//
//	request.body.account_list[3].account_num
//	request.query.refresh_token[0]
//	request.headers.authorization[0]
//	request.path_params.card_id
//	response.body
//
// A name made only of ASCII letters, digits, '_' and '-' (not starting with a
// digit or '-') follows a dot; any other name is written as a JSON string in
// brackets (["a.b"]), so every path reads back unambiguously. Paths are part of
// an encrypt value's associated data: changing how they are spelled would make
// every existing ciphertext undecryptable, so this notation is fixed for v1.

// PathField appends the member name to a path.
func PathField(parent, name string) string {
	if plainName(name) {
		if parent == "" {
			return name
		}
		return parent + "." + name
	}
	return parent + "[" + strconv.Quote(name) + "]"
}

// PathIndex appends an array index to a path.
func PathIndex(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// PathWildcard rewrites every array index of a path as [*], the form policy
// rules and the unclassified-field list use.
func PathWildcard(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '"' { // copy a quoted name untouched
			j := i + 1
			for j < len(path) && path[j] != '"' {
				if path[j] == '\\' {
					j++
				}
				j++
			}
			b.WriteString(path[i:min(j+1, len(path))])
			i = j
			continue
		}
		if c == '[' && i+1 < len(path) && path[i+1] >= '0' && path[i+1] <= '9' {
			j := i + 1
			for j < len(path) && path[j] >= '0' && path[j] <= '9' {
				j++
			}
			if j < len(path) && path[j] == ']' {
				b.WriteString("[*]")
				i = j
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func plainName(name string) bool {
	if name == "" {
		return false
	}
	if c := name[0]; (c >= '0' && c <= '9') || c == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
