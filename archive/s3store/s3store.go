// Package s3store is the archive's store on S3-compatible object storage
// (AWS S3, MinIO, versitygw, Ceph RGW), the store of s3:// URLs. It is the
// only package that imports minio-go.
//
// PutIfAbsent is a PUT with "If-None-Match: *" (S3 conditional writes, on AWS
// since 2024-08; MinIO; versitygw since v1.0, which serialises conditional
// writes with a per-key lock), so a manifest position can be taken by one
// writer only. A server that ignores the header would let two archivers
// sharing a chain id overwrite each other's manifest; with one chain per
// archiver (the default) nothing depends on it.
package s3store

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
)

// DefaultMaxRetries is how often minio-go retries one request (with its own
// short backoff) before the error reaches the caller; the archiver retries
// whole batches with a longer backoff of its own.
const DefaultMaxRetries = 3

// awsEndpoint is the endpoint of an s3:// URL without endpoint=.
const awsEndpoint = "s3.amazonaws.com"

// Options configure a Store beyond its URL.
type Options struct {
	// AccessKey and SecretKey (and SessionToken for temporary credentials).
	// Empty: taken from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN.
	AccessKey, SecretKey, SessionToken string
	// CAFile is a PEM file of certificate authorities to trust besides the
	// system's, for an endpoint with a private CA.
	CAFile string
	// MaxRetries per request; default DefaultMaxRetries.
	MaxRetries int
	// Transport replaces the HTTP transport (tests); CAFile is then ignored.
	Transport http.RoundTripper
}

// Store is an archive.Store on an S3 bucket, under a key prefix.
type Store struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	region string
}

var _ archive.Store = (*Store)(nil)

// New returns a store for an s3:// URL. It does not contact the server:
// EnsureBucket does.
func New(u mdtap.StoreURL, o Options) (*Store, error) {
	if u.Scheme != "s3" {
		return nil, fmt.Errorf("s3 store: url scheme %q, want s3", u.Scheme)
	}
	creds, err := credentialsOf(o)
	if err != nil {
		return nil, err
	}
	endpoint, lookup := u.Endpoint, minio.BucketLookupPath
	if endpoint == "" {
		endpoint, lookup = awsEndpoint, minio.BucketLookupDNS
	}
	transport := o.Transport
	if transport == nil {
		t, err := minio.DefaultTransport(u.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3 store: transport: %w", err)
		}
		t.MaxIdleConnsPerHost = 64
		if o.CAFile != "" {
			pool, err := certPool(o.CAFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig.RootCAs = pool
		}
		transport = t
	}
	retries := o.MaxRetries
	if retries <= 0 {
		retries = DefaultMaxRetries
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:        creds,
		Secure:       u.Secure,
		Region:       u.Region,
		BucketLookup: lookup,
		Transport:    transport,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	s := &Store{client: client, bucket: u.Bucket, region: u.Region}
	if u.Prefix != "" {
		s.prefix = u.Prefix + "/"
	}
	return s, nil
}

func credentialsOf(o Options) (*credentials.Credentials, error) {
	if o.AccessKey != "" || o.SecretKey != "" {
		if o.AccessKey == "" || o.SecretKey == "" {
			return nil, errors.New("s3 store: give both the access key and the secret key")
		}
		return credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken), nil
	}
	access, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if access == "" || secret == "" {
		return nil, errors.New("s3 store: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return credentials.NewStaticV4(access, secret, os.Getenv("AWS_SESSION_TOKEN")), nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("s3 store: read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s3 store: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// ErrNoBucket is returned by EnsureBucket when the bucket does not exist and
// may not be created.
var ErrNoBucket = errors.New("bucket does not exist")

// EnsureBucket checks that the bucket exists, creating it when create is set
// (--create-bucket). Without create, a missing bucket is ErrNoBucket.
func (s *Store) EnsureBucket(ctx context.Context, create bool) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", s.bucket, s.ctxErr(ctx, err))
	}
	if ok {
		return nil
	}
	if !create {
		return fmt.Errorf("bucket %s: %w", s.bucket, ErrNoBucket)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil // created meanwhile, by another archiver
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", s.bucket, s.ctxErr(ctx, err))
	}
	return nil
}

func (s *Store) key(rel string) string { return s.prefix + rel }

// ctxErr makes an error caused by the context's end errors.Is the context's
// error, whatever shape minio-go gave it.
func (s *Store) ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".zst"):
		return "application/zstd"
	}
	return "application/octet-stream"
}

