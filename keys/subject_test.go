package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/mdtap/mdtap"
)

// blindIndex is a subject's blind index as the redactor computes it.
func blindIndex(t testing.TB, s *Set, subject string) string {
	t.Helper()
	id, sum, err := s.Hash([]byte("subject\x00" + subject))
	if err != nil {
		t.Fatal(err)
	}
	return mdtap.HashValue(id, sum)
}

func sealer(t testing.TB, k *SubjectKeys, bi string) *SubjectSealer {
	t.Helper()
	s, err := k.Sealer(context.Background(), bi)
	if err != nil {
		t.Fatalf("Sealer: %v", err)
	}
	return s
}

func opener(t testing.TB, k *SubjectKeys, bi string) *SubjectOpener {
	t.Helper()
	o, err := k.Opener(context.Background(), bi)
	if err != nil {
		t.Fatalf("Opener: %v", err)
	}
	return o
}

func token(t testing.TB, s interface {
	Tokenize([]byte, []byte) ([]byte, error)
}, v string) string {
	t.Helper()
	ct, err := s.Tokenize([]byte(v), []byte("account_num"))
	if err != nil {
		t.Fatal(err)
	}
	return string(ct)
}

func TestSubjectStoreKey(t *testing.T) {
	main := load(t, newDir(t))
	bi := blindIndex(t, main, "user-1")
	key, err := SubjectStoreKey(bi)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("v1.%d.", main.Primary().PRF)
	if !strings.HasPrefix(key, want) || strings.ContainsAny(key, ":+/ ") {
		t.Errorf("SubjectStoreKey = %q, want %s<b64url>", key, want)
	}
	for _, c := range key {
		if !strings.ContainsRune("-/_=.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", c) {
			t.Errorf("SubjectStoreKey %q has %q, which NATS KV keys do not allow", key, c)
		}
	}
	if other, _ := SubjectStoreKey(blindIndex(t, main, "user-2")); other == key {
		t.Errorf("two subjects have the same store key %q", key)
	}
	if back, ok := blindIndexOf(key); !ok || back != bi {
		t.Errorf("blindIndexOf(%q) = %q, %v; want %q", key, back, ok, bi)
	}
	for _, bad := range []string{"", "user-1", "mdtap:enc:v1:AAAA", "mdtap:hash:v1:x:AAAA"} {
		if _, err := SubjectStoreKey(bad); err == nil {
			t.Errorf("SubjectStoreKey(%q): no error", bad)
		}
	}
}

// One subject's tokens are equal, across nodes; another subject's differ.
func TestSubjectTokensPerSubject(t *testing.T) {
	dir := newDir(t)
	main := load(t, dir)
	store := newMemSubjectStore()
	node1 := NewSubjectKeys(main, store, SubjectOptions{})
	node2 := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	a, b := blindIndex(t, main, "A"), blindIndex(t, main, "B")

	sa := sealer(t, node1, a)
	if got := sealer(t, node1, a); got != sa {
		t.Error("second Sealer of a subject is not the cached one")
	}
	if t1, t2 := token(t, sa, "1234"), token(t, sa, "1234"); t1 != t2 {
		t.Error("one subject's tokens of one value differ")
	}
	if token(t, sealer(t, node2, a), "1234") != token(t, sa, "1234") {
		t.Error("the same subject's tokens differ between nodes")
	}
	if token(t, sealer(t, node1, b), "1234") == token(t, sa, "1234") {
		t.Error("two subjects' tokens of one value are equal")
	}
	if token(t, main, "1234") == token(t, sa, "1234") {
		t.Error("a subject's token equals the main keyset's")
	}
	if store.creates != 2 {
		t.Errorf("store creates = %d, want 2 (one per subject)", store.creates)
	}
	p, mp := sa.Primary(), main.Primary()
	if p.PRF != mp.PRF || p.AEAD == mp.AEAD || p.DAEAD == mp.DAEAD || p.AEAD == 0 || p.DAEAD == 0 {
		t.Errorf("subject Primary = %+v, main %+v: want the subject's aead and daead, the main prf", p, mp)
	}
	ct, _ := sa.Encrypt([]byte("v"), []byte("ad"))
	if id, _ := mdtap.TinkKeyID(ct); id != p.AEAD {
		t.Errorf("subject ciphertext names key %d, want %d", id, p.AEAD)
	}
	tk, _ := sa.Tokenize([]byte("v"), nil)
	if id, _ := mdtap.TinkKeyID(tk); id != p.DAEAD {
		t.Errorf("subject token names key %d, want %d", id, p.DAEAD)
	}
	if id, _, _ := sa.Hash([]byte("x")); id != mp.PRF {
		t.Errorf("subject Hash under key %d, want the main prf %d", id, mp.PRF)
	}

	// The store holds the keysets wrapped: no plaintext subject key in it.
	v, _, _ := store.Get(t.Context(), mustKey(t, a))
	ah, dh, err := unwrapSubject(main, a, v)
	if err != nil {
		t.Fatal(err)
	}
	var material [][]byte
	for _, h := range []*keyset.Handle{ah, dh} {
		for _, k := range insecurecleartextkeyset.KeysetMaterial(h).GetKey() {
			material = append(material, k.GetKeyData().GetValue())
		}
	}
	assertNoKeyMaterial(t, "the subject store", bytes.Join(store.history, nil), material)
}

