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

// Watch reloads the set when the content of its source changed (any of a
// loaded purpose's keyset or metadata file). It polls every interval; a
// source that is a KeysetNotifier (a NATS key-value bucket) also triggers a
// check as soon as it reports a change, so a published rotation is picked up
// within moments and the poll only backs the notifications up.
//
// It polls a directory rather than using file notifications because a
// Kubernetes Secret volume changes by swapping a symlink to a new directory,
// which inotify on the old files does not report. A failed reload keeps the
// current keys, is logged and is retried at the next poll or notification.
// Log lines carry purposes, key ids and errors, never key material. Watch
// returns when ctx is done.
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
		ev.Err(err).Str("source", s.src.String()).Msg(msg)
	}
	var changes <-chan struct{}
	if n, ok := s.src.(KeysetNotifier); ok {
		c, err := n.KeysetChanges(ctx)
		if err != nil {
			fail(err, "keys: cannot watch the key source for changes; polling only")
		}
		changes = c
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-changes:
			if !ok {
				changes = nil
				if ctx.Err() == nil {
					log.Warn().Str("source", s.src.String()).Msg("keys: change notifications stopped; polling only")
				}
				continue
			}
		}
		v, err := s.current(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fail(err, "keys: cannot read the key files; keeping the loaded keys")
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
		log.Info().Str("source", s.src.String()).
			Uint32("aead_primary", cur.AEAD).Uint32("daead_primary", cur.DAEAD).Uint32("prf_primary", cur.PRF).
			Bool("primary_changed", cur != old).
			Msg("keys: reloaded")
	}
}

// current digests the set's files as the source holds them now, the way
// load digests what it read. It takes no lock: a read that catches a
// management command half way only makes the digest differ, and the reload
// that follows reads under the lock.
func (s *Set) current(ctx context.Context) ([sha256.Size]byte, error) {
	fs := make([]*files, len(s.purposes))
	for i, p := range s.purposes {
		f, err := readFrom(ctx, s.src, p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fs[i] = f
	}
	return digest(s.purposes, fs), nil
}
