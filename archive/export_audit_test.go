package archive

// Exported for the tests of package archive_test.

var scanFieldNames = map[string]scanField{
	"id": fieldID, "time": fieldTime, "sector": fieldSector, "org_code": fieldOrg, "api": fieldAPI,
	"tran_id": fieldTranID, "subject": fieldSubject, "rsp_code": fieldRspCode, "status": fieldStatus,
}

// ScanForTest runs the query's record scanner for the named members
// (response.rsp_code and response.status as "rsp_code" and "status") and
// returns those it found, and the record time in Unix microseconds.
func ScanForTest(line []byte, names ...string) (map[string]string, int64, error) {
	var want scanField
	for _, n := range names {
		want |= scanFieldNames[n]
	}
	var s scanned
	if err := scanRecord(line, want, &s); err != nil {
		return nil, 0, err
	}
	out := map[string]string{}
	for n, f := range scanFieldNames {
		if want&f != 0 && s.has&f != 0 {
			out[n] = s.value(f)
		}
	}
	return out, s.timeUnix, nil
}

// ErrScanTime is the scanner's error for a time it cannot parse.
var ErrScanTime = errScanTime

func (s *scanned) value(f scanField) string {
	switch f {
	case fieldID:
		return s.id
	case fieldTime:
		return s.time
	case fieldSector:
		return s.sector
	case fieldOrg:
		return s.org
	case fieldAPI:
		return s.api
	case fieldTranID:
		return s.tranID
	case fieldSubject:
		return s.subject
	case fieldRspCode:
		return s.rspCode
	case fieldStatus:
		return s.status
	}
	return ""
}

// ParseRecordTimeForTest is parseRecordTime.
var ParseRecordTimeForTest = parseRecordTime

// QueryPrefixesForTest is queryPrefixes.
var QueryPrefixesForTest = queryPrefixes
