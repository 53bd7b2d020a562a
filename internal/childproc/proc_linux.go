package childproc

import "syscall"

// sysProcAttr puts the tool in its own process group and has the kernel
// SIGKILL it when the test binary dies, so no server outlives a crashed or
// killed test. (Pdeathsig fires when the thread that started the child exits;
// Go only ends threads whose goroutine locked them and exited, which test
// code here does not do.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
