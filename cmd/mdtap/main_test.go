package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets the test binary act as mdtap when testMainEnv is set, so
// commands that spawn mdtap (bench proxy spawns its relay and proxy
// children through os.Executable) work under `go test` too.
func TestMain(m *testing.M) {
	if os.Getenv(testMainEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
