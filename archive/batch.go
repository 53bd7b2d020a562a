package archive

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mdtap/mdtap"
)

// pendingObject is one object of a batch: encoded once, then written (and,
// after a chain conflict, written again at a later position) until its
// manifest is stored.
type pendingObject struct {
	kind string
	part Partition // records
	day  time.Time // dead letters

	data     []byte // the object's bytes
	sum      string // hex SHA-256 of data
	rawBytes int64
	lines    int
	ids      *IDRange
	seqs     SeqRange
	times    *TimeRange
	sectors  []mdtap.Sector
	orgs     []string
	subjects []string
	reasons  map[string]int

	// The chain position, assigned when the write is attempted.
	seq      uint64
	key      string
	stored   bool   // the object is stored under key
	manifest []byte // the manifest at seq, built once per position
	hash     string // ManifestHash(manifest)
	done     bool   // the manifest is stored: the object is in the chain
}

// builder accumulates the lines of one object.
type builder struct {
	obj      pendingObject
	raw      []byte
	orgs     map[string]struct{}
	subjects map[string]struct{}
}

func newBuilder(kind string) *builder {
	return &builder{
		obj:      pendingObject{kind: kind, seqs: SeqRange{Min: ^uint64(0)}},
		orgs:     map[string]struct{}{},
		subjects: map[string]struct{}{},
	}
}

func (b *builder) addLine(line []byte, seq uint64, id string) {
	b.raw = append(append(b.raw, line...), '\n')
	o := &b.obj
	o.lines++
	o.seqs.Min, o.seqs.Max = min(o.seqs.Min, seq), max(o.seqs.Max, seq)
	if id != "" {
		if o.ids == nil {
			o.ids = &IDRange{Min: id, Max: id}
		} else {
			o.ids.Min, o.ids.Max = min(o.ids.Min, id), max(o.ids.Max, id)
		}
	}
}

func (b *builder) addRecord(line []byte, seq uint64, m recordMeta) {
	b.addLine(line, seq, m.ID)
	o := &b.obj
	if o.times == nil {
		o.times = &TimeRange{Min: mdtap.Timestamp{Time: m.Time}, Max: mdtap.Timestamp{Time: m.Time}}
	} else {
		if m.Time.Before(o.times.Min.Time) {
			o.times.Min.Time = m.Time
		}
		if m.Time.After(o.times.Max.Time) {
			o.times.Max.Time = m.Time
		}
	}
	b.orgs[m.Org] = struct{}{}
	if m.Subject != "" {
		b.subjects[m.Subject] = struct{}{}
	}
}

// finish compresses the object and fills in its sets.
func (b *builder) finish(enc *zstd.Encoder) *pendingObject {
	o := &b.obj
	o.rawBytes = int64(len(b.raw))
	o.data = enc.EncodeAll(b.raw, make([]byte, 0, len(b.raw)/2))
	sum := sha256.Sum256(o.data)
	o.sum = hex.EncodeToString(sum[:])
	o.orgs = append([]string{}, slices.Sorted(maps.Keys(b.orgs))...) // [] rather than null
	o.subjects = append([]string{}, slices.Sorted(maps.Keys(b.subjects))...)
	o.sectors = []mdtap.Sector{}
	if o.kind == KindRecords {
		o.sectors = []mdtap.Sector{o.part.Sector}
	}
	b.raw = nil
	return o
}

// encodeResult is a batch turned into objects.
type encodeResult struct {
	objects []*pendingObject // records objects by partition, then the dead letters
	records int              // messages in records objects
	invalid []*invalidRecord // messages in the dead-letter object, in order
}

// parsed is one message of a batch, read.
type parsed struct {
	msg  Message
	line []byte // the record's line (records only)
	meta recordMeta
	bad  *invalidRecord
}

// encodeBatch sorts a batch's messages into one object per partition (and
// one dead-letter object for the messages that are not protected records)
// and compresses them. Parsing and compression run in parallel.
func encodeBatch(msgs []Message, now time.Time, enc *zstd.Encoder) encodeResult {
	ps := parseAll(msgs)

	// Size every object's buffer first: growing them would copy each batch
	// several times over.
	type part struct {
		b    *builder
		size int
	}
	parts := map[Partition]*part{}
	for i := range ps {
		if ps[i].bad != nil {
			continue
		}
		p := PartitionOf(ps[i].meta.Time, ps[i].meta.Sector)
		pt := parts[p]
		if pt == nil {
			pt = &part{b: newBuilder(KindRecords)}
			pt.b.obj.part = p
			parts[p] = pt
		}
		pt.size += len(ps[i].line) + 1
	}
	for _, pt := range parts {
		pt.b.raw = make([]byte, 0, pt.size)
	}

	var res encodeResult
	var dead *builder
	for i := range ps {
		x := &ps[i]
		if x.bad == nil {
			parts[PartitionOf(x.meta.Time, x.meta.Sector)].b.addRecord(x.line, x.msg.Seq(), x.meta)
			res.records++
			continue
		}
		if dead == nil {
			dead = newBuilder(KindDeadLetter)
			dead.obj.day = now.UTC().Truncate(24 * time.Hour)
			dead.obj.reasons = map[string]int{}
		}
		data := x.msg.Data()
		dl := DeadLetter{
			StreamSeq: x.msg.Seq(),
			ID:        x.bad.id,
			Bytes:     len(data),
			Reason:    x.bad.reason,
			Detail:    x.bad.detail,
			Received:  mdtap.Timestamp{Time: now},
		}
		if x.bad.protected {
			dl.Record = oneLine(data)
		}
		line, err := json.Marshal(dl)
		if err != nil { // a protected record's bytes were valid JSON; cannot happen
			dl.Record = nil
			line, _ = json.Marshal(dl)
		}
		dead.addLine(line, x.msg.Seq(), x.bad.id)
		dead.obj.reasons[x.bad.reason]++
		res.invalid = append(res.invalid, x.bad)
	}
	builders := make([]*builder, 0, len(parts)+1)
	for _, pt := range parts {
		builders = append(builders, pt.b)
	}
	slices.SortFunc(builders, func(a, b *builder) int {
		if c := a.obj.part.Hour.Compare(b.obj.part.Hour); c != 0 {
			return c
		}
		return cmp.Compare(a.obj.part.Sector, b.obj.part.Sector)
	})
	if dead != nil {
		builders = append(builders, dead)
	}
	res.objects = make([]*pendingObject, len(builders))
	var wg sync.WaitGroup
	for i, b := range builders {
		wg.Go(func() { res.objects[i] = b.finish(enc) }) // the encoder bounds the concurrency
	}
	wg.Wait()
	return res
}

// parseAll reads the messages' metadata, on every CPU.
func parseAll(msgs []Message) []parsed {
	ps := make([]parsed, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), (len(msgs)+255)/256)
	chunk := (len(msgs) + workers - 1) / max(workers, 1)
	var wg sync.WaitGroup
	for lo := 0; lo < len(msgs); lo += chunk {
		hi := min(lo+chunk, len(msgs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				data := msgs[i].Data()
				ps[i].msg = msgs[i]
				ps[i].meta, ps[i].bad = parseMeta(data)
				if ps[i].bad == nil {
					ps[i].line = oneLine(data)
				}
			}
		})
	}
	wg.Wait()
	return ps
}
