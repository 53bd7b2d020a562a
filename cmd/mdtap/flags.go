package main

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
)

// byteSize is a size flag that takes units: 262144, 256KiB, 64MiB, 1GB.
// IEC units (KiB) are powers of 1024, SI units (KB) powers of 1000.
type byteSize int64

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("size %q: want a byte count with an optional unit, like 256KiB or 64MiB", s)
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("size %q is too large", s)
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string {
	return humanize.IBytes(uint64(*b))
}

func (b *byteSize) Type() string { return "size" }
