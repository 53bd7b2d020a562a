package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

// This file adapts NATS key-value buckets (stream.Bucket) to the stores the
// keys package declares, and holds the wiring the proxy, reveal and audit
// commands share for keys from NATS and per-subject keys:
//
//	--keys DIR | nats://HOST:PORT/BUCKET --kek URI
//	      │                 │
//	  keys.Load       keys.LoadFrom(natsKeysetStore) ──▶ Set.Watch (KV watch + poll)
//	      └──────┬──────────┘
//	         main *keys.Set ──▶ keys.NewSubjectKeys(main, natsSubjectStore{mdtap_subjects})
//	                                   │                          │
//	                 redact.Redactor.Subjects = subjectSealers   redact.Revealer.Subjects = subjectOpeners

// natsKeysetStore is a key directory's copy in a NATS bucket (mdtap keys
// publish): one key per file name, holding the file's bytes.
type natsKeysetStore struct {
	b     *stream.Bucket
	where string // nats://HOST:PORT/BUCKET without credentials
}

var (
	_ keys.KeysetStore    = natsKeysetStore{}
	_ keys.KeysetNotifier = natsKeysetStore{}
)

func (s natsKeysetStore) ReadKeyFile(ctx context.Context, name string) ([]byte, error) {
	v, _, err := s.b.Get(ctx, name)
	if errors.Is(err, stream.ErrKeyNotFound) {
		return nil, fs.ErrNotExist
	}
	return v, err
}

func (s natsKeysetStore) WriteKeyFile(ctx context.Context, name string, data []byte) error {
	_, err := s.b.Set(ctx, name, data)
	return err
}

func (s natsKeysetStore) String() string { return s.where }

func (s natsKeysetStore) KeysetChanges(ctx context.Context) (<-chan struct{}, error) {
	changes, err := s.b.Watch(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for range changes {
			select { // one pending notice covers any number of changes
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, nil
}

// natsSubjectStore keeps per-subject keysets in a NATS bucket (history 1,
// made by stream.OpenBucket so that Erase can overwrite). A sidecar opens
// the bucket on first use, not at start, since it may start before NATS is
// reachable; a failed open is tried again at the next use.
type natsSubjectStore struct{ b *lazyBucket }

type lazyBucket struct {
	mu   sync.Mutex
	b    *stream.Bucket
	open func(context.Context) (*stream.Bucket, error)
}

func (l *lazyBucket) get(ctx context.Context) (*stream.Bucket, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b == nil {
		b, err := l.open(ctx)
		if err != nil {
			return nil, err
		}
		l.b = b
	}
	return l.b, nil
}

// subjectStoreOf is the store of an open bucket.
func subjectStoreOf(b *stream.Bucket) natsSubjectStore {
	return natsSubjectStore{&lazyBucket{b: b}}
}

var (
	_ keys.SubjectAdmin   = natsSubjectStore{}
	_ keys.SubjectWatcher = natsSubjectStore{}
)

func (s natsSubjectStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return nil, 0, err
	}
	v, rev, err := b.Get(ctx, key)
	if errors.Is(err, stream.ErrKeyNotFound) {
		return nil, 0, fs.ErrNotExist
	}
	return v, rev, err
}

func (s natsSubjectStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return 0, err
	}
	rev, err := b.Create(ctx, key, value)
	if errors.Is(err, stream.ErrRevisionConflict) {
		return 0, keys.ErrStoreConflict
	}
	return rev, err
}

func (s natsSubjectStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return 0, err
	}
	n, err := b.Update(ctx, key, value, rev)
	if errors.Is(err, stream.ErrRevisionConflict) {
		return 0, keys.ErrStoreConflict
	}
	return n, err
}

func (s natsSubjectStore) Erase(ctx context.Context, key string) (bool, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return false, err
	}
	return b.Erase(ctx, key)
}

func (s natsSubjectStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return nil, err
	}
	return b.Keys(ctx, prefix)
}

