package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/mdtap/mdtap"
)

// Sink takes raw records once their exchange is over. The proxy holds only a
// Sink: it never sees a publisher, so it cannot publish a record that did not
// go through the redacting stage behind the Sink. Submit may block while the
// stage is full; it runs after the client has its response.
type Sink interface {
	Submit(raw *mdtap.Record)
}

// SubjectHeader tags a request with the client's internal user id. The
// sidecar removes it before forwarding and records only its blind index.
const SubjectHeader = "x-mdtap-subject"

// captureTransport forwards a request to the provider and tees both bodies
// into a record. It never returns an error: a failed upstream call becomes a
// 502 or 504 response with a clear message (goproxy would otherwise just
// drop the client's connection), and its record carries the error's shape.
type captureTransport struct {
	upstream   http.RoundTripper
	sink       Sink
	maxCapture int
	service    string
	now        func() time.Time
	hosts      map[string]HostConfig
	metrics    *metrics
	inflight   atomic.Int64 // exchanges whose record is not yet handed on
}

func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.inflight.Add(1)
	start := t.now()
	rec := &mdtap.Record{V: mdtap.SchemaVersion, ID: ulid.Make().String(), Time: mdtap.Timestamp{Time: start}, Service: t.service}
	rec.TranID = req.Header.Get("x-api-tran-id")
	rec.APIType = req.Header.Get("x-api-type")
	rec.Transmission = mdtap.TransmissionOf(rec.APIType)
	rec.Subject = req.Header.Get(SubjectHeader)
	req.Header.Del(SubjectHeader)
	// The query and headers are parsed and copied in finish, after the
	// response; here only what forwarding needs is done.
	rec.Request = mdtap.Request{Method: req.Method, Host: req.URL.Host, Path: req.URL.Path}
	reqHeader, rawQuery := req.Header, req.URL.RawQuery
	if req.Host != "" && req.Host != req.URL.Host {
		rec.Request.Host = req.Host
	}

	var reqCap *bodyCapture
	if req.Body != nil && req.Body != http.NoBody {
		reqCap = newBodyCapture(t.maxCapture, req.ContentLength)
		req.Body = &teeReader{rc: req.Body, c: reqCap}
	}

	resp, err := t.upstream.RoundTrip(req)
	if err != nil {
		status, msg := upstreamFailure(req.Context(), err)
		var reqErr error
		if reqCap != nil {
			reqErr = reqCap.snapshot().err
		}
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, errForbiddenAddress), errors.Is(err, errOwnAddress):
			// Checked at dial time, on the address the name resolved to.
			status, msg = http.StatusForbidden, "refused: "+forbiddenCause(err)
			t.metrics.refuse("forbidden_address")
		case errors.Is(reqErr, errBodyTooLarge), errors.As(reqErr, &mbe):
			status, msg = http.StatusRequestEntityTooLarge, "request body exceeds the sidecar's limit; the upstream call was aborted"
			if mbe != nil {
				t.metrics.limit("body_bytes")
			}
		case errors.Is(reqErr, errBadChunk):
			status, msg = http.StatusBadRequest, "malformed chunked request body; the upstream call was aborted"
		case status == http.StatusGatewayTimeout:
			t.metrics.limit("upstream_timeout")
		}
		rec.Error = msg
		t.finish(rec, start, reqHeader, rawQuery, reqCap, nil, nil)
		if status == http.StatusBadGateway || status == http.StatusGatewayTimeout {
			t.metrics.upstreamError(status)
		}
		body := "mdtap: " + msg + "\n"
		kind := "upstream"
		switch status {
		case http.StatusForbidden:
			kind = "refused"
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			kind = "request"
		}
		return &http.Response{
			Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, errorHeader: {kind}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       req,
		}, nil
	}

	echoed := rec.TranID != "" && resp.Header.Get("x-api-tran-id") == rec.TranID
	if rec.TranID != "" {
		rec.TranIDEchoed = &echoed
	}
	respPart := &mdtap.Response{Status: resp.StatusCode, Headers: lowerHeaders(resp.Header)}
	if resp.Body == nil || resp.Body == http.NoBody {
		t.finish(rec, start, reqHeader, rawQuery, reqCap, respPart, nil)
		return resp, nil
	}
	respCap := newBodyCapture(t.maxCapture, resp.ContentLength)
	tee := &teeReader{rc: resp.Body, c: respCap}
	tee.done = func() {
		// Trailers are known only once the body is read.
		for k, v := range resp.Trailer {
			respPart.Headers[strings.ToLower(k)] = v
		}
		t.finish(rec, start, reqHeader, rawQuery, reqCap, respPart, respCap)
	}
	resp.Body = tee
	return resp, nil
}

