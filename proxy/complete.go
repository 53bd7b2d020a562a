package proxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"net"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mdtap/mdtap"
)

// Completer finishes raw records on the capture queue, off the request path:
// it decodes compressed bodies (for capture only; the client got them as the
// provider sent them) within a cap, and fills in what the record needs from
// the payloads: sector and api from the path, org_code, rsp_code, rsp_msg.
type Completer struct {
	hosts      map[string]HostConfig
	maxDecoded int64
	metrics    *metrics
}

// Complete prepares one raw record for the redactor.
func (c *Completer) Complete(rec *mdtap.Record) {
	decode(&rec.Request.Payload, c.maxDecoded)
	if rec.Response != nil {
		decode(&rec.Response.Payload, c.maxDecoded)
	}
	m := mdtap.MatchAPI(rec.Request.Path)
	rec.Sector, rec.API = m.Sector, m.API
	rec.OrgCode = c.orgCode(rec)
	if rec.Response != nil && isJSON(rec.Response.Headers) {
		// Only OAuth endpoints answer with "error"; asking for it elsewhere
		// would scan every resource response to its end.
		names := []string{"rsp_code", "rsp_msg"}
		if rec.Sector == mdtap.SectorAuth {
			names = append(names, "error")
		}
		f := topLevel(rec.Response.Body, names...)
		rec.Response.RspCode, rec.Response.RspMsg, rec.Response.OAuthError = f["rsp_code"], f["rsp_msg"], f["error"]
	}
	c.metrics.completed(rec)
}

// orgCode finds the provider's org code: the request's query, form or JSON
// body, else the host map.
func (c *Completer) orgCode(rec *mdtap.Record) string {
	if v := rec.Request.Query["org_code"]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	if p := rec.Request.Payload; len(p.Body) > 0 && p.OpaqueReason == "" && !p.Truncated {
		switch {
		case isForm(rec.Request.Headers):
			if vals, ok := mdtap.ParseValues(string(p.Body)); ok && len(vals["org_code"]) > 0 {
				return vals["org_code"][0]
			}
		case isJSON(rec.Request.Headers):
			if v := topLevel(p.Body, "org_code")["org_code"]; v != "" {
				return v
			}
		}
	}
	host := rec.Request.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return c.hosts[strings.ToLower(host)].OrgCode
}

func mediaType(h map[string][]string) string {
	mt, _, _ := mime.ParseMediaType(firstHeader(h, "content-type"))
	return mt
}

func isJSON(h map[string][]string) bool {
	mt := mediaType(h)
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json"
}

func isForm(h map[string][]string) bool {
	return mediaType(h) == "application/x-www-form-urlencoded"
}

// topLevel reads the named string members of a JSON object's top level and
// stops as soon as it has them all (rsp_code and rsp_msg lead MyData
// bodies), so a long list after them costs nothing. A body that is not an
// object, or breaks off, yields what was found before.
func topLevel(body []byte, names ...string) map[string]string {
	out := make(map[string]string, len(names))
	// Duplicate names are the redactor's concern (it refuses them); here
	// checking them would only cost time.
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true))
	if dec.PeekKind() != '{' {
		return out
	}
	if _, err := dec.ReadToken(); err != nil {
		return out
	}
	for len(out) < len(names) && dec.PeekKind() == '"' {
		nt, err := dec.ReadToken()
		if err != nil {
			return out
		}
		name := nt.String()
		want := false
		for _, n := range names {
			if n == name {
				want = true
				break
			}
		}
		if !want || dec.PeekKind() != '"' {
			if err := dec.SkipValue(); err != nil {
				return out
			}
			continue
		}
		vt, err := dec.ReadToken()
		if err != nil {
			return out
		}
		out[name] = vt.String()
	}
	return out
}

// decode replaces a compressed body by its content, reading at most max
// decoded bytes. A body cut at the capture cap cannot be decoded and stays as
// captured; a body that decodes past max is flagged decode_limit (a possible
// decompression bomb, not followed) and one that does not decode is flagged
// decode_failed — both keep the wire bytes, which the redactor encrypts whole.
func decode(p *mdtap.Payload, max int64) {
	if p.ContentEncoding == "" || len(p.Body) == 0 || p.Truncated {
		return
	}
	if p.FullSHA256 == nil {
		// Keep the wire body's hash for a degraded record's digest: the
		// decoded content replaces the wire bytes below.
		sum := sha256.Sum256(p.Body)
		p.FullSHA256 = sum[:]
	}
	var r io.Reader
	var err error
	src := bytes.NewReader(p.Body)
	switch p.ContentEncoding {
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(src)
	case "deflate":
		// HTTP's deflate is zlib-wrapped, but servers send raw deflate too.
		if r, err = zlib.NewReader(src); err != nil {
			r, err = flate.NewReader(bytes.NewReader(p.Body)), nil
		}
	case "br":
		r = brotli.NewReader(src)
	default:
		p.OpaqueReason = mdtap.OpaqueDecodeError
		return
	}
	if err != nil {
		p.OpaqueReason = mdtap.OpaqueDecodeError
		return
	}
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	switch {
	case int64(len(out)) > max:
		p.OpaqueReason = mdtap.OpaqueDecodeLimit
	case err != nil && !errors.Is(err, io.EOF):
		p.OpaqueReason = mdtap.OpaqueDecodeError
	default:
		p.Body, p.DecodedBytes = out, int64(len(out))
	}
}
