// Command mdtap is the one binary of the mdtap capture sidecar. Each mode is a
// subcommand; this package parses flags and configuration, wires the packages
// together and maps errors to exit codes — nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
)

// Exit codes: 0 success, 1 the command failed (or found problems, for
// commands that check something), 2 the command could not run as asked.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func init() {
	// A process-wide setting of zerolog: set once, before any command logs.
	zerolog.TimeFieldFormat = zerolog.TimeFormatUnixMs
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// run executes one mdtap command line and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	root := newRoot(&app{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv})
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code // the command already reported
	}
	fmt.Fprintf(stderr, "mdtap: error: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "hint: run '%s --help'\n", cmd.CommandPath())
		return exitUsage
	}
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// usageError is an error in how mdtap was called: a bad flag, argument or
// configuration value. It exits 2 with a hint.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitError carries a specific exit code. With a nil err the command has
// already said what went wrong.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
