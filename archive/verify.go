package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
)

// ManifestRef locates one manifest of a chain.
type ManifestRef struct {
	Key string
	Seq uint64
}

// manifestRefs yields the chain's manifest keys after startAfter, in chain
// order, skipping keys that are not manifest keys of the chain.
func manifestRefs(ctx context.Context, s Store, chain, startAfter string) iter.Seq2[ManifestRef, error] {
	return func(yield func(ManifestRef, error) bool) {
		for o, err := range Walk(ctx, s, ChainPrefix(chain), startAfter) {
			if err != nil {
				yield(ManifestRef{}, err)
				return
			}
			c, seq, err := ParseManifestKey(o.Key)
			if err != nil || c != chain {
				continue
			}
			if !yield(ManifestRef{Key: o.Key, Seq: seq}, nil) {
				return
			}
		}
	}
}

// ListManifests lists a chain's manifests in chain order (keys only; read
// each with ReadManifest).
func ListManifests(ctx context.Context, s Store, chain string) ([]ManifestRef, error) {
	if err := ValidChain(chain); err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	var refs []ManifestRef
	for ref, err := range manifestRefs(ctx, s, chain, "") {
		if err != nil {
			return nil, fmt.Errorf("list manifests of %s: %w", chain, err)
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// ReadManifest reads and decodes a manifest, and returns its hash too.
func ReadManifest(ctx context.Context, s Store, key string) (*Manifest, string, error) {
	data, err := s.Get(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("read manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, "", fmt.Errorf("read manifest %s: %w", key, err)
	}
	return m, ManifestHash(data), nil
}

// ListChains lists the ids of the chains that have manifests in the store,
// sorted, with one List call per chain.
func ListChains(ctx context.Context, s Store) ([]string, error) {
	var chains []string
	after := ""
	for {
		page, err := s.List(ctx, ManifestsDir+"/", after, 1)
		if err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
		if len(page) == 0 {
			slices.Sort(chains)
			return chains, nil
		}
		chain, _, ok := strings.Cut(strings.TrimPrefix(page[0].Key, ManifestsDir+"/"), "/")
		if ok && ValidChain(chain) == nil {
			chains = append(chains, chain)
		}
		// '~' sorts after every character of a manifest name, and before the
		// next chain ("c/…" < "c/~" < "c0/…" since '/' < '0').
		after = ManifestsDir + "/" + chain + "/~"
		if !ok {
			after = page[0].Key
		}
	}
}

// Problem kinds a Report lists.
const (
	// ProblemMissingObject: a manifest names an object that is not in the store.
	ProblemMissingObject = "missing_object"
	// ProblemAlteredObject: an object's size or SHA-256 differs from its manifest.
	ProblemAlteredObject = "altered_object"
	// ProblemUnlistedObject: an object of the chain that no manifest names.
	// After a crash (or a lost race for a chain position) an object can be
	// stored without its manifest; its records were stored again and are in
	// the chain, so this is also what a benign crash leaves behind.
	ProblemUnlistedObject = "unlisted_object"
	// ProblemMissingManifest: positions Seq…Last of the chain have no
	// manifest (deleted), with later manifests present.
	ProblemMissingManifest = "missing_manifest"
	// ProblemOutOfChain: a manifest's prev is not the hash of the manifest
	// before it, so one of the two was altered or replaced.
	ProblemOutOfChain = "out_of_chain"
	// ProblemBadManifest: a manifest that cannot be read, or whose content
	// contradicts its key or the chain's counts.
	ProblemBadManifest = "bad_manifest"
	// ProblemTailDeleted: the head store's head is past the store's last
	// manifest: manifests Seq…Last were deleted from the end of the chain.
	ProblemTailDeleted = "tail_deleted"
	// ProblemHeadMismatch: the manifest at the head's position does not have
	// the head's hash or count, so it was altered or replaced.
	ProblemHeadMismatch = "head_mismatch"
	// ProblemNoHead: the chain has manifests but the head store has no head,
	// so a deleted tail could not be detected.
	ProblemNoHead = "no_head"
)

// Problem is one finding of VerifyChain.
type Problem struct {
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq,omitempty"`  // the manifest concerned, or the first of a range
	Last   uint64 `json:"last,omitempty"` // the last of a range
	Key    string `json:"key,omitempty"`  // the object or manifest concerned
	Detail string `json:"detail"`
}

func (p Problem) String() string {
	s := p.Kind
	if p.Seq > 0 {
		s += fmt.Sprintf(" seq %d", p.Seq)
		if p.Last > p.Seq {
			s += fmt.Sprintf("-%d", p.Last)
		}
	}
	if p.Key != "" {
		s += " " + p.Key
	}
	return s + ": " + p.Detail
}

// Report is the result of VerifyChain.
type Report struct {
	Chain     string    `json:"chain"`
	Manifests int       `json:"manifests"` // manifests read
	Objects   int       `json:"objects"`   // objects checked against their manifests
	Records   uint64    `json:"records"`   // lines in the objects that checked out
	LastSeq   uint64    `json:"last_seq"`  // the store's last manifest
	Head      *Head     `json:"head,omitempty"`
	Problems  []Problem `json:"problems"`
}

// OK reports whether the chain verified without problems.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Count returns how many problems of a kind the report holds.
func (r *Report) Count(kind string) int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind == kind {
			n++
		}
	}
	return n
}

// verifyWorkers is how many objects VerifyChain reads at once.
const verifyWorkers = 4

// VerifyChain checks a chain end to end: every manifest links to the one
// before it (prev hash, position, cumulative count), every object a manifest
// names is there with the size and SHA-256 the manifest gives, every object
// of the chain in the store is named by a manifest, and the chain reaches
// the head kept in heads (nil skips that check). It reads every object of
// the chain and lists the whole records/ and deadletter/ trees.
//
// Problems go into the report; the error is for a verification that could
// not run (the store or the head store unreachable).
func VerifyChain(ctx context.Context, s Store, heads HeadStore, chain string) (Report, error) {
	r := Report{Chain: chain, Problems: []Problem{}}
	if err := ValidChain(chain); err != nil {
		return r, fmt.Errorf("verify chain: %w", err)
	}
	add := func(p Problem) { r.Problems = append(r.Problems, p) }

	type objCheck struct {
		seq   uint64
		key   string
		bytes int64
		sum   string
		lines int
	}
	var checks []objCheck
	listed := map[string]bool{}
	hashes := map[uint64]string{} // manifest hashes by position
	counts := map[uint64]uint64{} // ChainRecords by position
	var prevSeq uint64
	var prevHash string
	var prevRecords uint64
	prevOK := true // the previous manifest was read, so links to it can be checked
	for ref, err := range manifestRefs(ctx, s, chain, "") {
		if err != nil {
			return r, fmt.Errorf("verify chain %s: list manifests: %w", chain, err)
		}
		if ref.Seq > prevSeq+1 {
			add(Problem{Kind: ProblemMissingManifest, Seq: prevSeq + 1, Last: ref.Seq - 1,
				Detail: fmt.Sprintf("%d manifests missing before seq %d", ref.Seq-prevSeq-1, ref.Seq)})
			prevOK = false
		}
		data, err := s.Get(ctx, ref.Key)
		if errors.Is(err, ErrNotFound) {
			add(Problem{Kind: ProblemMissingManifest, Seq: ref.Seq, Key: ref.Key, Detail: "listed, then gone"})
			prevSeq, prevOK = ref.Seq, false
			continue
		}
		if err != nil {
			return r, fmt.Errorf("verify chain %s: %w", chain, err)
		}
		r.Manifests++
		hash := ManifestHash(data)
		hashes[ref.Seq] = hash
		m, err := ParseManifest(data)
		if err != nil {
			add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key, Detail: err.Error()})
			prevSeq, prevHash, prevOK = ref.Seq, hash, false
			continue
		}
		counts[ref.Seq] = m.ChainRecords
		switch {
		case m.Chain != chain || m.Seq != ref.Seq:
			add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("holds chain %q seq %d", m.Chain, m.Seq)})
		case ref.Seq == 1 && m.Prev != "":
			add(Problem{Kind: ProblemOutOfChain, Seq: ref.Seq, Key: ref.Key, Detail: "first manifest has a prev hash"})
		case ref.Seq > 1 && prevOK && m.Prev != prevHash:
			add(Problem{Kind: ProblemOutOfChain, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("prev is not the hash of manifest %d", ref.Seq-1)})
		case prevOK && m.ChainRecords != prevRecords+uint64(m.Records):
			add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: fmt.Sprintf("chain_records %d, want %d + %d", m.ChainRecords, prevRecords, m.Records)})
		}
		if k, err := ParseObjectKey(m.Object); err != nil || k.Chain != chain || k.Seq != m.Seq {
			add(Problem{Kind: ProblemBadManifest, Seq: ref.Seq, Key: ref.Key,
				Detail: "object key does not belong to this manifest"})
		} else {
			listed[m.Object] = true
			checks = append(checks, objCheck{seq: m.Seq, key: m.Object, bytes: m.Bytes, sum: m.SHA256, lines: m.Records})
		}
		prevSeq, prevHash, prevRecords, prevOK = ref.Seq, hash, m.ChainRecords, true
	}
	r.LastSeq = prevSeq

	// The objects, a few at a time.
	type result struct {
		p     *Problem
		lines int
		err   error
	}
	results := make([]result, len(checks))
	var wg sync.WaitGroup
	sem := make(chan struct{}, verifyWorkers)
	for i, c := range checks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := s.Get(ctx, c.key)
			switch {
			case errors.Is(err, ErrNotFound):
				results[i].p = &Problem{Kind: ProblemMissingObject, Seq: c.seq, Key: c.key, Detail: "named by its manifest, not in the store"}
			case err != nil:
				results[i].err = err
			default:
				sum := sha256.Sum256(data)
				if int64(len(data)) != c.bytes || hex.EncodeToString(sum[:]) != c.sum {
					results[i].p = &Problem{Kind: ProblemAlteredObject, Seq: c.seq, Key: c.key,
						Detail: fmt.Sprintf("%d bytes, SHA-256 %x; manifest says %d bytes, %s", len(data), sum[:4], c.bytes, c.sum[:min(8, len(c.sum))])}
				} else {
					results[i].lines = c.lines
				}
			}
		})
	}
	wg.Wait()
	for _, res := range results {
		if res.err != nil {
			return r, fmt.Errorf("verify chain %s: %w", chain, res.err)
		}
		if res.p != nil {
			add(*res.p)
			continue
		}
		r.Objects++
		r.Records += uint64(res.lines)
	}

	// Objects of the chain that no manifest names.
	for _, dir := range []string{RecordsDir + "/", DeadLetterDir + "/"} {
		for o, err := range Walk(ctx, s, dir, "") {
			if err != nil {
				return r, fmt.Errorf("verify chain %s: list objects: %w", chain, err)
			}
			k, err := ParseObjectKey(o.Key)
			if err != nil || k.Chain != chain || listed[o.Key] {
				continue
			}
			add(Problem{Kind: ProblemUnlistedObject, Seq: k.Seq, Key: o.Key, Detail: "no manifest names it"})
		}
	}

	if heads == nil {
		return r, nil
	}
	h, _, err := heads.Get(ctx, chain)
	if errors.Is(err, ErrNoHead) {
		if r.LastSeq > 0 {
			add(Problem{Kind: ProblemNoHead, Detail: "the head store has no head for this chain; a deleted tail would go unseen"})
		}
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("verify chain %s: read head: %w", chain, err)
	}
	r.Head = &h
	if p := headProblem(chain, r.LastSeq, h, hashes, counts); p != nil {
		add(*p)
	}
	return r, nil
}

