package toolbin

import (
	"os/exec"

	"github.com/mdtap/mdtap/internal/childproc"
)

// Process is a tool started for a test; it dies with the test binary.
type Process = childproc.Process

// StartProcess starts cmd so that it cannot outlive the test (childproc).
func StartProcess(cmd *exec.Cmd) (*Process, error) { return childproc.Start(cmd) }
