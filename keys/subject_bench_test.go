package keys

import (
	"context"
	"fmt"
	"testing"
)

// The cost the proxy pays per subject record on top of protecting it: a
// cache hit (map lookup under a mutex, LRU bump).
func BenchmarkSubjectSealerHit(b *testing.B) {
	dir := b.TempDir() + "/keys"
	if err := Init(context.Background(), dir, ""); err != nil {
		b.Fatal(err)
	}
	main, _ := Load(context.Background(), dir)
	k := NewSubjectKeys(main, newMemSubjectStore(), SubjectOptions{})
	bis := make([]string, 1000)
	for i := range bis {
		bis[i] = blindIndex(b, main, fmt.Sprint("s", i))
		sealer(b, k, bis[i])
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := k.Sealer(ctx, bis[i%len(bis)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// A miss against a store that answers at once: generating the subject's
// keyset, wrapping it under the main AEAD key, one Get and one Create.
func BenchmarkSubjectSealerMiss(b *testing.B) {
	dir := b.TempDir() + "/keys"
	if err := Init(context.Background(), dir, ""); err != nil {
		b.Fatal(err)
	}
	main, _ := Load(context.Background(), dir)
	k := NewSubjectKeys(main, newMemSubjectStore(), SubjectOptions{CacheSize: 1})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		bi := blindIndex(b, main, fmt.Sprint("s", i))
		if _, err := k.Sealer(ctx, bi); err != nil {
			b.Fatal(err)
		}
	}
}
