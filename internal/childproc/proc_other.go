//go:build !linux

package childproc

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a server may outlive
// a test binary that is killed before its cleanup runs.
func sysProcAttr() *syscall.SysProcAttr { return nil }
