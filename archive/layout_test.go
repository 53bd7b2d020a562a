package archive_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
)

func TestObjectKeyRoundTrip(t *testing.T) {
	hour := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		k    archive.ObjectKey
		want string
	}{
		{
			archive.ObjectKey{Kind: archive.KindRecords, Partition: archive.PartitionOf(hour.Add(59*time.Minute), mdtap.SectorBank), Chain: "mdtap-archive.host-1", Seq: 42, Writer: "0a1b2c3d"},
			"records/dt=2026-03-15/hour=09/sector=bank/mdtap-archive.host-1-000000000042-0a1b2c3d.jsonl.zst",
		},
		{
			archive.ObjectKey{Kind: archive.KindDeadLetter, Day: hour, Chain: "c", Seq: 1, Writer: "ffffffff"},
			"deadletter/dt=2026-03-15/c-000000000001-ffffffff.jsonl.zst",
		},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		got, err := archive.ParseObjectKey(tt.want)
		if err != nil {
			t.Errorf("ParseObjectKey(%q): %v", tt.want, err)
			continue
		}
		if got.String() != tt.want || got.Chain != tt.k.Chain || got.Seq != tt.k.Seq || got.Writer != tt.k.Writer || got.Kind != tt.k.Kind {
			t.Errorf("ParseObjectKey(%q) = %+v, want %+v", tt.want, got, tt.k)
		}
		if err := archive.ValidKey(tt.want); err != nil {
			t.Errorf("ValidKey(%q): %v", tt.want, err)
		}
	}
	k, _ := archive.ParseObjectKey(tests[0].want)
	if got, want := k.Manifest(), "manifests/mdtap-archive.host-1/000000000042.json"; got != want {
		t.Errorf("Manifest() = %q, want %q", got, want)
	}
}

func TestParseObjectKeyErrors(t *testing.T) {
	for _, key := range []string{
		"",
		"records/dt=2026-03-15/hour=09/sector=bank/c-000000000001.jsonl.zst",          // no writer
		"records/dt=2026-03-15/hour=9/sector=bank/c-000000000001-0a1b2c3d.jsonl.zst",  // hour
		"records/dt=2026-13-15/hour=09/sector=bank/c-000000000001-0a1b2c3d.jsonl.zst", // month
		"records/dt=2026-03-15/hour=09/sector=nope/c-000000000001-0a1b2c3d.jsonl.zst", // sector
		"records/dt=2026-03-15/hour=09/sector=bank/c-000000000000-0a1b2c3d.jsonl.zst", // seq 0
		"records/dt=2026-03-15/hour=09/sector=bank/c-000000000001-0A1B2C3D.jsonl.zst", // upper hex
		"records/dt=2026-03-15/hour=09/sector=bank/c-000000000001-0a1b2c3d.json",      // ext
		"records/dt=2026-03-15/hour=09/sector=bank/-000000000001-0a1b2c3d.jsonl.zst",  // empty chain
		"records/dt=2026-03-15/hour=09/sector=bank/c_000000000001-0a1b2c3d.jsonl.zst", // separator
		"deadletter/2026-03-15/c-000000000001-0a1b2c3d.jsonl.zst",                     // dt=
		"manifests/c/000000000001.json",
	} {
		if k, err := archive.ParseObjectKey(key); err == nil {
			t.Errorf("ParseObjectKey(%q) = %+v, want an error", key, k)
		}
	}
}

func TestManifestKey(t *testing.T) {
	key := archive.ManifestKey("chain.a-b", 7)
	if key != "manifests/chain.a-b/000000000007.json" {
		t.Fatalf("ManifestKey = %q", key)
	}
	chain, seq, err := archive.ParseManifestKey(key)
	if err != nil || chain != "chain.a-b" || seq != 7 {
		t.Errorf("ParseManifestKey(%q) = %q, %d, %v", key, chain, seq, err)
	}
	for _, bad := range []string{"manifests/c/7.json", "manifests/c/000000000007.jsn", "manifests/c/x/000000000007.json", "manifests/.c/000000000007.json", "m/c/000000000007.json"} {
		if _, _, err := archive.ParseManifestKey(bad); err == nil {
			t.Errorf("ParseManifestKey(%q) succeeded, want an error", bad)
		}
	}
	// Zero padding lists a chain in order.
	keys := []string{archive.ManifestKey("c", 10), archive.ManifestKey("c", 9), archive.ManifestKey("c", 100)}
	slices.Sort(keys)
	if !strings.HasSuffix(keys[0], "09.json") || !strings.HasSuffix(keys[2], "100.json") {
		t.Errorf("sorted manifest keys %q are not in chain order", keys)
	}
}