func mustKey(t testing.TB, bi string) string {
	t.Helper()
	k, err := SubjectStoreKey(bi)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Forgetting a subject shreds its values for every reader; other subjects
// and main-key values are intact; a sidecar's cache follows.
func TestForgetSubject(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	main := load(t, dir)
	store := newMemSubjectStore()
	proxy := NewSubjectKeys(main, store, SubjectOptions{})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); proxy.Watch(wctx, zerolog.New(zerolog.NewTestWriter(t))) }()
	t.Cleanup(func() { cancel(); <-done })

	a, b := blindIndex(t, main, "A"), blindIndex(t, main, "B")
	ctA, _ := sealer(t, proxy, a).Encrypt([]byte("a-secret"), []byte("ad"))
	tkA, _ := sealer(t, proxy, a).Tokenize([]byte("a-acct"), []byte("f"))
	ctB, _ := sealer(t, proxy, b).Encrypt([]byte("b-secret"), []byte("ad"))
	ctMain, _ := main.Encrypt([]byte("main"), []byte("ad"))
	oldTokA := token(t, sealer(t, proxy, a), "1")

	reader := NewSubjectKeys(load(t, dir, PurposeAEAD, PurposeDAEAD), store, SubjectOptions{})
	if pt, err := opener(t, reader, a).Decrypt(ctA, []byte("ad")); err != nil || string(pt) != "a-secret" {
		t.Fatalf("Decrypt of A before forget = %q, %v", pt, err)
	}
	if pt, err := opener(t, reader, a).Decrypt(ctMain, []byte("ad")); err != nil || string(pt) != "main" {
		t.Errorf("main-key value through A's opener = %q, %v", pt, err)
	}

	n, err := ForgetSubject(ctx, store, []string{a, blindIndex(t, main, "never-seen")})
	if err != nil || n != 1 {
		t.Fatalf("ForgetSubject = %d, %v; want 1", n, err)
	}
	if _, _, err := store.Get(ctx, mustKey(t, a)); err == nil {
		t.Error("the store still holds A's keyset")
	}

	reader = NewSubjectKeys(load(t, dir, PurposeAEAD, PurposeDAEAD), store, SubjectOptions{})
	oa := opener(t, reader, a)
	if !oa.Forgotten() {
		t.Error("Forgotten() = false after forget")
	}
	if _, err := oa.Decrypt(ctA, []byte("ad")); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Decrypt of A after forget: got %v, want ErrShredded", err)
	}
	if _, err := oa.Detokenize(tkA, []byte("f")); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("Detokenize of A after forget: got %v, want ErrShredded", err)
	}
	if pt, err := oa.Decrypt(ctMain, []byte("ad")); err != nil || string(pt) != "main" {
		t.Errorf("main-key value through a forgotten subject's opener = %q, %v", pt, err)
	}
	if pt, err := opener(t, reader, b).Decrypt(ctB, []byte("ad")); err != nil || string(pt) != "b-secret" {
		t.Errorf("B after A was forgotten = %q, %v", pt, err)
	}
	if reader.Len() != 1 {
		t.Errorf("reader cache holds %d subjects, want 1 (B; a forgotten subject is not cached)", reader.Len())
	}

	// The proxy dropped A; using A again makes a new keyset, new tokens,
	// and A's old values stay shredded.
	waitFor(t, "the proxy to drop A's cached keyset", func() bool {
		proxy.mu.Lock()
		defer proxy.mu.Unlock()
		return proxy.byBI[a] == nil
	})
	if token(t, sealer(t, proxy, a), "1") == oldTokA {
		t.Error("a forgotten subject's new token equals its old one")
	}
	reader = NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	if _, err := opener(t, reader, a).Decrypt(ctA, []byte("ad")); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("old value of a subject whose keyset was re-made: got %v, want ErrShredded", err)
	}
}

