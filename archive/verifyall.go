package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// VerifyOptions configure VerifyAll.
type VerifyOptions struct {
	// Heads keeps the manifest chains' heads; AccessLogHeads the access
	// log's (under AccessLogHead). Either may be the same store, or nil,
	// which skips the checks of that tail.
	Heads          HeadStore
	AccessLogHeads HeadStore
	// From and To, when set, limit the objects read: only those whose
	// manifest's records fall (for dead letters: which were archived) in
	// From <= time < To are checked against their manifests, and unlisted
	// objects are looked for in those partitions only. Every manifest
	// chain and the access log are still walked whole: their links are
	// what makes the rest trustworthy.
	From, To time.Time
	// Workers bounds the objects and manifests read at once; default
	// DefaultQueryWorkers.
	Workers int
}

// VerifyAllReport is the result of VerifyAll.
type VerifyAllReport struct {
	Chains    []Report        `json:"chains"` // by chain id
	AccessLog AccessLogReport `json:"access_log"`
	// Stray lists keys under records/, deadletter/ or manifests/ that are
	// not archive names at all, so belong to no chain.
	Stray []Problem `json:"stray"`
}

// Problems counts the problems of every chain, the access log and the
// stray keys.
func (r *VerifyAllReport) Problems() int {
	n := len(r.AccessLog.Problems) + len(r.Stray)
	for i := range r.Chains {
		n += len(r.Chains[i].Problems)
	}
	return n
}

// OK reports whether everything verified.
func (r *VerifyAllReport) OK() bool { return r.Problems() == 0 }

// VerifyAll checks the whole archive in one pass: every manifest chain as
// VerifyChain does (the same problems, in the same order), and the access
// log as VerifyAccessLogStore does. Where VerifyChain lists the records/ and
// deadletter/ trees once per chain, VerifyAll lists them, and the manifests/
// tree, once in all; objects and manifests are read Workers at a time.
//
// Problems go into the report; the error is for a verification that could
// not run (the store or a head store unreachable).
func VerifyAll(ctx context.Context, s Store, o VerifyOptions) (VerifyAllReport, error) {
	rep := VerifyAllReport{Chains: []Report{}, Stray: []Problem{}}
	if o.Workers <= 0 {
		o.Workers = DefaultQueryWorkers
	}
	ranged := !o.From.IsZero() || !o.To.IsZero()
	if ranged {
		if o.From.IsZero() {
			o.From = time.Unix(0, 0)
		}
		if o.To.IsZero() {
			o.To = time.Now().Add(24 * time.Hour)
		}
		if !o.From.Before(o.To) {
			return rep, errors.New("verify: From is not before To")
		}
	}

	// The manifests of every chain, in chain order, from one listing.
	var chains []string
	refs := map[string][]ManifestRef{}
	for info, err := range Walk(ctx, s, ManifestsDir+"/", "") {
		if err != nil {
			return rep, fmt.Errorf("verify: list manifests: %w", err)
		}
		chain, seq, err := ParseManifestKey(info.Key)
		if err != nil {
			rep.Stray = append(rep.Stray, Problem{Kind: ProblemBadManifest, Key: info.Key, Detail: "not a manifest name"})
			continue
		}
		if _, ok := refs[chain]; !ok {
			chains = append(chains, chain)
		}
		refs[chain] = append(refs[chain], ManifestRef{Key: info.Key, Seq: seq})
	}

	walks := map[string]*chainWalk{}
	var checks []objectCheck
	for _, chain := range chains {
		w, err := walkChain(ctx, s, chain, refs[chain], o.Workers)
		if err != nil {
			return rep, err
		}
		walks[chain] = w
		for _, c := range w.checks {
			if !ranged || c.overlaps(o.From, o.To) {
				checks = append(checks, c)
			}
		}
		w.checks = nil
	}

	// Objects against their manifests.
	results := make([]objectResult, len(checks))
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Workers)
	for i, c := range checks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = c.run(ctx, s)
		})
	}
	wg.Wait()
	for i, res := range results {
		w := walks[checks[i].chain]
		if res.err != nil {
			return rep, fmt.Errorf("verify chain %s: %w", w.r.Chain, res.err)
		}
		if res.p != nil {
			w.add(*res.p)
			continue
		}
		w.r.Objects++
		w.r.Records += uint64(res.lines)
	}

	// Objects that no manifest names, from one listing of each tree.
	var prefixes []string
	if ranged {
		prefixes = PartitionPrefixes(o.From, o.To, nil)
		for d := o.From.UTC().Truncate(24 * time.Hour); d.Before(o.To); d = d.Add(24 * time.Hour) {
			prefixes = append(prefixes, DeadLetterDir+"/dt="+d.Format("2006-01-02")+"/")
		}
	} else {
		prefixes = []string{RecordsDir + "/", DeadLetterDir + "/"}
	}
	for _, prefix := range prefixes {
		for info, err := range Walk(ctx, s, prefix, "") {
			if err != nil {
				return rep, fmt.Errorf("verify: list objects: %w", err)
			}
			k, err := ParseObjectKey(info.Key)
			if err != nil {
				rep.Stray = append(rep.Stray, Problem{Kind: ProblemUnlistedObject, Key: info.Key, Detail: "not an archive object name"})
				continue
			}
			w := walks[k.Chain]
			if w == nil {
				// A chain with objects and no manifest left at all.
				w = newChainWalk(k.Chain)
				walks[k.Chain] = w
				chains = append(chains, k.Chain)
			}
			if !w.listed[info.Key] {
				w.add(Problem{Kind: ProblemUnlistedObject, Seq: k.Seq, Key: info.Key, Detail: "no manifest names it"})
			}
		}
	}

	// The heads. A chain the head store knows and the store has nothing of
	// was deleted whole; its empty walk reads as a tail deleted from seq 1.
	if hl, ok := o.Heads.(HeadLister); ok {
		known, err := hl.Chains(ctx)
		if err != nil {
			return rep, fmt.Errorf("verify: list chain heads: %w", err)
		}
		for _, chain := range known {
			if chain == AccessLogHead || walks[chain] != nil {
				continue
			}
			walks[chain] = newChainWalk(chain)
			chains = append(chains, chain)
		}
	}
	slices.Sort(chains)
	for _, chain := range chains {
		w := walks[chain]
		if o.Heads != nil {
			if err := w.checkHead(ctx, o.Heads); err != nil {
				return rep, err
			}
		}
		rep.Chains = append(rep.Chains, *w.r)
	}

	al, err := VerifyAccessLogStore(ctx, s, o.AccessLogHeads)
	if err != nil {
		return rep, err
	}
	rep.AccessLog = al
	return rep, nil
}

