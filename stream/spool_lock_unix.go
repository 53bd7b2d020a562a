//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package stream

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path (created 0600), held
// until the returned file is closed or the process ends: two sidecars
// writing one spool would interleave their segments.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, spoolPerm)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrSpoolLocked
		}
		return nil, err
	}
	return f, nil
}