// Two nodes making one subject's keyset at once end up with one.
func TestSubjectConcurrentCreateConverges(t *testing.T) {
	dir := newDir(t)
	store := newMemSubjectStore()
	// Hold each Create until both nodes got there, so they race.
	var mu sync.Mutex
	arrived := map[int]chan struct{}{}
	calls := 0
	store.beforeCreate = func() {
		mu.Lock()
		round := calls / 2
		calls++
		c := arrived[round]
		if c == nil {
			c = make(chan struct{})
			arrived[round] = c
			mu.Unlock()
			select {
			case <-c:
			case <-time.After(2 * time.Second):
			}
			return
		}
		mu.Unlock()
		close(c)
	}
	n1 := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	n2 := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	const subjects = 20
	main := load(t, dir)
	for i := range subjects {
		bi := blindIndex(t, main, fmt.Sprint("s", i))
		var wg sync.WaitGroup
		toks := make([]string, 2)
		for j, n := range []*SubjectKeys{n1, n2} {
			wg.Go(func() { toks[j] = token(t, sealer(t, n, bi), "same") })
		}
		wg.Wait()
		if toks[0] != toks[1] {
			t.Errorf("subject %d: the nodes' tokens differ: two keysets", i)
		}
	}
	if store.creates != subjects || store.len() != subjects {
		t.Errorf("store: %d creates, %d values; want %d of each", store.creates, store.len(), subjects)
	}
	if calls != 2*subjects {
		t.Errorf("Create was called %d times, want %d (both nodes racing per subject)", calls, 2*subjects)
	}
}

// Concurrent callers of one node share one miss.
func TestSubjectMissShared(t *testing.T) {
	dir := newDir(t)
	store := newMemSubjectStore()
	k := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	bi := blindIndex(t, load(t, dir), "x")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { sealer(t, k, bi) })
	}
	wg.Wait()
	if store.creates != 1 {
		t.Errorf("creates = %d, want 1", store.creates)
	}
}

func TestSubjectCacheBounded(t *testing.T) {
	dir := newDir(t)
	main := load(t, dir)
	k := NewSubjectKeys(main, newMemSubjectStore(), SubjectOptions{CacheSize: 2})
	a, b, c := blindIndex(t, main, "a"), blindIndex(t, main, "b"), blindIndex(t, main, "c")
	sealer(t, k, a)
	sealer(t, k, b)
	sealer(t, k, a) // a is now the most recent
	sealer(t, k, c)
	if k.Len() != 2 || k.byBI[b] != nil || k.byBI[a] == nil {
		t.Errorf("cache after a,b,a,c with room for 2: %d entries, b cached %v, a cached %v; want a and c", k.Len(), k.byBI[b] != nil, k.byBI[a] != nil)
	}
	// A change to another revision evicts; the cached revision does not.
	key := mustKey(t, a)
	rev := k.byBI[a].Value.(*subjectEntry).rev
	k.Changed(SubjectChange{Key: key, Revision: rev})
	if k.byBI[a] == nil {
		t.Error("a change notice of the cached revision evicted it")
	}
	k.Changed(SubjectChange{Key: key, Revision: rev + 1})
	if k.byBI[a] != nil {
		t.Error("a change to another revision did not evict")
	}
}

// A value stored under one subject's key does not unwrap as another's.
func TestSubjectKeysetBoundToIndex(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	main := load(t, dir)
	store := newMemSubjectStore()
	k := NewSubjectKeys(main, store, SubjectOptions{})
	a, b := blindIndex(t, main, "a"), blindIndex(t, main, "b")
	sealer(t, k, a)
	v, _, _ := store.Get(ctx, mustKey(t, a))
	store.Create(ctx, mustKey(t, b), v)
	if _, err := NewSubjectKeys(main, store, SubjectOptions{}).Opener(ctx, b); err == nil {
		t.Error("Opener of a subject holding another subject's keyset: no error")
	}
}

