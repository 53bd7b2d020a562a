package archive

import (
	"bytes"
	"errors"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// The audit filters on a handful of a record's top-level members (and on
// response.rsp_code), never on its payloads. Decoding a whole record to read
// them would cost most of a query's time: a record is mostly its bodies. The
// scanner here reads member names at the top level, picks out the string
// values it wants and skips everything else without decoding it — a string
// by looking for its closing quote, an object or array by counting brackets
// outside strings. It stops as soon as it holds every member it was asked
// for. It relies on what the archiver guarantees of a stored record (one
// valid JSON object, no duplicate member names: parseMeta checked both); on
// anything else it returns an error or a partial result, never panics.

// scanField names the members scanRecord can pick out.
type scanField uint16

const (
	fieldID scanField = 1 << iota
	fieldTime
	fieldSector
	fieldOrg
	fieldAPI
	fieldTranID
	fieldSubject
	fieldRspCode // response.rsp_code
	fieldStatus  // response.status (a number, kept as its text)
)

// scanned holds the members found, as their decoded string values. A member
// absent from the record is empty and its bit is not in has.
type scanned struct {
	has                                         scanField
	id, time, sector, org, api, tranID, subject string
	rspCode, status                             string
	hasResponse                                 bool
	timeUnix                                    int64 // time as Unix microseconds, when fieldTime is in has
}

var (
	errScanSyntax = errors.New("record is not a JSON object")
	errScanTime   = errors.New("record time is not RFC 3339")
)

// topField returns the field of a top-level member name, 0 for the others.
func topField(name []byte) scanField {
	switch string(name) { // no allocation: the compiler spots the conversion
	case "id":
		return fieldID
	case "time":
		return fieldTime
	case "sector":
		return fieldSector
	case "org_code":
		return fieldOrg
	case "api":
		return fieldAPI
	case "tran_id":
		return fieldTranID
	case "subject":
		return fieldSubject
	}
	return 0
}

// scanRecord picks the wanted members out of one record line. fieldTime
// also fills timeUnix.
func scanRecord(line []byte, want scanField, out *scanned) error {
	*out = scanned{}
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return errScanSyntax
	}
	i++
	wantTop := want &^ (fieldRspCode | fieldStatus)
	wantResp := want & (fieldRspCode | fieldStatus)
	for {
		i = skipWS(line, i)
		if i >= len(line) {
			return errScanSyntax
		}
		if line[i] == '}' {
			break
		}
		if line[i] == ',' {
			i = skipWS(line, i+1)
		}
		if i >= len(line) || line[i] != '"' {
			return errScanSyntax
		}
		nameStart := i
		end, esc := stringEnd(line, i)
		if end < 0 {
			return errScanSyntax
		}
		name := line[nameStart+1 : end]
		if esc { // a name spelt with escapes: rare, decode it
			n, ok := stringValue(line[nameStart:end+1], true)
			if !ok {
				return errScanSyntax
			}
			name = []byte(n)
		}
		i = skipWS(line, end+1)
		if i >= len(line) || line[i] != ':' {
			return errScanSyntax
		}
		i = skipWS(line, i+1)
		if i >= len(line) {
			return errScanSyntax
		}
		f := topField(name)
		switch {
		case f != 0 && want&f != 0 && line[i] == '"':
			vEnd, vEsc := stringEnd(line, i)
			if vEnd < 0 {
				return errScanSyntax
			}
			s, ok := stringValue(line[i:vEnd+1], vEsc)
			if !ok {
				return errScanSyntax
			}
			out.set(f, s)
			i = vEnd + 1
		case wantResp != 0 && string(name) == "response" && line[i] == '{':
			out.hasResponse = true
			n, err := scanResponse(line, i, wantResp, out)
			if err != nil {
				return err
			}
			i = n
		default:
			n := skipValue(line, i)
			if n < 0 {
				return errScanSyntax
			}
			i = n
		}
		if out.has&want == want {
			break // every member wanted is in hand; names are unique
		}
		if wantTop&^out.has == 0 && wantResp != 0 && out.hasResponse {
			break // the response was read: what it lacks, it lacks
		}
	}
	if want&fieldTime != 0 && out.has&fieldTime != 0 {
		t, ok := parseRecordTime(out.time)
		if !ok {
			return errScanTime
		}
		out.timeUnix = t
	}
	return nil
}

