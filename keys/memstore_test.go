package keys

import (
	"context"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
)

// memKeysetStore is a KeysetStore and KeysetNotifier in memory.
type memKeysetStore struct {
	mu    sync.Mutex
	files map[string][]byte
	subs  []chan struct{}
}

func newMemKeysetStore() *memKeysetStore { return &memKeysetStore{files: map[string][]byte{}} }

func (m *memKeysetStore) ReadKeyFile(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return slices.Clone(b), nil
}

func (m *memKeysetStore) WriteKeyFile(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = slices.Clone(data)
	for _, c := range m.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return nil
}

func (m *memKeysetStore) String() string { return "mem://keys" }

func (m *memKeysetStore) KeysetChanges(ctx context.Context) (<-chan struct{}, error) {
	c := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs = append(m.subs, c)
	m.mu.Unlock()
	return c, nil
}

// all returns every stored byte, for scanning.
func (m *memKeysetStore) all() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b []byte
	for _, v := range m.files {
		b = append(b, v...)
	}
	return b
}

// memSubjectStore is a SubjectAdmin and SubjectWatcher in memory. Every
// value ever written is kept in history, to check what erasing leaves.
type memSubjectStore struct {
	mu      sync.Mutex
	rev     uint64
	vals    map[string]memValue
	history [][]byte // every value ever stored, erased ones removed
	creates int      // successful Creates
	subs    []chan SubjectChange
	// beforeCreate, when set, runs before each Create takes the lock (to
	// make races likely).
	beforeCreate func()
}

type memValue struct {
	v   []byte
	rev uint64
}

func newMemSubjectStore() *memSubjectStore { return &memSubjectStore{vals: map[string]memValue{}} }

func (m *memSubjectStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return slices.Clone(v.v), v.rev, nil
}

func (m *memSubjectStore) put(key string, value []byte) uint64 {
	m.rev++
	m.vals[key] = memValue{slices.Clone(value), m.rev}
	m.history = append(m.history, slices.Clone(value))
	m.notify(SubjectChange{Key: key, Revision: m.rev})
	return m.rev
}

func (m *memSubjectStore) notify(c SubjectChange) {
	for _, s := range m.subs {
		s <- c
	}
}

func (m *memSubjectStore) Create(_ context.Context, key string, value []byte) (uint64, error) {
	if m.beforeCreate != nil {
		m.beforeCreate()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; ok {
		return 0, ErrStoreConflict
	}
	m.creates++
	return m.put(key, value), nil
}

func (m *memSubjectStore) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.vals[key]; !ok || v.rev != rev {
		return 0, ErrStoreConflict
	}
	return m.put(key, value), nil
}

func (m *memSubjectStore) Erase(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return false, nil
	}
	delete(m.vals, key)
	m.history = slices.DeleteFunc(m.history, func(b []byte) bool { return string(b) == string(v.v) })
	m.notify(SubjectChange{Key: key, Removed: true})
	return true, nil
}

func (m *memSubjectStore) Keys(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range maps.Keys(m.vals) {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks, nil
}

func (m *memSubjectStore) SubjectChanges(ctx context.Context) (<-chan SubjectChange, error) {
	in := make(chan SubjectChange, 1024)
	out := make(chan SubjectChange)
	m.mu.Lock()
	m.subs = append(m.subs, in)
	m.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-in:
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (m *memSubjectStore) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.vals)
}