func (s natsSubjectStore) SubjectChanges(ctx context.Context) (<-chan keys.SubjectChange, error) {
	b, err := s.b.get(ctx)
	if err != nil {
		return nil, err
	}
	changes, err := b.Watch(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make(chan keys.SubjectChange, 16)
	go func() {
		defer close(out)
		for c := range changes {
			sc := keys.SubjectChange{Key: c.Key, Revision: c.Revision, Removed: c.Op != stream.KVPut}
			if sc.Removed {
				sc.Revision = 0
			}
			select {
			case out <- sc:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// subjectSealers and subjectOpeners adapt keys.SubjectKeys to the redactor's
// interfaces (whose methods return redact's own interface types).
type subjectSealers struct{ k *keys.SubjectKeys }

func (s subjectSealers) ForSubject(ctx context.Context, blindIndex string) (redact.Sealer, error) {
	se, err := s.k.Sealer(ctx, blindIndex)
	if err != nil {
		return nil, err
	}
	return se, nil
}

type subjectOpeners struct{ k *keys.SubjectKeys }

func (s subjectOpeners) ForSubject(ctx context.Context, blindIndex string) (redact.Opener, error) {
	o, err := s.k.Opener(ctx, blindIndex)
	if err != nil {
		return nil, err
	}
	return o, nil
}

var (
	_ redact.SubjectSealers = subjectSealers{}
	_ redact.SubjectOpeners = subjectOpeners{}
)

// keysNATS reports whether a --keys value names a NATS bucket,
// nats://HOST:PORT/BUCKET (or tls://), and splits it into the server URL
// and the bucket ("" when the path is empty: the default bucket).
func keysNATS(spec string) (serverURL, bucket string, ok bool, err error) {
	if !strings.HasPrefix(spec, "nats://") && !strings.HasPrefix(spec, "tls://") {
		return "", "", false, nil
	}
	u, err := url.Parse(spec)
	if err != nil || u.Host == "" {
		return "", "", true, usagef("--keys %s: want nats://HOST:PORT/BUCKET", stream.RedactURL(spec))
	}
	bucket = strings.Trim(u.Path, "/")
	if strings.Contains(bucket, "/") {
		return "", "", true, usagef("--keys %s: the path is one bucket name", stream.RedactURL(spec))
	}
	u.Path, u.RawPath = "", ""
	return u.String(), bucket, true, nil
}

// loadedKeys is a command's main keyset and what to close after it.
type loadedKeys struct {
	*keys.Set
	nc *nats.Conn // the connection of a set loaded from NATS; nil otherwise
}

// Close closes the NATS connection of a set loaded from a bucket.
func (l *loadedKeys) Close() {
	if l.nc != nil {
		l.nc.Close()
	}
}

// loadKeys loads the keys a command's --keys names: a key directory, or a
// NATS bucket (nats://HOST:PORT/BUCKET, default bucket mdtap_keys) that
// `mdtap keys publish` fills, unwrapped with the KEK of kek ("" uses the
// KEK URI the metadata records). nf gives the NATS credentials; its URL is
// replaced by the --keys URL. The set's Watch follows the source either way.
func loadKeys(ctx context.Context, log zerolog.Logger, spec, kek string, nf *natsFlags, purposes ...keys.Purpose) (*loadedKeys, error) {
	serverURL, bucket, isNATS, err := keysNATS(spec)
	if err != nil {
		return nil, err
	}
	if !isNATS {
		if kek != "" {
			return nil, usagef("--kek goes with --keys nats://…: a key directory records its KEK")
		}
		set, err := keys.Load(ctx, spec, purposes...)
		if err != nil {
			return nil, err
		}
		return &loadedKeys{Set: set}, nil
	}
	if bucket == "" {
		bucket = stream.DefaultKeysBucket
	}
	o := nf.options()
	o.URL, o.FailFast = serverURL, true
	nc, err := stream.Connect(o, log)
	if err != nil {
		return nil, err
	}
	b, err := stream.BindBucket(ctx, nc, bucket)
	if err != nil {
		nc.Close()
		if errors.Is(err, stream.ErrBucketNotFound) {
			return nil, fmt.Errorf("%w (run 'mdtap keys publish --dir DIR --nats %s --bucket %s' first)", err, stream.RedactURL(serverURL), bucket)
		}
		return nil, err
	}
	src := natsKeysetStore{b: b, where: stream.RedactURL(serverURL) + "/" + bucket}
	set, err := keys.LoadFrom(ctx, src, kek, purposes...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &loadedKeys{Set: set, nc: nc}, nil
}

// openSubjectKeys returns the per-subject keys in bucket (default
// mdtap_subjects) on nc, wrapped by main. A sidecar (create) makes the
// bucket when it is absent, on first use; a reader (not create) binds to it
// now and gets stream.ErrBucketNotFound when there is none.
func openSubjectKeys(ctx context.Context, nc *nats.Conn, bucket string, main *keys.Set, create bool, o keys.SubjectOptions) (*keys.SubjectKeys, error) {
	if bucket == "" {
		bucket = stream.DefaultSubjectsBucket
	}
	if !create {
		b, err := stream.BindBucket(ctx, nc, bucket)
		if err != nil {
			return nil, err
		}
		return keys.NewSubjectKeys(main, subjectStoreOf(b), o), nil
	}
	lazy := &lazyBucket{open: func(ctx context.Context) (*stream.Bucket, error) {
		return stream.OpenBucket(ctx, nc, subjectsBucketConfig(bucket))
	}}
	return keys.NewSubjectKeys(main, natsSubjectStore{lazy}, o), nil
}

// subjectsBucketConfig is how mdtap makes the per-subject keysets' bucket:
// one revision per key, so an erased keyset leaves no history behind.
func subjectsBucketConfig(bucket string) stream.BucketConfig {
	return stream.BucketConfig{
		Bucket: bucket, Description: "mdtap per-subject keysets, wrapped by the main aead keyset", History: 1,
	}
}

// subjectOpenersFor gives a reader (mdtap reveal, mdtap audit query
// --decrypt) the per-subject keys, when nf names a NATS server: it binds to
// bucket (default mdtap_subjects) read-only. Without a server it returns nil
// openers (subject records' own-key values then count as unavailable). A
// missing bucket is not an error: no subject has keys of its own, which a
// warning says. The returned func closes the connection.
func subjectOpenersFor(ctx context.Context, a *app, nf *natsFlags, bucket string, set *keys.Set) (redact.SubjectOpeners, func(), error) {
	if nf.url == "" {
		return nil, func() {}, nil
	}
	if err := nf.validate(); err != nil {
		return nil, nil, err
	}
	if bucket == "" {
		bucket = stream.DefaultSubjectsBucket
	}
	o := nf.options()
	o.FailFast = true
	nc, err := stream.Connect(o, a.log)
	if err != nil {
		return nil, nil, err
	}
	sk, err := openSubjectKeys(ctx, nc, bucket, set, false, keys.SubjectOptions{})
	switch {
	case errors.Is(err, stream.ErrBucketNotFound):
		a.log.Warn().Str("bucket", bucket).Msg("no per-subject keysets bucket: revealing with the main keys only")
		return nil, nc.Close, nil
	case err != nil:
		nc.Close()
		return nil, nil, err
	}
	return subjectOpeners{sk}, nc.Close, nil
}
