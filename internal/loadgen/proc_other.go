//go:build !linux

package loadgen

import (
	"errors"
	"time"
)

// ReadProc is implemented on Linux only.
func ReadProc(pid int) (ProcStat, error) { return ProcStat{}, errors.ErrUnsupported }

// BusyCPU is implemented on Linux only.
func BusyCPU() time.Duration { return 0 }

// SelfCPU is implemented on Linux only.
func SelfCPU() time.Duration { return 0 }