// scanResponse reads the response object at line[i] for rsp_code and status
// and returns the index after it.
func scanResponse(line []byte, i int, want scanField, out *scanned) (int, error) {
	i++ // '{'
	for {
		i = skipWS(line, i)
		if i >= len(line) {
			return -1, errScanSyntax
		}
		if line[i] == '}' {
			return i + 1, nil
		}
		if line[i] == ',' {
			i = skipWS(line, i+1)
		}
		if i >= len(line) || line[i] != '"' {
			return -1, errScanSyntax
		}
		end, esc := stringEnd(line, i)
		if end < 0 {
			return -1, errScanSyntax
		}
		name := line[i+1 : end]
		if esc {
			n, ok := stringValue(line[i:end+1], true)
			if !ok {
				return -1, errScanSyntax
			}
			name = []byte(n)
		}
		i = skipWS(line, end+1)
		if i >= len(line) || line[i] != ':' {
			return -1, errScanSyntax
		}
		i = skipWS(line, i+1)
		if i >= len(line) {
			return -1, errScanSyntax
		}
		switch {
		case want&fieldRspCode != 0 && string(name) == "rsp_code" && line[i] == '"':
			vEnd, vEsc := stringEnd(line, i)
			if vEnd < 0 {
				return -1, errScanSyntax
			}
			s, ok := stringValue(line[i:vEnd+1], vEsc)
			if !ok {
				return -1, errScanSyntax
			}
			out.set(fieldRspCode, s)
			i = vEnd + 1
		case want&fieldStatus != 0 && string(name) == "status":
			n := skipValue(line, i)
			if n < 0 {
				return -1, errScanSyntax
			}
			out.set(fieldStatus, string(line[i:n]))
			i = n
		default:
			n := skipValue(line, i)
			if n < 0 {
				return -1, errScanSyntax
			}
			i = n
		}
	}
}

func (s *scanned) set(f scanField, v string) {
	s.has |= f
	switch f {
	case fieldID:
		s.id = v
	case fieldTime:
		s.time = v
	case fieldSector:
		s.sector = v
	case fieldOrg:
		s.org = v
	case fieldAPI:
		s.api = v
	case fieldTranID:
		s.tranID = v
	case fieldSubject:
		s.subject = v
	case fieldRspCode:
		s.rspCode = v
	case fieldStatus:
		s.status = v
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index of the closing quote of the string starting at
// b[i] (a '"'), and whether the string holds an escape; -1 if it is not
// terminated.
func stringEnd(b []byte, i int) (int, bool) {
	esc := false
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1, esc
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if !esc && bytes.IndexByte(b[j:q], '\\') >= 0 {
			esc = true
		}
		if n%2 == 0 {
			return q, esc
		}
		j = q + 1
	}
}

// stringValue decodes a JSON string token (with its quotes).
func stringValue(tok []byte, esc bool) (string, bool) {
	if !esc {
		return string(tok[1 : len(tok)-1]), true
	}
	var s string
	if err := jsonv2.Unmarshal(tok, &s); err != nil {
		return "", false
	}
	return s, true
}

// skipValue returns the index just after the JSON value starting at b[i],
// or -1 when it does not end within b.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		if end < 0 {
			return -1
		}
		return end + 1
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _ := stringEnd(b, i)
				if end < 0 {
					return -1
				}
				i = end + 1
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	// A number or a literal: up to the next delimiter.
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if j == i {
				return -1
			}
			return j
		}
		j++
	}
	return -1
}

// parseRecordTime parses a record time to Unix microseconds. The canonical
// form (RFC 3339, UTC, six fractional digits: 2026-03-15T09:30:00.123456Z)
// is read directly; anything else through time.Parse.
func parseRecordTime(s string) (int64, bool) {
	if len(s) == 27 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':' && s[19] == '.' && s[26] == 'Z' {
		num := func(a, b int) (int, bool) {
			n := 0
			for k := a; k < b; k++ {
				c := s[k]
				if c < '0' || c > '9' {
					return 0, false
				}
				n = n*10 + int(c-'0')
			}
			return n, true
		}
		y, ok1 := num(0, 4)
		mo, ok2 := num(5, 7)
		d, ok3 := num(8, 10)
		h, ok4 := num(11, 13)
		mi, ok5 := num(14, 16)
		se, ok6 := num(17, 19)
		us, ok7 := num(20, 26)
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && se < 60 {
			t := time.Date(y, time.Month(mo), d, h, mi, se, us*1000, time.UTC)
			if t.Day() == d { // not 31 February
				return t.UnixMicro(), true
			}
		}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return 0, false
	}
	return t.UnixMicro(), true
}
