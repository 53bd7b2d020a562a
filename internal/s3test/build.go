package s3test

import (
	"testing"

	"github.com/mdtap/mdtap/internal/toolbin"
)

const (
	// versitygwPackage is the main package built from tools/go.mod.
	versitygwPackage = "github.com/versity/versitygw/cmd/versitygw"
)

// Binary builds the versitygw binary pinned in tools/go.mod (see
// internal/toolbin), or returns the cached one, and fails the test if it cannot.
// A cold build takes about a minute on a 2-core machine.
func Binary(t testing.TB) string {
	t.Helper()
	return toolbin.Path(t, versitygwPackage)
}
