package mdtap

import "strings"

// SubjectPrefix is the prefix of every record subject; a JetStream stream for
// records captures SubjectPrefix + ">".
const SubjectPrefix = "mdtap.records."

// StreamSubjects is the subject filter of the records stream.
const StreamSubjects = SubjectPrefix + ">"

// RecordSubject is the NATS subject a record is published on:
// mdtap.records.<sector>.<org_code>, with "_" for an unknown org and every
// character outside [A-Za-z0-9_-] replaced by "_", so a hostile org code can
// never add a token or a wildcard to the subject.
func RecordSubject(sector Sector, orgCode string) string {
	if !sector.Valid() || sector == "" {
		sector = SectorUnknown
	}
	return SubjectPrefix + SubjectToken(string(sector)) + "." + SubjectToken(orgCode)
}

// SubjectToken makes s safe as one NATS subject token.
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s { // one "_" per character, not per byte
		if r < 0x80 && tokenByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
