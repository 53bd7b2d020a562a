package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the keys package (docs/keys.md).
const (
	// DefaultKeysBucket holds a key directory's KEK-wrapped keysets and
	// their metadata, as `mdtap keys publish` copies them, for sidecars
	// started with --keys nats://HOST:PORT/BUCKET.
	DefaultKeysBucket = "mdtap_keys"
	// DefaultSubjectsBucket holds the per-subject keysets, each wrapped by
	// the main AEAD keyset, under their subject's blind index.
	DefaultSubjectsBucket = "mdtap_subjects"
)

// BucketConfig is the configuration OpenBucket creates a bucket with.
type BucketConfig struct {
	// Bucket is the bucket's name. Required.
	Bucket string
	// Description is shown in `nats kv ls`.
	Description string
	// History is how many revisions of a key the bucket keeps, 1 to 64;
	// default 1: an overwritten or purged value is not kept as history.
	History uint8
	// Replicas of the bucket's stream; default DefaultReplicas.
	Replicas int
}

// Bucket is a KV that can also list, watch, delete, purge and erase. Its
// methods are safe for concurrent use.
type Bucket struct {
	*KV
	js     jetstream.JetStream
	name   string
	stream string // the bucket's JetStream stream, KV_<bucket>
}

// OpenBucket binds to a key-value bucket, creating it with cfg (file
// storage) when absent.
//
// It creates the bucket's stream itself rather than through the key-value
// API, with the same settings except one: the key-value API makes streams
// that deny message deletes, for good (the setting cannot be lifted later),
// and Erase needs them. A bucket made elsewhere (nats kv add) is used as it
// is; Erase on it purges but cannot overwrite (ErrEraseDenied).
func OpenBucket(ctx context.Context, nc *nats.Conn, cfg BucketConfig) (*Bucket, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("key-value bucket: no name")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.History == 0 {
		cfg.History = 1
	}
	if cfg.History > jetstream.KeyValueMaxHistory {
		return nil, fmt.Errorf("key-value bucket %s: history %d is more than %d", cfg.Bucket, cfg.History, jetstream.KeyValueMaxHistory)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = DefaultReplicas
	}
	stream := "KV_" + cfg.Bucket
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:              stream,
			Description:       cfg.Description,
			Subjects:          []string{"$KV." + cfg.Bucket + ".>"},
			MaxMsgsPerSubject: int64(cfg.History),
			MaxBytes:          -1,
			MaxMsgSize:        -1,
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			Storage:           jetstream.FileStorage,
			Replicas:          cfg.Replicas,
			AllowRollup:       true,
			DenyDelete:        false, // the one difference: Erase deletes securely
			Duplicates:        2 * time.Minute,
			AllowDirect:       true,
			Discard:           jetstream.DiscardNew,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // created meanwhile by another process
			return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
		}
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
	}
	return &Bucket{KV: &KV{kv: kv}, js: js, name: cfg.Bucket, stream: stream}, nil
}

// ErrBucketNotFound: BindBucket found no such bucket.
var ErrBucketNotFound = errors.New("key-value bucket not found")

// BindBucket binds to an existing key-value bucket, for a reader that must
// not create one (a sidecar loading its keys); ErrBucketNotFound when there
// is none.
func BindBucket(ctx context.Context, nc *nats.Conn, bucket string) (*Bucket, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("key-value bucket %s: %w", bucket, ErrBucketNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", bucket, err)
	}
	return &Bucket{KV: &KV{kv: kv}, js: js, name: bucket, stream: "KV_" + bucket}, nil
}

// Name returns the bucket's name.
func (b *Bucket) Name() string { return b.name }

// isConflict reports a compare-and-set loss, whichever way the server or
// client spells it (10164 is what replicated streams answer).
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, ErrRevisionConflict)
}

// Create stores value under key if the key holds no value (never written,
// or deleted or purged since), and returns the new revision; otherwise
// ErrRevisionConflict.
func (b *Bucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := b.KV.Put(ctx, key, value, 0)
	if err != nil && isConflict(err) {
		return 0, ErrRevisionConflict
	}
	return rev, err
}

// Update stores value under key if the key is still at revision rev, and
// returns the new revision; otherwise ErrRevisionConflict.
func (b *Bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		return 0, errors.New("update: revision 0 (use Create)")
	}
	n, err := b.KV.Put(ctx, key, value, rev)
	if err != nil && isConflict(err) {
		return 0, ErrRevisionConflict
	}
	return n, err
}

// Set stores value under key whatever is there, and returns the new
// revision.
func (k *KV) Set(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return rev, nil
}

