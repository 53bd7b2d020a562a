package sim

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const contentTypeJSON = "application/json; charset=UTF-8"

// gzipBufferLimit is the largest body compressed in memory so that the
// response can carry a Content-Length; larger (padded) bodies are streamed.
const gzipBufferLimit = 1 << 20

// marshal encodes v without HTML escaping: providers send redirect_uri and
// memo text as is, and leak checks search for the plain values.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeJSON encodes v and writes it with status; rspCode is only recorded
// for the request log.
func (s *Simulator) writeJSON(w http.ResponseWriter, r *http.Request, status int, rspCode string, v any) {
	body, err := marshal(v)
	if err != nil {
		s.log.Error().Str("route", stateOf(r).route).Err(err).Msg("sim encode response")
		status, rspCode = http.StatusInternalServerError, codeSystem
		body, _ = marshal(rsp{RspCode: codeSystem, RspMsg: rspMsgs[codeSystem]})
	}
	st := stateOf(r)
	st.status, st.rspCode = status, rspCode
	s.writeBody(w, r, status, body)
}

// writeBody applies the body faults (garbage, big=N) and gzip, then writes.
func (s *Simulator) writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	f := stateOf(r).fault

	var src io.Reader = bytes.NewReader(body)
	size := int64(len(body))
	switch {
	case f.garbage:
		// Any proper prefix of a JSON object is invalid JSON, so half the
		// real body is guaranteed garbage while still looking plausible.
		body = body[:len(body)/2]
		src, size = bytes.NewReader(body), int64(len(body))
		status = http.StatusOK
		stateOf(r).status = status
	case f.big > len(body):
		src, size = padBody(body, f.big)
	}

	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		if size <= gzipBufferLimit {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = io.Copy(zw, src) // writes to a bytes.Buffer cannot fail
			_ = zw.Close()
			h.Set("Content-Length", strconv.Itoa(buf.Len()))
			w.WriteHeader(status)
			_, _ = w.Write(buf.Bytes())
			return
		}
		w.WriteHeader(status)
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		// A failed write means the client went away; nothing to report to.
		_, _ = io.Copy(zw, src)
		_ = zw.Close()
		return
	}
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(status)
	_, _ = io.Copy(w, src)
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip
// (RFC 9110 §12.5.3: "gzip" or "*" with a non-zero q).
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "x-gzip" && name != "*" {
			continue
		}
		q := strings.TrimSpace(params)
		if rest, ok := strings.CutPrefix(q, "q="); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil && f == 0 {
				continue
			}
		}
		return true
	}
	return false
}

// paddingField is appended to padded objects; its name says where it comes
// from so nobody mistakes it for MyData data.
const paddingField = `"sim_padding":"`

// padBody returns body rewritten to exactly n bytes (n > len(body)) and
// still valid JSON, as a stream. A JSON object gets a trailing
// "sim_padding" string of 'x's; when the gap is too small for the field, or
// body is not an object, whitespace pads instead (JSON allows it anywhere
// between tokens, including at the end).
func padBody(body []byte, n int) (io.Reader, int64) {
	gap := n - len(body)
	isObj := len(body) >= 2 && body[0] == '{' && body[len(body)-1] == '}'
	if !isObj {
		return io.MultiReader(bytes.NewReader(body), &fillReader{n: gap, b: ' '}), int64(n)
	}
	head := body[:len(body)-1]
	sep := ","
	if len(bytes.TrimSpace(head)) == 1 { // "{}": no member before ours
		sep = ""
	}
	// The field replaces the closing brace, so it adds overhead-1 bytes
	// before any filler.
	overhead := len(sep) + len(paddingField) + len(`"}`)
	if gap+1 < overhead {
		return io.MultiReader(bytes.NewReader(head), &fillReader{n: gap, b: ' '}, strings.NewReader("}")), int64(n)
	}
	return io.MultiReader(
		bytes.NewReader(head),
		strings.NewReader(sep+paddingField),
		&fillReader{n: gap + 1 - overhead, b: 'x'},
		strings.NewReader(`"}`),
	), int64(n)
}

// fillReader yields n copies of b.
type fillReader struct {
	n int
	b byte
}

func (f *fillReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	for i := range p {
		p[i] = f.b
	}
	f.n -= len(p)
	return len(p), nil
}