// finish completes the record with what the bodies captured and hands it on.
// It runs after the client has the response (the body's EOF or Close).
func (t *captureTransport) finish(rec *mdtap.Record, start time.Time, reqHeader http.Header, rawQuery string, reqCap *bodyCapture, resp *mdtap.Response, respCap *bodyCapture) {
	rec.DurationMS = float64(t.now().Sub(start).Microseconds()) / 1000
	rec.Request.Query, rec.Request.Headers = mdtap.ParseQuery(rawQuery), lowerHeaders(reqHeader)
	if reqCap != nil {
		fill(&rec.Request.Payload, reqCap.snapshot(), rec.Request.Headers)
	}
	if resp != nil {
		rec.Response = resp
		if respCap != nil {
			s := respCap.snapshot()
			fill(&resp.Payload, s, resp.Headers)
			if !s.complete && rec.Error == "" {
				// The client went away, or the provider's body broke off.
				if isTimeout(s.err) {
					t.metrics.limit("upstream_read_timeout")
				}
				if s.err != nil {
					rec.Error = "upstream: response body ended early: " + shapeError(s.err)
				} else {
					rec.Error = "downstream: client closed before the response body ended"
				}
			}
		}
	}
	t.sink.Submit(rec)
	t.inflight.Add(-1)
}

// fill records a captured body in a raw payload: the captured wire bytes
// (decoded later, off the request path), sizes, and the full body's SHA-256
// when it was cut, from which the redactor derives the keyed digest.
func fill(p *mdtap.Payload, s captured, headers map[string][]string) {
	p.Body = s.data
	p.BodyBytes = s.total
	p.CapturedBytes = int64(len(s.data))
	p.Truncated = s.truncated
	p.FullSHA256 = s.fullSum
	if ce := firstHeader(headers, "content-encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		p.ContentEncoding = strings.ToLower(ce)
	}
}

func lowerHeaders(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = append([]string(nil), v...)
	}
	return out
}

func firstHeader(h map[string][]string, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func forbiddenCause(err error) string {
	if errors.Is(err, errOwnAddress) {
		return errOwnAddress.Error()
	}
	return errForbiddenAddress.Error() + " (name that address with --allow-host to call it)"
}

// upstreamFailure maps a round-trip error to the status the client gets and
// the error's shape. net/http's *url.Error prints the whole URL, and MyData
// refresh and revoke calls carry secrets in the query string: the shape
// keeps only the operation and the cause, never the URL or a header value.
func upstreamFailure(ctx context.Context, err error) (int, string) {
	status := http.StatusBadGateway
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status = http.StatusGatewayTimeout
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return status, "upstream: request cancelled by the client"
	}
	return status, "upstream: " + shapeError(err)
}

// shapeError describes an error without a URL, query string or payload.
func shapeError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ve *tls.CertificateVerificationError
	var ce tls.AlertError
	var oe *net.OpError
	var re tls.RecordHeaderError
	switch {
	case errors.As(err, &ve):
		return "tls: provider certificate not trusted: " + ve.Err.Error()
	case errors.As(err, &re):
		return "tls: provider did not answer with TLS"
	case errors.As(err, &ce):
		return "tls: provider refused the handshake: " + ce.Error()
	case errors.As(err, &oe):
		if oe.Timeout() {
			return oe.Op + " " + oe.Net + " " + addrString(oe.Addr) + ": timeout"
		}
		return oe.Op + " " + oe.Net + " " + addrString(oe.Addr) + ": " + causeOf(oe.Err)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection closed by the provider"
	}
	msg := err.Error()
	// Last resort: whatever the message, cut anything that looks like a URL.
	if i := strings.IndexAny(msg, "?"); i >= 0 {
		msg = msg[:i] + "…"
	}
	if strings.Contains(msg, "timeout awaiting response headers") {
		return "timeout awaiting response headers"
	}
	return msg
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func causeOf(err error) string {
	var se interface{ Unwrap() error }
	for errors.As(err, &se) && se.Unwrap() != nil {
		err = se.Unwrap()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && !strings.Contains(s[i:], " ") {
		return s
	}
	return s
}
