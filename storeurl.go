package mdtap

import (
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// StoreURL locates the archive: records, manifests and the access log all live
// under it. Two schemes:
//
//	s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&secure=true|false&region=R
//	file:///ABS/DIR
//
// For s3, endpoint defaults to AWS S3 (virtual-host-style addressing); a custom
// endpoint (MinIO, versitygw, Ceph) is addressed path-style. secure defaults to
// true and region to us-east-1. Credentials never appear in the URL: they come
// from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
type StoreURL struct {
	Scheme string // "s3" or "file"

	Bucket   string // s3
	Prefix   string // s3: key prefix without leading or trailing "/"; may be empty
	Endpoint string // s3: host:port; empty means AWS S3
	Secure   bool   // s3: https
	Region   string // s3

	Dir string // file: absolute, cleaned directory
}

// DefaultRegion is the region of an s3 store URL that names none.
const DefaultRegion = "us-east-1"

// ParseStoreURL parses and validates a store URL, naming the part that is wrong.
func ParseStoreURL(raw string) (StoreURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return StoreURL{}, fmt.Errorf("store url: %w", err)
	}
	switch u.Scheme {
	case "s3":
		return parseS3URL(u)
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return StoreURL{}, fmt.Errorf("store url: file url names host %q; want file:///ABS/DIR", u.Host)
		}
		if u.RawQuery != "" {
			return StoreURL{}, fmt.Errorf("store url: file url takes no query")
		}
		if !path.IsAbs(u.Path) {
			return StoreURL{}, fmt.Errorf("store url: file url needs an absolute path, like file:///var/lib/mdtap/archive")
		}
		return StoreURL{Scheme: "file", Dir: path.Clean(u.Path)}, nil
	case "":
		return StoreURL{}, fmt.Errorf("store url: no scheme; want s3://BUCKET[/PREFIX]?… or file:///ABS/DIR")
	}
	return StoreURL{}, fmt.Errorf("store url: unsupported scheme %q; want s3 or file", u.Scheme)
}

func parseS3URL(u *url.URL) (StoreURL, error) {
	s := StoreURL{Scheme: "s3", Bucket: u.Host, Secure: true, Region: DefaultRegion}
	if u.User != nil {
		return StoreURL{}, fmt.Errorf("store url: credentials do not belong in the url; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if s.Bucket == "" {
		return StoreURL{}, fmt.Errorf("store url: s3 url has no bucket")
	}
	if !validBucket(s.Bucket) {
		return StoreURL{}, fmt.Errorf("store url: bucket %q is not a valid S3 bucket name", s.Bucket)
	}
	s.Prefix = strings.Trim(u.Path, "/")
	if strings.Contains(s.Prefix, "//") {
		return StoreURL{}, fmt.Errorf("store url: prefix has an empty segment")
	}
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return StoreURL{}, fmt.Errorf("store url: %s is given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "endpoint":
			if v == "" || strings.Contains(v, "/") {
				return StoreURL{}, fmt.Errorf("store url: endpoint %q: want HOST:PORT without a scheme", v)
			}
			s.Endpoint = v
		case "secure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return StoreURL{}, fmt.Errorf("store url: secure %q: want true or false", v)
			}
			s.Secure = b
		case "region":
			if v == "" {
				return StoreURL{}, fmt.Errorf("store url: region is empty")
			}
			s.Region = v
		default:
			return StoreURL{}, fmt.Errorf("store url: unknown parameter %q; known: endpoint, secure, region", key)
		}
	}
	return s, nil
}

// validBucket applies S3's bucket naming rules: 3–63 characters of lower-case
// letters, digits, '.' and '-', starting and ending with a letter or digit.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		edge := i == 0 || i == len(b)-1
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '-') && !edge:
		default:
			return false
		}
	}
	return true
}

// Key joins the store's prefix and a key relative to it.
func (s StoreURL) Key(rel string) string {
	if s.Prefix == "" {
		return rel
	}
	return s.Prefix + "/" + rel
}

// String renders the URL in its canonical form, defaults spelled out.
func (s StoreURL) String() string {
	if s.Scheme == "file" {
		return (&url.URL{Scheme: "file", Path: s.Dir}).String()
	}
	u := url.URL{Scheme: "s3", Host: s.Bucket}
	if s.Prefix != "" {
		u.Path = "/" + s.Prefix
	}
	q := url.Values{}
	if s.Endpoint != "" {
		q.Set("endpoint", s.Endpoint)
	}
	q.Set("secure", strconv.FormatBool(s.Secure))
	q.Set("region", s.Region)
	u.RawQuery = q.Encode()
	return u.String()
}