// headProblem compares a chain's head with what walking its manifests found
// (the last seq, manifest hashes and chain_records by seq): nil when they
// agree.
func headProblem(chain string, lastSeq uint64, h Head, hashes map[uint64]string, counts map[uint64]uint64) *Problem {
	switch {
	case h.Seq > lastSeq && lastSeq == 0:
		return &Problem{Kind: ProblemTailDeleted, Seq: 1, Last: h.Seq,
			Detail: fmt.Sprintf("head is at seq %d and no manifest of the chain is left: the chain was deleted whole", h.Seq)}
	case h.Seq > lastSeq:
		return &Problem{Kind: ProblemTailDeleted, Seq: lastSeq + 1, Last: h.Seq,
			Detail: fmt.Sprintf("head is at seq %d, the store's last manifest at %d", h.Seq, lastSeq)}
	case hashes[h.Seq] != "" && hashes[h.Seq] != h.Hash:
		return &Problem{Kind: ProblemHeadMismatch, Seq: h.Seq, Key: ManifestKey(chain, h.Seq), Detail: "manifest hash differs from the head's"}
	case hashes[h.Seq] != "" && counts[h.Seq] != h.Records:
		return &Problem{Kind: ProblemHeadMismatch, Seq: h.Seq, Key: ManifestKey(chain, h.Seq),
			Detail: fmt.Sprintf("chain_records %d, head says %d", counts[h.Seq], h.Records)}
	}
	return nil
}
