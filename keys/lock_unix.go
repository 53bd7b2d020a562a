//go:build unix

package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockRetry is how often a lock attempt is repeated while another process
// holds the lock. flock(2) cannot be interrupted, so waiting is a poll that
// honours ctx.
const lockRetry = 20 * time.Millisecond

// lockExclusive takes the exclusive management lock of dir, creating
// DIR/keys.lock (mode 0600) when needed.
func lockExclusive(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(lockPath(dir), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := flock(ctx, f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// lockShared takes the shared lock of dir if DIR/keys.lock exists and can be
// opened. A directory without one (a Kubernetes Secret volume, which is
// read-only and swapped as a whole) is read without a lock.
func lockShared(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.Open(lockPath(dir))
	if err != nil {
		return func() {}, nil
	}
	if err := flock(ctx, f, syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func flock(ctx context.Context, f *os.File, how int) error {
	var t *time.Timer
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if t == nil {
			t = time.NewTimer(lockRetry)
			defer t.Stop()
		} else {
			t.Reset(lockRetry)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for another mdtap keys command: %w", ctx.Err())
		case <-t.C:
		}
	}
}
