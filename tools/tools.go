//go:build tools

// Package tools pins the versions of the external programs that mdtap's tests
// build and run (versitygw, the S3 server behind internal/s3test). It is a
// separate module so that their dependencies never enter the main go.mod.
//
// internal/s3test reads the pinned version from this go.mod and builds the
// binary with `go build` run in this directory; bumping the version here
// rebuilds it.
package tools

import (
	_ "github.com/versity/versitygw/cmd/versitygw"
)
