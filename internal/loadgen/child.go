package loadgen

import (
	"os"
	"os/exec"
	"runtime"
)

// Child is a process started by the bench.
type Child struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
}

// StartChild starts cmd in its own process group (so a terminal's Ctrl-C
// reaches only the bench, which stops its children in order) with the
// kernel set to SIGKILL it when the bench dies. Pdeathsig fires when the
// thread that started the child exits, so the child is started and waited
// for from a goroutine locked to its thread for the child's whole life.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	detach(cmd)
	c := &Child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the child has exited; Err then says how.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is the child's exit error, valid once Done is closed.
func (c *Child) Err() error { return c.waitErr }

// Signal sends sig to the child.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }
