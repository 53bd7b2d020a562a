package mdtap_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
)

func TestProtectedForms(t *testing.T) {
	sum := bytes.Repeat([]byte{0xFE}, mdtap.HashBytes)
	cases := []struct {
		in       string
		form     mdtap.Form
		keyID    uint32
		shredded mdtap.Form
		data     string
	}{
		{mdtap.Dropped, mdtap.FormDrop, 0, "", ""},
		{mdtap.MaskValue("**********5678"), mdtap.FormMask, 0, "", "**********5678"},
		{mdtap.MaskValue("a:b:c"), mdtap.FormMask, 0, "", "a:b:c"},
		{mdtap.EncValue(fakeCT), mdtap.FormEnc, 42, "", ""},
		{mdtap.BlobValue(fakeCT), mdtap.FormBlob, 42, "", ""},
		{mdtap.TokValue(fakeCT), mdtap.FormTok, 42, "", ""},
		{mdtap.HashValue(4294967295, sum), mdtap.FormHash, 4294967295, "", ""},
		{mdtap.ShredValue(mdtap.FormTok, 9), mdtap.FormShred, 9, mdtap.FormTok, ""},
		{mdtap.KeepString("mdtap:enc:v1:forged"), mdtap.FormLit, 0, "", "mdtap:enc:v1:forged"},
	}
	for _, tc := range cases {
		t.Run(string(tc.form), func(t *testing.T) {
			p, err := mdtap.ParseProtected(tc.in)
			if err != nil {
				t.Fatalf("ParseProtected(%q) = %v", tc.in, err)
			}
			if p.Form != tc.form || p.KeyID != tc.keyID || p.Shredded != tc.shredded {
				t.Fatalf("ParseProtected(%q) = %+v, want form %s key %d shredded %q", tc.in, p, tc.form, tc.keyID, tc.shredded)
			}
			if tc.data != "" && p.Data != tc.data {
				t.Fatalf("ParseProtected(%q).Data = %q, want %q", tc.in, p.Data, tc.data)
			}
			switch tc.form {
			case mdtap.FormEnc, mdtap.FormBlob, mdtap.FormTok:
				b, err := p.Bytes()
				if err != nil || !bytes.Equal(b, fakeCT) {
					t.Fatalf("Bytes() = %x, %v; want the ciphertext back", b, err)
				}
			case mdtap.FormHash:
				b, err := p.Bytes()
				if err != nil || !bytes.Equal(b, sum) {
					t.Fatalf("Bytes() = %x, %v; want the sum back", b, err)
				}
			}
			// Every form must be safe in a URL path segment and a NATS header.
			if strings.ContainsAny(tc.in[len("mdtap:"):], "/?#% \r\n") && tc.form != mdtap.FormMask && tc.form != mdtap.FormLit {
				t.Fatalf("%q has characters unsafe in a path segment", tc.in)
			}
		})
	}
}

func TestParseProtectedErrors(t *testing.T) {
	if _, err := mdtap.ParseProtected("99900012345678"); !errors.Is(err, mdtap.ErrNotProtected) {
		t.Fatalf("ParseProtected(clear) = %v, want ErrNotProtected", err)
	}
	secret := "SECRET-VALUE-123"
	for _, in := range []string{
		"mdtap:", "mdtap:enc", "mdtap:enc:v2:AAAA", "mdtap:enc:v1:***", "mdtap:enc:v1:AAAA",
		"mdtap:hash:v1:x:AAAA", "mdtap:hash:v1:1:***", "mdtap:shred:v1:mask:1", "mdtap:shred:v1:enc:x",
		"mdtap:" + secret + ":v1:x", "mdtap:nope:v1:" + secret, "mdtap:drop:v2",
	} {
		_, err := mdtap.ParseProtected(in)
		if err == nil {
			t.Errorf("ParseProtected(%q) succeeded, want an error", in)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseProtected error quotes the value: %v", err)
		}
	}
}

func TestKeepString(t *testing.T) {
	if got := mdtap.KeepString("성공"); got != "성공" {
		t.Fatalf("KeepString(clear) = %q, want it unchanged", got)
	}
	if got := mdtap.KeepString(mdtap.Dropped); !strings.HasPrefix(got, "mdtap:lit:v1:") {
		t.Fatalf("KeepString(protected-looking) = %q, want a literal form", got)
	}
}

func TestAssociatedDataSeparatesRecordAndPath(t *testing.T) {
	a := mdtap.AssociatedData("01JQ0000000000000000000000", "response.body.name")
	for _, other := range [][]byte{
		mdtap.AssociatedData("01JQ0000000000000000000001", "response.body.name"),
		mdtap.AssociatedData("01JQ0000000000000000000000", "response.body.name2"),
		mdtap.AssociatedData("01JQ0000000000000000000000response.body", ".name"),
	} {
		if bytes.Equal(a, other) {
			t.Fatalf("AssociatedData collides: %q", other)
		}
	}
}

func TestPaths(t *testing.T) {
	p := mdtap.PathField("", "response")
	p = mdtap.PathField(p, "body")
	p = mdtap.PathField(p, "account_list")
	p = mdtap.PathIndex(p, 12)
	p = mdtap.PathField(p, "account_num")
	if want := "response.body.account_list[12].account_num"; p != want {
		t.Fatalf("path = %q, want %q", p, want)
	}
	odd := mdtap.PathField("request.body", `a.b"[0]`)
	if want := `request.body["a.b\"[0]"]`; odd != want {
		t.Fatalf("PathField(odd) = %q, want %q", odd, want)
	}
	for in, want := range map[string]string{
		"response.body.account_list[12].account_num": "response.body.account_list[*].account_num",
		"request.query.code[0]":                      "request.query.code[*]",
		`request.body["x[1]"][3]`:                    `request.body["x[1]"][*]`,
		`request.body["q\"[2]"]`:                     `request.body["q\"[2]"]`,
		"response.body":                              "response.body",
	} {
		if got := mdtap.PathWildcard(in); got != want {
			t.Errorf("PathWildcard(%q) = %q, want %q", in, got, want)
		}
	}
}
