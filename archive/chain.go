package archive

import (
	"context"
	"errors"
	"fmt"
)

// syncTail finds where the chain ends: at the head store's head, or past it
// at the store's last manifest (an archiver that crashed between storing
// manifests and moving the head leaves those). What does not add up is
// logged and counted, never fatal: a head ahead of the store (a deleted
// tail) or a manifest that differs from the head is evidence for the audit,
// and the chain goes on from the head so that verify can show it.
func (a *Archiver) syncTail(ctx context.Context) error {
	h, rev, err := a.heads.Get(ctx, a.o.Chain)
	switch {
	case errors.Is(err, ErrNoHead):
		h, rev = Head{}, 0
	case err != nil:
		a.m.errors.WithLabelValues(ErrReasonHead).Inc()
		return fmt.Errorf("read chain head: %w", err)
	}
	after := ""
	if h.Seq > 0 {
		after = ManifestKey(a.o.Chain, h.Seq)
	}
	var last ManifestRef
	n := 0
	for ref, err := range manifestRefs(ctx, a.store, a.o.Chain, after) {
		if err != nil {
			a.m.errors.WithLabelValues(ErrReasonStore).Inc()
			return fmt.Errorf("list chain: %w", err)
		}
		last = ref
		n++
	}
	tail := h
	if n > 0 {
		data, err := a.store.Get(ctx, last.Key)
		if err != nil {
			a.m.errors.WithLabelValues(ErrReasonStore).Inc()
			return fmt.Errorf("read last manifest: %w", err)
		}
		tail = Head{Seq: last.Seq, Hash: ManifestHash(data), Records: h.Records}
		if m, err := ParseManifest(data); err == nil {
			tail.Records = m.ChainRecords
		} else {
			a.m.errors.WithLabelValues(ErrReasonChain).Inc()
			a.log.Error().Err(err).Str("key", last.Key).Msg("last manifest of the chain is unreadable; continuing after it")
		}
		if last.Seq != h.Seq+uint64(n) {
			a.m.errors.WithLabelValues(ErrReasonChain).Inc()
			a.log.Error().Uint64("head", h.Seq).Uint64("last", last.Seq).Int("manifests_after_head", n).
				Msg("chain has gaps after its head; continuing after its last manifest (run audit verify)")
		}
		if rev == 0 {
			a.log.Warn().Msg("chain has no head in the head store but has manifests in the store (head store reset?); continuing after the last manifest")
		}
		a.headDirty = true
	} else if h.Seq > 0 {
		data, err := a.store.Get(ctx, ManifestKey(a.o.Chain, h.Seq))
		switch {
		case errors.Is(err, ErrNotFound):
			a.m.errors.WithLabelValues(ErrReasonChain).Inc()
			a.log.Error().Uint64("head", h.Seq).
				Msg("the chain head's manifest is missing from the store: its tail was deleted; continuing after the head (run audit verify)")
		case err != nil:
			a.m.errors.WithLabelValues(ErrReasonStore).Inc()
			return fmt.Errorf("read head manifest: %w", err)
		case ManifestHash(data) != h.Hash:
			a.m.errors.WithLabelValues(ErrReasonChain).Inc()
			a.log.Error().Uint64("head", h.Seq).
				Msg("the chain head's manifest differs from the head: it was altered; continuing after the head (run audit verify)")
		}
	}
	a.tail, a.headRev, a.synced = tail, rev, true
	a.log.Info().Uint64("seq", tail.Seq).Uint64("records", tail.Records).Msg("chain tail")
	return nil
}
