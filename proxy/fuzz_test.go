package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

// The Completer reads what providers and clients send: compressed bodies
// and JSON. Seeds in testdata/fuzz/<Target>/ are the simulator's responses.

// fuzzDecodeMax is the decoded-size cap under fuzzing: small, so that the
// cap is reached and bombs cost nothing.
const fuzzDecodeMax = 4 << 10

// FuzzDecodeBody: whatever the wire bytes, under each encoding decode keeps
// the wire body's hash and either replaces the body by at most the cap of
// decoded bytes, which compress and decode back to themselves, or flags the
// body and leaves the wire bytes alone.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{"", `{"rsp_code":"00000"}`, "\x1f\x8b\x08\x00", "\x78\x9c\x03\x00\x00\x00\x00\x01"} {
		f.Add([]byte(s))
	}
	f.Add(compress(f, "gzip", bytes.Repeat([]byte("{}"), fuzzDecodeMax)))
	f.Fuzz(func(t *testing.T, wire []byte) {
		sum := sha256.Sum256(wire)
		for _, enc := range []string{"gzip", "deflate", "br", "zstd"} {
			p := mdtap.Payload{ContentEncoding: enc, Body: bytes.Clone(wire), BodyBytes: int64(len(wire)), CapturedBytes: int64(len(wire))}
			decode(&p, fuzzDecodeMax)
			if len(wire) > 0 && !bytes.Equal(p.FullSHA256, sum[:]) {
				t.Fatalf("%s: wire hash not kept", enc)
			}
			switch p.OpaqueReason {
			case "":
				if len(wire) == 0 {
					continue
				}
				if enc == "zstd" {
					t.Fatal("an unknown encoding decoded")
				}
				if p.DecodedBytes != int64(len(p.Body)) || p.DecodedBytes > fuzzDecodeMax {
					t.Fatalf("%s: decoded_bytes %d for %d bytes (cap %d)", enc, p.DecodedBytes, len(p.Body), fuzzDecodeMax)
				}
				q := mdtap.Payload{ContentEncoding: enc, Body: compress(t, enc, p.Body)}
				decode(&q, fuzzDecodeMax)
				if q.OpaqueReason != "" || !bytes.Equal(q.Body, p.Body) {
					t.Fatalf("%s: %d decoded bytes do not survive compression (%s)", enc, len(p.Body), q.OpaqueReason)
				}
			case mdtap.OpaqueDecodeError, mdtap.OpaqueDecodeLimit:
				if !bytes.Equal(p.Body, wire) || p.DecodedBytes != 0 {
					t.Fatalf("%s: flagged %s but the wire bytes changed", enc, p.OpaqueReason)
				}
			default:
				t.Fatalf("%s: opaque reason %q", enc, p.OpaqueReason)
			}
		}
	})
}

func compress(tb testing.TB, enc string, data []byte) []byte {
	var b bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	default:
		tb.Fatalf("compress: %s", enc)
	}
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzTopLevel: on any body topLevel never panics, and on a valid JSON
// object (unique names) it finds exactly the string members a full decoder
// finds under the names asked for.
func FuzzTopLevel(f *testing.F) {
	for _, s := range []string{`{"rsp_code":"00000","rsp_msg":"성공","account_list":[]}`, `{"error":"invalid_grant","error_description":"x"}`,
		`{"rsp_code":1,"rsp_msg":null}`, `{"a":{"rsp_code":"x"},"rsp_code":"\u0030"}`, `[]`, `{"rsp_code":"0"`, `{"rsp_code":"0","rsp_code":"1"}`} {
		f.Add([]byte(s))
	}
	names := []string{"rsp_code", "rsp_msg", "error"}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := topLevel(body, names...)
		for name := range got {
			if name != "rsp_code" && name != "rsp_msg" && name != "error" {
				t.Fatalf("topLevel returned %q, not asked for", name)
			}
		}
		if !jsontext.Value(body).IsValid() {
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			return // not an object
		}
		for _, name := range names {
			want, isString := obj[name].(string)
			v, found := got[name]
			if found != isString || v != want {
				t.Fatalf("topLevel %s = %q (found %v), full decode %#v", name, v, found, obj[name])
			}
		}
	})
}
