package archive_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mdtap/mdtap/archive"
)

func TestObjectRoundTrip(t *testing.T) {
	lines := [][]byte{
		[]byte(`{"id":"01JPA6N6D8ZQ3T9V5Y0B7C2K4M","a":"은행"}`),
		[]byte(`{"id":"01JPA6N6D8ZQ3T9V5Y0B7C2K4N","b":"\u0000"}`),
		bytes.Repeat([]byte("x"), 1<<20),
	}
	data, err := archive.EncodeObject(lines)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("object does not start with the zstd magic number: % x", data[:4])
	}
	got, err := archive.DecodeObject(data)
	if err != nil {
		t.Fatalf("DecodeObject: %v", err)
	}
	if !slices.EqualFunc(got, lines, bytes.Equal) {
		t.Errorf("DecodeObject gave %d lines, want the %d written", len(got), len(lines))
	}
	empty, err := archive.EncodeObject(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := archive.DecodeObject(empty); err != nil || len(got) != 0 {
		t.Errorf("DecodeObject(empty object) = %d lines, %v", len(got), err)
	}
	// A flipped bit fails the frame checksum, unless it lands on a bit the
	// decoder ignores: never does it give other lines.
	failed := 0
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 1
		got, err := archive.DecodeObject(bad)
		if err != nil {
			failed++
		} else if !slices.EqualFunc(got, lines, bytes.Equal) {
			t.Fatalf("DecodeObject with bit 0 of byte %d flipped gave other lines, no error", i)
		}
	}
	if failed < len(data)/2 {
		t.Errorf("only %d of %d single-bit flips failed to decode", failed, len(data))
	}
	if _, err := archive.DecodeObject([]byte("not zstd")); err == nil {
		t.Error("DecodeObject(not zstd) succeeded")
	}
}

func TestDedup(t *testing.T) {
	var d archive.Dedup
	recs := []string{
		`{"id":"A","n":1}`, `{"id":"B"}`, `{"n":2,"id":"A"}`, `{"id":"C"}`, `{"id":"B"}`,
	}
	var kept []string
	for _, r := range recs {
		first, err := d.First([]byte(r))
		if err != nil {
			t.Fatalf("First(%s): %v", r, err)
		}
		if first {
			kept = append(kept, r)
		}
	}
	if want := []string{recs[0], recs[1], recs[3]}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if _, err := d.First([]byte(`{"no":"id"}`)); err == nil {
		t.Error("First(record without id) succeeded")
	}
}