func TestValidChain(t *testing.T) {
	for _, ok := range []string{"a", "mdtap-archive.host-1", "A_b.9", strings.Repeat("x", archive.MaxChainLen)} {
		if err := archive.ValidChain(ok); err != nil {
			t.Errorf("ValidChain(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "_x", "a/b", "a b", "ü", strings.Repeat("x", archive.MaxChainLen+1)} {
		if err := archive.ValidChain(bad); err == nil {
			t.Errorf("ValidChain(%q) = nil, want an error", bad)
		}
	}
}

func TestChainID(t *testing.T) {
	tests := []struct{ consumer, host, want string }{
		{"mdtap-archive", "archiver-7d9f", "mdtap-archive.archiver-7d9f"},
		{"mdtap-archive", "host.example.com", "mdtap-archive.host.example.com"},
		{"a b", "h/st", "a_b.h_st"},
		{"", "host", "x.host"},
	}
	for _, tt := range tests {
		got := archive.ChainID(tt.consumer, tt.host)
		if got != tt.want {
			t.Errorf("ChainID(%q, %q) = %q, want %q", tt.consumer, tt.host, got, tt.want)
		}
		if err := archive.ValidChain(got); err != nil {
			t.Errorf("ChainID(%q, %q) = %q: %v", tt.consumer, tt.host, got, err)
		}
	}
	if got := archive.ChainID(strings.Repeat("c", 100), strings.Repeat("h", 100)); len(got) != archive.MaxChainLen {
		t.Errorf("ChainID of long names has length %d, want %d", len(got), archive.MaxChainLen)
	}
}

func TestPartitionPrefixes(t *testing.T) {
	from := time.Date(2026, 3, 15, 22, 30, 0, 0, time.UTC)
	to := time.Date(2026, 3, 16, 0, 0, 1, 0, time.UTC)
	got := archive.PartitionPrefixes(from, to, nil)
	want := []string{
		"records/dt=2026-03-15/hour=22/",
		"records/dt=2026-03-15/hour=23/",
		"records/dt=2026-03-16/hour=00/",
	}
	if !slices.Equal(got, want) {
		t.Errorf("PartitionPrefixes(all sectors) = %q, want %q", got, want)
	}
	got = archive.PartitionPrefixes(from, from.Add(time.Minute), []mdtap.Sector{mdtap.SectorBank, mdtap.SectorCard})
	want = []string{"records/dt=2026-03-15/hour=22/sector=bank/", "records/dt=2026-03-15/hour=22/sector=card/"}
	if !slices.Equal(got, want) {
		t.Errorf("PartitionPrefixes(bank, card) = %q, want %q", got, want)
	}
	// A time in another zone partitions by its UTC hour.
	kst := time.FixedZone("KST", 9*3600)
	p := archive.PartitionOf(time.Date(2026, 3, 16, 8, 15, 0, 0, kst), mdtap.SectorInsu)
	if got := p.Prefix(); got != "records/dt=2026-03-15/hour=23/sector=insu/" {
		t.Errorf("Prefix of 08:15 KST = %q, want the 23:00 UTC partition", got)
	}
}

// A key that parses is the key its parts print: one object, one name.
func FuzzParseObjectKey(f *testing.F) {
	f.Add("records/dt=2026-03-15/hour=09/sector=bank/mdtap-archive.host-1-000000000042-0a1b2c3d.jsonl.zst")
	f.Add("deadletter/dt=2026-03-15/c-000000000001-ffffffff.jsonl.zst")
	f.Fuzz(func(t *testing.T, key string) {
		k, err := archive.ParseObjectKey(key)
		if err != nil {
			return
		}
		if got := k.String(); got != key {
			t.Fatalf("ParseObjectKey(%q).String() = %q", key, got)
		}
		if err := archive.ValidKey(key); err != nil {
			t.Fatalf("ParseObjectKey accepted %q, which ValidKey refuses: %v", key, err)
		}
	})
}
