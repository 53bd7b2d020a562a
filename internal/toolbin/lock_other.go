//go:build !unix

package toolbin

// lockFile does nothing where flock is missing: parallel test processes may
// then build the binary twice, and the last rename wins.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