// chainWalk is what walking one chain's manifests found.
type chainWalk struct {
	r      *Report
	listed map[string]bool   // objects named by a manifest
	hashes map[uint64]string // manifest hashes by position
	counts map[uint64]uint64 // ChainRecords by position
	checks []objectCheck
}

func newChainWalk(chain string) *chainWalk {
	return &chainWalk{
		r:      &Report{Chain: chain, Problems: []Problem{}},
		listed: map[string]bool{},
		hashes: map[uint64]string{},
		counts: map[uint64]uint64{},
	}
}

func (w *chainWalk) add(p Problem) { w.r.Problems = append(w.r.Problems, p) }

// objectCheck is one object to compare with its manifest.
type objectCheck struct {
	chain     string
	seq       uint64
	key       string
	bytes     int64
	sum       string
	lines     int
	timeRange *TimeRange // records
	created   time.Time  // dead letters
}

func (c objectCheck) overlaps(from, to time.Time) bool {
	if c.timeRange != nil {
		return !c.timeRange.Max.Before(from) && c.timeRange.Min.Before(to)
	}
	day := c.created.UTC().Truncate(24 * time.Hour)
	return !day.Add(24*time.Hour).Before(from) && day.Before(to)
}

type objectResult struct {
	p     *Problem
	lines int
	err   error
}