// Delete puts a delete marker on key: Get reports ErrKeyNotFound, but the
// revisions before the marker stay in the bucket's history (up to its
// History). Use Purge or Erase to remove them.
func (k *KV) Delete(ctx context.Context, key string) error {
	if err := k.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Purge removes every revision of key, leaving one purge marker (no value)
// in their place. The server drops the revisions from the stream but does
// not overwrite their bytes on disk; Erase does.
func (k *KV) Purge(ctx context.Context, key string) error {
	if err := k.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}

// Keys returns the keys holding a value that begin with prefix ("" for
// every key), sorted. A non-empty prefix must end with "." (a whole token).
func (k *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	filter := jetstream.AllKeys
	if prefix != "" {
		if !strings.HasSuffix(prefix, ".") {
			return nil, fmt.Errorf("list keys: prefix %q does not end with a dot", prefix)
		}
		filter = prefix + ">"
	}
	w, err := k.kv.Watch(ctx, filter, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer w.Stop()
	var keys []string
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list keys: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list keys: watcher stopped")
			}
			if e == nil { // every current value delivered
				return keys, nil
			}
			if !seen[e.Key()] {
				seen[e.Key()] = true
				keys = append(keys, e.Key())
			}
		}
	}
}

// KVOp is what happened to a key.
type KVOp uint8

const (
	KVPut    KVOp = iota // a value was stored
	KVDelete             // a delete marker was put
	KVPurge              // the key was purged (or erased)
)

// KVChange is one change Watch reports.
type KVChange struct {
	Key      string
	Op       KVOp
	Revision uint64
	Value    []byte // the stored value for KVPut, nil otherwise
}

// Watch reports the changes to keys matching filter (a key, or a pattern
// with * and >; "" for every key) made after the call, on a channel that is
// closed when ctx is done. The watch survives reconnects (an ordered
// consumer that resumes where it stopped). A receiver that falls behind
// holds up the watch, not the bucket.
func (k *KV) Watch(ctx context.Context, filter string) (<-chan KVChange, error) {
	if filter == "" {
		filter = jetstream.AllKeys
	}
	w, err := k.kv.Watch(ctx, filter, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", filter, err)
	}
	out := make(chan KVChange, 16)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				c := KVChange{Key: e.Key(), Revision: e.Revision()}
				switch e.Operation() {
				case jetstream.KeyValuePut:
					c.Op, c.Value = KVPut, e.Value()
				case jetstream.KeyValueDelete:
					c.Op = KVDelete
				default:
					c.Op = KVPurge
				}
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// ErrEraseDenied: the bucket's stream denies message deletes (it was made
// by the key-value API, not OpenBucket), so Erase could only purge the key:
// the value is gone from the bucket, but the server may keep its bytes on
// disk until it compacts the block. Recreate the bucket with mdtap to erase.
var ErrEraseDenied = errors.New("the bucket's stream denies message deletes: value purged, not overwritten")

// maxEraseRounds bounds Erase's retries while writers keep adding values.
const maxEraseRounds = 5

// Erase destroys the value under key so that no revision of it can be read
// back: every stored revision is deleted with the server overwriting its
// bytes in the store (a secure delete, not just dropped from the index),
// then a purge marker takes the key's place. It reports whether there was a
// value. A value stored concurrently, between the deletes and the marker,
// is erased too (the marker is only written while the key holds no value).
//
// In a replicated bucket (Replicas > 1) each server erases its copy; the
// Raft logs keep the writes until their next compaction.
//
// It needs permission on $JS.API.STREAM.MSG.DELETE.KV_<bucket> besides the
// usual key-value subjects.
func (b *Bucket) Erase(ctx context.Context, key string) (bool, error) {
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return false, fmt.Errorf("erase %s: %w", key, err)
	}
	erased := false
	for range maxEraseRounds {
		hist, err := b.kv.History(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			hist = nil
		} else if err != nil {
			return erased, fmt.Errorf("erase %s: %w", key, err)
		}
		var last uint64 // the last revision left: a marker, or none
		values := 0
		for _, e := range hist {
			if e.Operation() != jetstream.KeyValuePut {
				last = max(last, e.Revision())
				continue
			}
			if err := st.SecureDeleteMsg(ctx, e.Revision()); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				if st.CachedInfo().Config.DenyDelete {
					// Still take the value out of reach of every reader.
					if perr := b.Purge(ctx, key); perr != nil {
						return erased, fmt.Errorf("erase %s: %w; and purge failed: %w", key, ErrEraseDenied, perr)
					}
					return true, fmt.Errorf("erase %s: %w", key, ErrEraseDenied)
				}
				return erased, fmt.Errorf("erase %s revision %d: %w", key, e.Revision(), err)
			}
			values++
		}
		if values == 0 {
			return erased, nil // no value (left): never stored, or erased already
		}
		erased = true
		// The purge marker tells watchers (sidecars drop their cached copy);
		// it is only written if nothing was stored since the deletes.
		m := nats.NewMsg(b.subject(key))
		m.Header.Set("KV-Operation", "PURGE")
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		_, err = b.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(last))
		if err == nil {
			return erased, nil
		}
		if !isConflict(err) {
			return erased, fmt.Errorf("erase %s: purge: %w", key, err)
		}
	}
	return erased, fmt.Errorf("erase %s: values kept being stored under it", key)
}

// subject is the stream subject of key.
func (b *Bucket) subject(key string) string { return "$KV." + b.name + "." + key }
