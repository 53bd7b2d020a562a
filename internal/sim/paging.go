package sim

import (
	"fmt"
	"strconv"
	"time"
)

// Page-size rules of SPEC §1.5.
const (
	// MaxLimit is the largest page size; a larger limit answers 42901
	// (HTTP 429), as KB Card's provider does.
	MaxLimit = 500
	// DefaultLimit is the page size when a request has no limit.
	DefaultLimit = 500
)

// nextPageLen is the length of a next_page key: a 14-digit timestamp of the
// last row sent (only to look like SPEC §7.3's example) and a 6-digit offset
// of the next row, which is all that is read back.
const nextPageLen = 20

type page struct {
	offset int
	limit  int
}

func parsePage(limit, nextPage string) (page, error) {
	p := page{limit: DefaultLimit}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n <= 0 {
			return page{}, errf(codeBadParam, "limit")
		}
		if n > MaxLimit {
			return page{}, errf(codeRateLimited, "limit above 500")
		}
		p.limit = n
	}
	if nextPage != "" {
		if len(nextPage) != nextPageLen || !allDigits(nextPage) {
			return page{}, errf(codeBadParam, "next_page")
		}
		p.offset, _ = strconv.Atoi(nextPage[nextPageLen-6:]) // digits checked above
	}
	return p, nil
}

// paginate returns one page of items and the key of the next, "" on the
// last page. stamp gives a row's 14-digit time for the key (nil: zeros).
func paginate[T any](items []T, p page, stamp func(T) string) ([]T, string) {
	if p.offset >= len(items) {
		return []T{}, ""
	}
	end := min(p.offset+p.limit, len(items))
	out := items[p.offset:end]
	if end == len(items) {
		return out, ""
	}
	ts := "00000000000000"
	if stamp != nil {
		if v := stamp(items[end-1]); len(v) == 14 {
			ts = v
		}
	}
	return out, fmt.Sprintf("%s%06d", ts, end)
}

// dateRange is an inclusive YYYYMMDD (or YYYYMM) window; empty bounds are
// open. Lexical comparison works because the formats are fixed-width.
type dateRange struct{ from, to string }

func (d dateRange) contains(v string) bool {
	if d.from != "" && v[:len(d.from)] < d.from {
		return false
	}
	if d.to != "" && v[:len(d.to)] > d.to {
		return false
	}
	return true
}

// parseDates checks from_date/to_date (YYYYMMDD, SPEC §1.5).
func parseDates(from, to string) (dateRange, error) {
	return parseRange(from, to, dateLayout, "from_date", "to_date")
}

// parseMonths checks from_month/to_month (YYYYMM).
func parseMonths(from, to string) (dateRange, error) {
	return parseRange(from, to, monthLayout, "from_month", "to_month")
}

func parseRange(from, to, layout, fromName, toName string) (dateRange, error) {
	for _, f := range []struct{ v, name string }{{from, fromName}, {to, toName}} {
		if f.v == "" {
			continue
		}
		if len(f.v) != len(layout) || !allDigits(f.v) {
			return dateRange{}, errf(codeBadParam, f.name)
		}
		if _, err := time.Parse(layout, f.v); err != nil {
			return dateRange{}, errf(codeBadParam, f.name)
		}
	}
	if from != "" && to != "" && from > to {
		return dateRange{}, errf(codeBadParam, fromName+" after "+toName)
	}
	return dateRange{from: from, to: to}, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
