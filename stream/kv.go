package stream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultHeadsBucket is the key-value bucket that keeps the archive's chain
// heads (manifest chains and the access log), so a deleted tail of a chain is
// detectable even when the objects are gone.
const DefaultHeadsBucket = "mdtap_heads"

// Errors of KV.
var (
	// ErrKeyNotFound: no value under the key yet.
	ErrKeyNotFound = errors.New("key not found")
	// ErrRevisionConflict: the key changed since the revision the caller
	// read; read it again and retry.
	ErrRevisionConflict = errors.New("key changed since it was read")
)

// KV is a compare-and-set key-value store on a JetStream bucket.
type KV struct {
	kv jetstream.KeyValue
}

// OpenKV binds to bucket, creating it (file storage, replicas as given, one
// value per key kept in history) when absent.
func OpenKV(ctx context.Context, nc *nats.Conn, bucket string, replicas int) (*KV, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if bucket == "" {
		bucket = DefaultHeadsBucket
	}
	if replicas <= 0 {
		replicas = DefaultReplicas
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: "mdtap chain heads", History: 5, Storage: jetstream.FileStorage, Replicas: replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", bucket, err)
	}
	return &KV{kv: kv}, nil
}

// Get returns the value under key and its revision.
func (k *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrKeyNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	return e.Value(), e.Revision(), nil
}

// Put stores value under key if the key is still at revision rev (0: the
// key must not exist yet), and returns the new revision.
func (k *KV) Put(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	var n uint64
	var err error
	if rev == 0 {
		n, err = k.kv.Create(ctx, key, value)
	} else {
		n, err = k.kv.Update(ctx, key, value, rev)
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return 0, ErrRevisionConflict
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return n, nil
}
