package redact_test

import (
	"fmt"
	"testing"

	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
)

// benchmarkSubject protects a 2 KiB simulator response with real Tink keys:
// without a subject; with one but no per-subject keys (so the difference to
// the next is the per-subject lookup alone, not the blind index); with one
// whose keys are cached (the proxy's steady
// state: a cache hit is a map lookup), or with a new subject for every
// record out of a cache big enough for all (a miss: one store Get and one
// Create, here against memory, plus generating and wrapping a keyset).
func benchmarkSubject(b *testing.B, mode string) {
	ex := simTransactions(b, 2<<10)
	set := keysIn(b, b.TempDir())
	p, err := redact.Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	r := redact.New(p, set)
	raw := rawFromExchange(1, ex)
	switch mode {
	case "main":
		raw.Subject = "customer-1" // tagged, but no per-subject keys: the main keys
	case "hit", "miss":
		r.Subjects = sealers{keys.NewSubjectKeys(set, newMemSubjects(), keys.SubjectOptions{CacheSize: 1 << 20})}
		raw.Subject = "customer-1"
	}
	b.SetBytes(int64(len(ex.RespBody) + len(ex.ReqBody)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if mode == "miss" {
			i++
			raw.Subject = fmt.Sprint("customer-", i)
		}
		if _, err := r.Protect(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtectSim2KiBNoSubject(b *testing.B)     { benchmarkSubject(b, "none") }
func BenchmarkProtectSim2KiBSubjectMain(b *testing.B)   { benchmarkSubject(b, "main") }
func BenchmarkProtectSim2KiBSubjectCached(b *testing.B) { benchmarkSubject(b, "hit") }
func BenchmarkProtectSim2KiBSubjectNew(b *testing.B)    { benchmarkSubject(b, "miss") }
