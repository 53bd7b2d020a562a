package loadgen

import (
	"os/exec"

	"github.com/mdtap/mdtap/internal/childproc"
)

// Child is a process started by the bench: in its own process group (so a
// terminal's Ctrl-C reaches only the bench, which stops its children in
// order), killed by the kernel when the bench dies.
type Child = childproc.Process

// StartChild starts cmd as a Child.
func StartChild(cmd *exec.Cmd) (*Child, error) { return childproc.Start(cmd) }
