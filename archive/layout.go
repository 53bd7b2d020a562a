package archive

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mdtap/mdtap"
)

// The key layout (docs/archive.md), relative to the store's root:
//
//	records/dt=YYYY-MM-DD/hour=HH/sector=S/<chain>-<seq:012d>-<writer>.jsonl.zst
//	deadletter/dt=YYYY-MM-DD/<chain>-<seq:012d>-<writer>.jsonl.zst
//	manifests/<chain>/<seq:012d>.json
//
// A records object holds the records of one hour (of the record's time, UTC)
// and one sector, so a query by time and sector lists only the partitions
// that can match. Its name carries the chain and sequence of its manifest,
// which holds the rest of what a query filters on (orgs, subjects, exact
// times). The writer part is random per archiver process: two processes that
// (wrongly) share a chain id, or a restarted one, never write the same key,
// so an object is never overwritten by different data.
const (
	RecordsDir    = "records"
	DeadLetterDir = "deadletter"
	ManifestsDir  = "manifests"

	ObjectExt   = ".jsonl.zst"
	ManifestExt = ".json"

	seqDigits = 12
	writerLen = 8 // hex characters
)

// Kinds of object.
const (
	KindRecords    = "records"
	KindDeadLetter = "deadletter"
)

// MaxChainLen bounds a chain id's length.
const MaxChainLen = 128

// ValidChain checks a chain id: 1 to MaxChainLen characters of letters,
// digits, '.', '_' and '-', starting with a letter or digit. The id is one
// key segment and part of every object name.
func ValidChain(chain string) error {
	if chain == "" || len(chain) > MaxChainLen {
		return fmt.Errorf("chain id %q: want 1 to %d characters", chain, MaxChainLen)
	}
	for i := 0; i < len(chain); i++ {
		c := chain[i]
		if !chainByte(c) || i == 0 && (c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("chain id %q: want letters, digits, '.', '_' and '-', starting with a letter or digit", chain)
		}
	}
	return nil
}

func chainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ChainID builds the default chain id of an archiver, "<consumer>.<host>",
// with every character ValidChain refuses replaced by '_' and the result cut
// to MaxChainLen: it stays the same across restarts on one host.
func ChainID(consumer, host string) string {
	raw := consumer + "." + host
	var b strings.Builder
	for i := 0; i < len(raw) && b.Len() < MaxChainLen; i++ {
		c := raw[i]
		if !chainByte(c) {
			c = '_'
		}
		if b.Len() == 0 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b.WriteByte('x')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Partition is the hour and sector of a records object.
type Partition struct {
	Hour   time.Time // UTC, truncated to the hour
	Sector mdtap.Sector
}

// PartitionOf returns the partition of a record of time t and sector s.
func PartitionOf(t time.Time, s mdtap.Sector) Partition {
	return Partition{Hour: t.UTC().Truncate(time.Hour), Sector: s}
}

// Prefix returns the partition's key prefix,
// "records/dt=YYYY-MM-DD/hour=HH/sector=S/".
func (p Partition) Prefix() string {
	return HourPrefix(p.Hour) + "sector=" + string(p.Sector) + "/"
}

// HourPrefix returns the key prefix of every records object of the hour of t
// (UTC), whatever the sector: "records/dt=YYYY-MM-DD/hour=HH/".
func HourPrefix(t time.Time) string {
	t = t.UTC()
	return RecordsDir + "/dt=" + t.Format("2006-01-02") + "/hour=" + t.Format("15") + "/"
}

// PartitionPrefixes returns the key prefixes a query for records with
// from <= time < to can match: one per hour, or one per hour and sector when
// sectors is not empty. A reader lists only these.
func PartitionPrefixes(from, to time.Time, sectors []mdtap.Sector) []string {
	var out []string
	for h := from.UTC().Truncate(time.Hour); h.Before(to); h = h.Add(time.Hour) {
		if len(sectors) == 0 {
			out = append(out, HourPrefix(h))
			continue
		}
		for _, s := range sectors {
			out = append(out, Partition{Hour: h, Sector: s}.Prefix())
		}
	}
	return out
}

// ObjectKey is the parsed name of a records or dead-letter object.
type ObjectKey struct {
	Kind      string    // KindRecords or KindDeadLetter
	Partition Partition // records objects
	Day       time.Time // dead-letter objects: the day they were written, UTC
	Chain     string
	Seq       uint64
	Writer    string
}

// String returns the object's key.
func (k ObjectKey) String() string {
	name := fmt.Sprintf("%s-%0*d-%s%s", k.Chain, seqDigits, k.Seq, k.Writer, ObjectExt)
	if k.Kind == KindDeadLetter {
		return DeadLetterDir + "/dt=" + k.Day.UTC().Format("2006-01-02") + "/" + name
	}
	return k.Partition.Prefix() + name
}

// Manifest returns the key of the object's manifest.
func (k ObjectKey) Manifest() string { return ManifestKey(k.Chain, k.Seq) }

// ParseObjectKey parses the key of a records or dead-letter object.
func ParseObjectKey(key string) (ObjectKey, error) {
	bad := func(why string) (ObjectKey, error) {
		return ObjectKey{}, fmt.Errorf("object key %q: %s", key, why)
	}
	parts := strings.Split(key, "/")
	var k ObjectKey
	switch {
	case len(parts) == 5 && parts[0] == RecordsDir:
		day, ok1 := strings.CutPrefix(parts[1], "dt=")
		hour, ok2 := strings.CutPrefix(parts[2], "hour=")
		sector, ok3 := strings.CutPrefix(parts[3], "sector=")
		if !ok1 || !ok2 || !ok3 {
			return bad("want records/dt=…/hour=…/sector=…/NAME")
		}
		t, err := time.Parse("2006-01-02T15", day+"T"+hour)
		if err != nil || len(hour) != 2 {
			return bad("bad dt or hour")
		}
		if !mdtap.Sector(sector).Valid() {
			return bad("unknown sector")
		}
		k.Kind, k.Partition = KindRecords, Partition{Hour: t, Sector: mdtap.Sector(sector)}
	case len(parts) == 3 && parts[0] == DeadLetterDir:
		day, ok := strings.CutPrefix(parts[1], "dt=")
		t, err := time.Parse("2006-01-02", day)
		if !ok || err != nil {
			return bad("want deadletter/dt=YYYY-MM-DD/NAME")
		}
		k.Kind, k.Day = KindDeadLetter, t
	default:
		return bad("not under records/ or deadletter/")
	}
	name, ok := strings.CutSuffix(parts[len(parts)-1], ObjectExt)
	// <chain>-<seq>-<writer>: parsed from the end, since chains hold '-'.
	if !ok || len(name) < 1+1+seqDigits+1+writerLen {
		return bad("want NAME <chain>-<seq>-<writer>" + ObjectExt)
	}
	w := name[len(name)-writerLen:]
	seqStr := name[len(name)-writerLen-1-seqDigits : len(name)-writerLen-1]
	chain := name[:len(name)-writerLen-1-seqDigits-1]
	if name[len(name)-writerLen-1] != '-' || name[len(chain)] != '-' || !isHex(w) {
		return bad("want NAME <chain>-<seq>-<writer>" + ObjectExt)
	}
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil || seq == 0 {
		return bad("bad sequence")
	}
	if err := ValidChain(chain); err != nil {
		return bad(err.Error())
	}
	k.Chain, k.Seq, k.Writer = chain, seq, w
	return k, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ChainPrefix returns the key prefix of a chain's manifests; listing it
// gives them in chain order.
func ChainPrefix(chain string) string { return ManifestsDir + "/" + chain + "/" }

// ManifestKey returns the key of a chain's manifest number seq.
func ManifestKey(chain string, seq uint64) string {
	return fmt.Sprintf("%s%0*d%s", ChainPrefix(chain), seqDigits, seq, ManifestExt)
}

// ParseManifestKey returns the chain and sequence of a manifest key.
func ParseManifestKey(key string) (chain string, seq uint64, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 || parts[0] != ManifestsDir {
		return "", 0, fmt.Errorf("manifest key %q: want %s/<chain>/<seq>%s", key, ManifestsDir, ManifestExt)
	}
	num, ok := strings.CutSuffix(parts[2], ManifestExt)
	if !ok || len(num) != seqDigits {
		return "", 0, fmt.Errorf("manifest key %q: want %s/<chain>/<seq>%s", key, ManifestsDir, ManifestExt)
	}
	seq, err = strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return "", 0, fmt.Errorf("manifest key %q: bad sequence", key)
	}
	if err := ValidChain(parts[1]); err != nil {
		return "", 0, fmt.Errorf("manifest key %q: %w", key, err)
	}
	return parts[1], seq, nil
}