// putOptions: the payload is protected by a CRC32C checksum the server
// verifies (what minio-go does over TLS anyway), not by a SHA-256 in the
// signature. Over plain HTTP minio-go would otherwise sign the payload in
// aws-chunked streaming form, which costs a SHA-256 and an HMAC per 64 KiB
// and which versitygw v1.8.0 misparses for an empty body (it reads the final
// chunk as a new request and answers it with a stray 400).
func putOptions(key string) minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: contentType(key), DisableContentSha256: true}
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := archive.ValidKey(key); err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put object %s: %w", key, err)
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.key(key), bytes.NewReader(data), int64(len(data)), putOptions(key))
	if err != nil {
		return fmt.Errorf("put object %s: %w", key, s.ctxErr(ctx, err))
	}
	return nil
}

// PutIfAbsent implements archive.Store with "If-None-Match: *". The upload
// is one PUT (no multipart), so the condition covers it whole.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if err := archive.ValidKey(key); err != nil {
		return fmt.Errorf("put object if absent: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put object %s if absent: %w", key, err)
	}
	opts := putOptions(key)
	opts.DisableMultipart = true
	opts.SetMatchETagExcept("*")
	_, err := s.client.PutObject(ctx, s.bucket, s.key(key), bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed" {
			return fmt.Errorf("put object %s if absent: %w", key, archive.ErrExists)
		}
		// 409 ConditionalRequestConflict (AWS: a concurrent conditional
		// write in flight) is left transient: a retry gets 412 or succeeds.
		return fmt.Errorf("put object %s if absent: %w", key, s.ctxErr(ctx, err))
	}
	return nil
}

// notFound reports whether err says the object is not there. A key below
// an object (posix backends: "a/b" when "a" is a file) reads as not there.
func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket"
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := archive.ValidKey(key); err != nil {
		return nil, fmt.Errorf("get object: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get object %s: %w", key, err)
	}
	// One request (Core), not minio.Object's lazy reads, which re-check the
	// ETag and would fail if the object is replaced while it is read.
	body, info, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.getErr(ctx, key, err)
	}
	defer body.Close()
	if strings.HasSuffix(info.Key, "/") {
		return nil, fmt.Errorf("get object %s: %w", key, archive.ErrNotFound)
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(info.Size, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, s.getErr(ctx, key, err)
	}
	if info.Size >= 0 && int64(buf.Len()) != info.Size {
		return nil, fmt.Errorf("get object %s: read %d bytes of %d", key, buf.Len(), info.Size)
	}
	return buf.Bytes(), nil
}

func (s *Store) getErr(ctx context.Context, key string, err error) error {
	if notFound(err) {
		return fmt.Errorf("get object %s: %w", key, archive.ErrNotFound)
	}
	return fmt.Errorf("get object %s: %w", key, s.ctxErr(ctx, err))
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key string) (archive.ObjectInfo, error) {
	if err := archive.ValidKey(key); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("stat object: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return archive.ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, archive.ErrNotFound)
		}
		return archive.ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, s.ctxErr(ctx, err))
	}
	if strings.HasSuffix(info.Key, "/") {
		return archive.ObjectInfo{}, fmt.Errorf("stat object %s: %w", key, archive.ErrNotFound)
	}
	return archive.ObjectInfo{Key: key, Size: info.Size, ModTime: info.LastModified}, nil
}

// maxListPage is the most keys S3 returns per list request.
const maxListPage = 1000

// List implements archive.Store with ListObjectsV2 (start-after paging). Keys
// that are not valid archive keys (directory markers, foreign objects) are
// skipped.
func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]archive.ObjectInfo, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list objects %s: limit %d is not positive", prefix, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list objects %s: %w", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when we break out early
	opts := minio.ListObjectsOptions{
		Prefix:    s.key(prefix),
		Recursive: true,
		MaxKeys:   min(limit, maxListPage),
	}
	if startAfter != "" {
		opts.StartAfter = s.key(startAfter)
	}
	var out []archive.ObjectInfo
	for o := range s.client.ListObjectsIter(lctx, s.bucket, opts) {
		if o.Err != nil {
			return nil, fmt.Errorf("list objects %s: %w", prefix, s.ctxErr(ctx, o.Err))
		}
		rel, ok := strings.CutPrefix(o.Key, s.prefix)
		if !ok || archive.ValidKey(rel) != nil {
			continue
		}
		out = append(out, archive.ObjectInfo{Key: rel, Size: o.Size, ModTime: o.LastModified})
		if len(out) >= limit {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list objects %s: %w", prefix, err)
	}
	return out, nil
}
