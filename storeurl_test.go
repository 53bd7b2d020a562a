package mdtap_test

import (
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
)

func TestParseStoreURL(t *testing.T) {
	cases := []struct {
		in   string
		want mdtap.StoreURL
	}{
		{"s3://archive", mdtap.StoreURL{Scheme: "s3", Bucket: "archive", Secure: true, Region: "us-east-1"}},
		{"s3://archive/mdtap/prod/?endpoint=127.0.0.1:7070&secure=false&region=ap-northeast-2",
			mdtap.StoreURL{Scheme: "s3", Bucket: "archive", Prefix: "mdtap/prod", Endpoint: "127.0.0.1:7070", Region: "ap-northeast-2"}},
		{"s3://my.bucket-1?secure=true", mdtap.StoreURL{Scheme: "s3", Bucket: "my.bucket-1", Secure: true, Region: "us-east-1"}},
		{"file:///var/lib/mdtap/../mdtap/archive/", mdtap.StoreURL{Scheme: "file", Dir: "/var/lib/mdtap/archive"}},
		{"file://localhost/srv/a", mdtap.StoreURL{Scheme: "file", Dir: "/srv/a"}},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := mdtap.ParseStoreURL(tc.in)
			if err != nil {
				t.Fatalf("ParseStoreURL(%q) = %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseStoreURL(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			again, err := mdtap.ParseStoreURL(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseStoreURL(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestParseStoreURLErrors(t *testing.T) {
	cases := map[string]string{
		"":                                     "no scheme",
		"archive":                              "no scheme",
		"gs://bucket":                          "unsupported scheme",
		"s3:///prefix":                         "no bucket",
		"s3://Bad_Bucket":                      "not a valid S3 bucket",
		"s3://ab":                              "not a valid S3 bucket",
		"s3://bucket?endpoint=http://h:1":      "endpoint",
		"s3://bucket?secure=maybe":             "secure",
		"s3://bucket?region=":                  "region is empty",
		"s3://bucket?endpont=h:1":              `unknown parameter "endpont"`,
		"s3://bucket?secure=true&secure=false": "given 2 times",
		"s3://key:secret@bucket":               "credentials",
		"s3://bucket/a//b":                     "empty segment",
		"file://relative/dir":                  "names host",
		"file:///dir?x=1":                      "no query",
	}
	for in, want := range cases {
		_, err := mdtap.ParseStoreURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseStoreURL(%q) = %v, want an error mentioning %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") && !strings.Contains(want, "credentials") {
			t.Errorf("ParseStoreURL(%q) error quotes the credentials: %v", in, err)
		}
	}
}

func TestStoreKey(t *testing.T) {
	u, _ := mdtap.ParseStoreURL("s3://b1b/p/q")
	if got := u.Key("records/x"); got != "p/q/records/x" {
		t.Fatalf("Key = %q", got)
	}
	u, _ = mdtap.ParseStoreURL("s3://b1b")
	if got := u.Key("records/x"); got != "records/x" {
		t.Fatalf("Key = %q", got)
	}
}
