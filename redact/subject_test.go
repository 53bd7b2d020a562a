package redact_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
)

// memSubjects is a keys.SubjectAdmin in memory.
type memSubjects struct {
	mu   sync.Mutex
	rev  uint64
	vals map[string][]byte
	revs map[string]uint64
	fail error // returned by Get when set
}

func newMemSubjects() *memSubjects {
	return &memSubjects{vals: map[string][]byte{}, revs: map[string]uint64{}}
}

func (m *memSubjects) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, 0, m.fail
	}
	v, ok := m.vals[key]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return v, m.revs[key], nil
}

func (m *memSubjects) Create(_ context.Context, key string, v []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; ok {
		return 0, keys.ErrStoreConflict
	}
	m.rev++
	m.vals[key], m.revs[key] = v, m.rev
	return m.rev, nil
}

func (m *memSubjects) Update(_ context.Context, key string, v []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revs[key] != rev {
		return 0, keys.ErrStoreConflict
	}
	m.rev++
	m.vals[key], m.revs[key] = v, m.rev
	return m.rev, nil
}

func (m *memSubjects) Erase(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.vals[key]
	delete(m.vals, key)
	return ok, nil
}

func (m *memSubjects) Keys(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.vals {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	return ks, nil
}

// sealers and openers adapt keys.SubjectKeys as cmd/mdtap does.
type sealers struct{ k *keys.SubjectKeys }

func (s sealers) ForSubject(ctx context.Context, bi string) (redact.Sealer, error) {
	se, err := s.k.Sealer(ctx, bi)
	if err != nil {
		return nil, err
	}
	return se, nil
}

type openers struct{ k *keys.SubjectKeys }

func (o openers) ForSubject(ctx context.Context, bi string) (redact.Opener, error) {
	op, err := o.k.Opener(ctx, bi)
	if err != nil {
		return nil, err
	}
	return op, nil
}

func subjectRaw(id, subject string) *mdtap.Record {
	r := sampleRaw(id)
	r.Subject = subject
	r.OrgCode = "TESTBK0001"
	return r
}

// Per-subject keys end to end through the redactor: tokens equal within a
// customer and different across customers; forgetting one customer shreds
// exactly that customer's values.
func TestSubjectKeysProtectRevealForget(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	main := keysIn(t, dir)
	store := newMemSubjects()
	p, _ := redact.Load("builtin")
	r := redact.New(p, main)
	r.Subjects = sealers{keys.NewSubjectKeys(main, store, keys.SubjectOptions{})}

	a1, err := r.Protect(subjectRaw("01JQ0000000000000000000001", "customer-A"))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := r.Protect(subjectRaw("01JQ0000000000000000000002", "customer-A"))
	b1, _ := r.Protect(subjectRaw("01JQ0000000000000000000003", "customer-B"))
	none, _ := r.Protect(subjectRaw("01JQ0000000000000000000004", ""))

	acctA1, _ := protectedValues(t, a1)
	acctA2, _ := protectedValues(t, a2)
	acctB1, _ := protectedValues(t, b1)
	acctN, _ := protectedValues(t, none)
	if acctA1 != acctA2 {
		t.Error("one customer's equal account numbers have different tokens")
	}
	if acctA1 == acctB1 || acctA1 == acctN || acctB1 == acctN {
		t.Error("equal account numbers of different customers (or of no customer) have equal tokens")
	}
	if a1.Subject != a2.Subject || a1.Subject == b1.Subject || none.Subject != "" {
		t.Errorf("subjects %q %q %q %q", a1.Subject, a2.Subject, b1.Subject, none.Subject)
	}
	mk := main.Primary()
	if a1.Keys.AEAD == mk.AEAD || a1.Keys.DAEAD == mk.DAEAD || a1.Keys.PRF != mk.PRF || *a1.Keys != *a2.Keys || *a1.Keys == *b1.Keys {
		t.Errorf("record keys: A %+v, A %+v, B %+v, main %+v: want each subject's aead and daead, the main prf", *a1.Keys, *a2.Keys, *b1.Keys, mk)
	}
	if *none.Keys != mk {
		t.Errorf("keys of a record without a subject = %+v, want the main %+v", *none.Keys, mk)
	}
	tok, _ := mdtap.ParseProtected(acctA1)
	if tok.KeyID != a1.Keys.DAEAD {
		t.Errorf("A's token names key %d, want the record's daead key %d", tok.KeyID, a1.Keys.DAEAD)
	}

	reader := func() *redact.Revealer {
		set, err := keys.Load(ctx, dir, keys.PurposeAEAD, keys.PurposeDAEAD)
		if err != nil {
			t.Fatal(err)
		}
		return &redact.Revealer{Keys: set, Subjects: openers{keys.NewSubjectKeys(set, store, keys.SubjectOptions{})}}
	}
	rv := reader()
	for _, rec := range []*mdtap.Record{a1, a2, b1, none} {
		out, st, err := rv.Reveal(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		if acct, prod := protectedValues(t, out); acct != "99900012345678" || prod != "테스트 통장" || st.Shredded != 0 {
			t.Errorf("reveal of %s = %q %q (%d shredded)", rec.ID, acct, prod, st.Shredded)
		}
	}
	// Without the subject keys, a subject's values are unavailable, not
	// shredded: the main keys alone cannot tell.
	if _, st, err := redact.Reveal(a1, main); err != nil || st.Unavailable == 0 || st.Shredded != 0 {
		t.Errorf("Reveal of a subject record with the main keys only: %+v, %v", st, err)
	}

	indexes, err := redact.SubjectIndexes(main, "customer-A")
	if err != nil || len(indexes) != 1 || indexes[0] != a1.Subject {
		t.Fatalf("SubjectIndexes = %v, %v; want [%s]", indexes, err, a1.Subject)
	}
	if n, err := keys.ForgetSubject(ctx, store, indexes); err != nil || n != 1 {
		t.Fatalf("ForgetSubject = %d, %v", n, err)
	}

	rv = reader()
	for _, rec := range []*mdtap.Record{a1, a2} {
		out, st, err := rv.Reveal(ctx, rec)
		if err != nil {
			t.Fatalf("reveal of a forgotten subject's record: %v", err)
		}
		acct, prod := protectedValues(t, out)
		if !strings.HasPrefix(acct, "mdtap:shred:v1:tok:") || !strings.HasPrefix(prod, "mdtap:shred:v1:enc:") || st.Shredded != 2 || st.Revealed != 0 {
			t.Errorf("forgotten subject's record reveals %q %q (%+v), want both shredded", acct, prod, st)
		}
		if out.Time != rec.Time || out.OrgCode != rec.OrgCode || out.API != rec.API || out.Subject != rec.Subject ||
			out.Response.Status != 200 || !strings.Contains(string(out.Response.Body), `"rsp_code":"00000"`) {
			t.Error("forgetting changed the record's metadata")
		}
	}
	for _, rec := range []*mdtap.Record{b1, none} {
		out, st, err := rv.Reveal(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		if acct, _ := protectedValues(t, out); acct != "99900012345678" || st.Shredded != 0 {
			t.Errorf("record %s after A was forgotten = %q (%d shredded)", rec.ID, acct, st.Shredded)
		}
	}
}

// A subject whose keys cannot be had is not protected at all (the capture
// queue degrades it), never under the main keys.
func TestSubjectKeysUnavailable(t *testing.T) {
	main := keysIn(t, t.TempDir())
	store := newMemSubjects()
	store.fail = errors.New("nats: timeout")
	p, _ := redact.Load("builtin")
	r := redact.New(p, main)
	r.Subjects = sealers{keys.NewSubjectKeys(main, store, keys.SubjectOptions{})}
	if _, err := r.Protect(subjectRaw("01JQ0000000000000000000001", "customer-A")); err == nil {
		t.Error("Protect with the subject store down: no error")
	}
	if _, err := r.Protect(subjectRaw("01JQ0000000000000000000002", "")); err != nil {
		t.Errorf("Protect of a record without a subject, store down: %v", err)
	}
	rv := &redact.Revealer{Keys: main, Subjects: openers{keys.NewSubjectKeys(main, store, keys.SubjectOptions{})}}
	rec, _ := redact.New(p, main).Protect(subjectRaw("01JQ0000000000000000000003", "customer-A"))
	if _, _, err := rv.Reveal(t.Context(), rec); err == nil {
		t.Error("Reveal with the subject store down: no error (it must not guess shredded)")
	}
}

// Records tagged before per-subject keys (under the main keys) still reveal
// through the subject's opener.
func TestSubjectOpenerReadsMainKeyRecords(t *testing.T) {
	main := keysIn(t, t.TempDir())
	p, _ := redact.Load("builtin")
	rec, _ := redact.New(p, main).Protect(subjectRaw("01JQ0000000000000000000001", "customer-A"))
	rv := &redact.Revealer{Keys: main, Subjects: openers{keys.NewSubjectKeys(main, newMemSubjects(), keys.SubjectOptions{})}}
	out, st, err := rv.Reveal(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if acct, _ := protectedValues(t, out); acct != "99900012345678" || st.Shredded != 0 {
		t.Errorf("main-key record of a subject without a keyset = %q (%+v)", acct, st)
	}
}

// After a prf rotation a subject has two blind indexes.
func TestSubjectIndexesAcrossPRFRotation(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	main := keysIn(t, dir)
	p, _ := redact.Load("builtin")
	before, _ := redact.New(p, main).Protect(subjectRaw("01JQ0000000000000000000001", "customer-A"))
	if _, err := keys.Rotate(ctx, dir, keys.PurposePRF); err != nil {
		t.Fatal(err)
	}
	main.Reload(ctx)
	after, _ := redact.New(p, main).Protect(subjectRaw("01JQ0000000000000000000002", "customer-A"))
	got, err := redact.SubjectIndexes(main, "customer-A")
	if err != nil || len(got) != 2 || got[0] != after.Subject || got[1] != before.Subject {
		t.Errorf("SubjectIndexes = %v, %v; want [%s %s]", got, err, after.Subject, before.Subject)
	}
	if _, err := redact.SubjectIndexes(main, ""); err == nil {
		t.Error("SubjectIndexes of an empty subject: no error")
	}
}