// run is VerifyChain's object check.
func (c objectCheck) run(ctx context.Context, s Store) objectResult {
	data, err := s.Get(ctx, c.key)
	switch {
	case errors.Is(err, ErrNotFound):
		return objectResult{p: &Problem{Kind: ProblemMissingObject, Seq: c.seq, Key: c.key, Detail: "named by its manifest, not in the store"}}
	case err != nil:
		return objectResult{err: err}
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != c.bytes || hex.EncodeToString(sum[:]) != c.sum {
		return objectResult{p: &Problem{Kind: ProblemAlteredObject, Seq: c.seq, Key: c.key,
			Detail: fmt.Sprintf("%d bytes, SHA-256 %x; manifest says %d bytes, %s", len(data), sum[:4], c.bytes, c.sum[:min(8, len(c.sum))])}}
	}
	return objectResult{lines: c.lines}
}

// walkChain reads a chain's manifests (workers at a time) and checks their
// links as VerifyChain does.
func walkChain(ctx context.Context, s Store, chain string, refs []ManifestRef, workers int) (*chainWalk, error) {
	w := newChainWalk(chain)
	type got struct {
		data []byte
		err  error
	}
	gots := make([]got, len(refs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i, ref := range refs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			gots[i].data, gots[i].err = s.Get(ctx, ref.Key)
		})
	}
	wg.Wait()

	var prevSeq uint64
	var prevHash string
	var prevRecords uint64
	prevOK := true
	for i, ref := range refs {
		if ref.Seq > prevSeq+1 {
			w.add(Problem{Kind: ProblemMissingManifest, Seq: prevSeq + 1, Last: ref.Seq - 1,
				Detail: fmt.Sprintf("%d manifests missing before seq %d", ref.Seq-prevSeq-1, ref.Seq)})
			prevOK = false
		}
		data, err := gots[i].data, gots[i].err
		if errors.Is(err, ErrNotFound) {
			w.add(Problem{Kind: ProblemMissingManifest, Seq: ref.Seq, Key: ref.Key, Detail: "listed, then gone"})
			prevSeq, prevOK = ref.Seq, false
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("verify chain %s: %w", chain, err)
		}
		w.r.Manifests++
		hash := ManifestHash(data)
		w.hashes[ref.Seq] = hash
		m, err := ParseManifest(data)
		if err != nil {
			w.add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key, Detail: err.Error()})
			prevSeq, prevHash, prevOK = ref.Seq, hash, false
			continue
		}
		w.counts[ref.Seq] = m.ChainRecords
		switch {
		case m.Chain != chain || m.Seq != ref.Seq:
			w.add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("holds chain %q seq %d", m.Chain, m.Seq)})
		case ref.Seq == 1 && m.Prev != "":
			w.add(Problem{Kind: ProblemOutOfChain, Seq: ref.Seq, Key: ref.Key, Detail: "first manifest has a prev hash"})
		case ref.Seq > 1 && prevOK && m.Prev != prevHash:
			w.add(Problem{Kind: ProblemOutOfChain, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("prev is not the hash of manifest %d", ref.Seq-1)})
		case prevOK && m.ChainRecords != prevRecords+uint64(m.Records):
			w.add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("chain_records %d, want %d + %d", m.ChainRecords, prevRecords, m.Records)})
		}
		if k, err := ParseObjectKey(m.Object); err != nil || k.Chain != chain || k.Seq != m.Seq {
			w.add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: "object key does not belong to this manifest"})
		} else {
			w.listed[m.Object] = true
			w.checks = append(w.checks, objectCheck{chain: chain, seq: m.Seq, key: m.Object, bytes: m.Bytes, sum: m.SHA256,
				lines: m.Records, timeRange: m.Time, created: m.Created.Time})
		}
		prevSeq, prevHash, prevRecords, prevOK = ref.Seq, hash, m.ChainRecords, true
	}
	w.r.LastSeq = prevSeq
	return w, nil
}

// checkHead is VerifyChain's comparison with the head store.
func (w *chainWalk) checkHead(ctx context.Context, heads HeadStore) error {
	r := w.r
	h, _, err := heads.Get(ctx, r.Chain)
	if errors.Is(err, ErrNoHead) {
		if r.LastSeq > 0 {
			w.add(Problem{Kind: ProblemNoHead, Detail: "the head store has no head for this chain; a deleted tail would go unseen"})
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify chain %s: read head: %w", r.Chain, err)
	}
	r.Head = &h
	if p := headProblem(r.Chain, r.LastSeq, h, w.hashes, w.counts); p != nil {
		w.add(*p)
	}
	return nil
}
