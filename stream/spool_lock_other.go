//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package stream

import "os"

// lockDir opens the lock file; this platform has no flock, so nothing
// stops a second process from using the spool: do not.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, spoolPerm)
}