// Retiring aead keys: rewrapped subject keysets survive the old key's
// destruction; one that was not rewrapped reads as shredded and a sidecar
// replaces it.
func TestRewrapSubjects(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	main := load(t, dir)
	store := newMemSubjectStore()
	k := NewSubjectKeys(main, store, SubjectOptions{})
	a, b := blindIndex(t, main, "a"), blindIndex(t, main, "b")
	ctA, _ := sealer(t, k, a).Encrypt([]byte("a"), nil)
	ctB, _ := sealer(t, k, b).Encrypt([]byte("b"), nil)
	oldTokB := token(t, sealer(t, k, b), "1")
	old := main.Primary().AEAD
	if _, err := Rotate(ctx, dir, PurposeAEAD); err != nil {
		t.Fatal(err)
	}
	if err := main.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	// Rewrap a only (b is left under the old key).
	if _, err := rewrapOne(ctx, main, store, mustKey(t, a), a, func(id uint32) bool { return id == old }); err != nil {
		t.Fatal(err)
	}
	if err := Destroy(ctx, dir, old); err != nil {
		t.Fatal(err)
	}
	reader := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	if pt, err := opener(t, reader, a).Decrypt(ctA, nil); err != nil || string(pt) != "a" {
		t.Errorf("rewrapped subject after its old wrapping key was destroyed = %q, %v", pt, err)
	}
	ob := opener(t, reader, b)
	if !ob.Forgotten() {
		t.Error("a subject keyset whose wrapping key was destroyed does not read as forgotten")
	}
	if _, err := ob.Decrypt(ctB, nil); !errors.Is(err, mdtap.ErrShredded) {
		t.Errorf("value of a subject whose wrapping key was destroyed: got %v, want ErrShredded", err)
	}
	// A sidecar (fresh cache) replaces b's dead keyset.
	proxy := NewSubjectKeys(load(t, dir), store, SubjectOptions{})
	if token(t, sealer(t, proxy, b), "1") == oldTokB {
		t.Error("a replaced subject keyset gives the old tokens")
	}

	// RewrapSubjects over the store: only keysets under the given keys.
	n, err := RewrapSubjects(ctx, load(t, dir), store, func(id uint32) bool { return id == old })
	if err != nil || n != 0 {
		t.Errorf("RewrapSubjects with nothing left under the key = %d, %v; want 0", n, err)
	}
	cur := load(t, dir).Primary().AEAD
	if _, err := Rotate(ctx, dir, PurposeAEAD); err != nil {
		t.Fatal(err)
	}
	n, err = RewrapSubjects(ctx, load(t, dir), store, func(id uint32) bool { return id == cur })
	if err != nil || n != 2 {
		t.Errorf("RewrapSubjects = %d, %v; want 2", n, err)
	}
}

// Erasing the subject keysets under a retiring prf key leaves those under
// other prf keys.
func TestEraseSubjectsUnderPRF(t *testing.T) {
	ctx := t.Context()
	dir := newDir(t)
	main := load(t, dir)
	store := newMemSubjectStore()
	k := NewSubjectKeys(main, store, SubjectOptions{})
	oldPRF := main.Primary().PRF
	oldA := blindIndex(t, main, "a")
	sealer(t, k, oldA)
	sealer(t, k, blindIndex(t, main, "b"))
	if _, err := Rotate(ctx, dir, PurposePRF); err != nil {
		t.Fatal(err)
	}
	main.Reload(ctx)
	newA := blindIndex(t, main, "a")
	if newA == oldA {
		t.Fatal("a prf rotation did not change the blind index")
	}
	sealer(t, k, newA)
	n, err := EraseSubjectsUnderPRF(ctx, store, oldPRF)
	if err != nil || n != 2 {
		t.Errorf("EraseSubjectsUnderPRF = %d, %v; want 2", n, err)
	}
	if _, _, err := store.Get(ctx, mustKey(t, newA)); err != nil {
		t.Errorf("a keyset under the current prf key was erased: %v", err)
	}
}
