package kmstest

import "syscall"

// sysProcAttr puts the server in its own process group and has the kernel
// SIGKILL it when the thread that started it exits, so no server outlives a
// crashed or killed test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
