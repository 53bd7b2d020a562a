package keys

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/rs/zerolog"
)

// DefaultWatchInterval is a sensible polling interval for Watch: a rotation
// reaches every reader within it, and each poll only reads a few small files.
const DefaultWatchInterval = 10 * time.Second

// Watch polls the set's files every interval and reloads when their content
// changed (any of a loaded purpose's keyset or metadata file). It polls
// rather than using file notifications because a Kubernetes Secret volume
// changes by swapping a symlink to a new directory, which inotify on the old
// files does not report. A failed reload keeps the current keys, is logged
// and is retried at the next poll. Log lines carry purposes, key ids and
// errors, never key material. Watch returns when ctx is done.
func (s *Set) Watch(ctx context.Context, every time.Duration, log zerolog.Logger) {
	if every <= 0 {
		every = DefaultWatchInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// A failure is logged as a warning when it is new, at debug level while
	// it repeats, so a KMS outage does not flood the log.
	var lastErr string
	fail := func(err error, msg string) {
		ev := log.Debug()
		if err.Error() != lastErr {
			ev, lastErr = log.Warn(), err.Error()
		}
		ev.Err(err).Str("dir", s.dir).Msg(msg)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.onDisk()
		if err != nil {
			fail(err, "keys: cannot read key files; keeping the loaded keys")
			continue
		}
		if v == s.st.Load().version {
			continue
		}
		old := s.Primary()
		if err := s.Reload(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			fail(err, "keys: reload failed; keeping the loaded keys")
			continue
		}
		lastErr = ""
		cur := s.Primary()
		log.Info().Str("dir", s.dir).
			Uint32("aead_primary", cur.AEAD).Uint32("daead_primary", cur.DAEAD).Uint32("prf_primary", cur.PRF).
			Bool("primary_changed", cur != old).
			Msg("keys: reloaded")
	}
}

// onDisk digests the set's files as they are on disk now, the way load
// digests what it read.
func (s *Set) onDisk() ([sha256.Size]byte, error) {
	fs := make([]*files, len(s.purposes))
	for i, p := range s.purposes {
		f, err := readFiles(s.dir, p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fs[i] = f
	}
	return digest(s.purposes, fs), nil
}
