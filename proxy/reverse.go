package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// hopHeaders describe one connection, not the message; a proxy drops them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// relay forwards one request to scheme://target, under base, and streams
// the response back unchanged.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, scheme, target, base, outHost string) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = scheme
	out.URL.Host = target
	out.URL.Path = strings.TrimSuffix(base, "/") + r.URL.Path
	out.URL.RawPath = ""
	out.Host = outHost
	out.Trailer = r.Trailer // the same map: net/http fills it at the body's end, the transport sends it then
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	dropHop(out.Header)
	resp, _ := s.transport.RoundTrip(out) // never fails: errors come back as 502/504
	defer resp.Body.Close()
	// One line per exchange: no path (it may carry identifiers), query or header value.
	s.log.Debug().Str("method", r.Method).Str("host", hostOnly(target)).Int("status", resp.StatusCode).Msg("exchange")

	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	dropHop(h)
	if resp.ContentLength >= 0 { // keep the provider's framing
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	// Stream: every chunk the provider sends goes out at once.
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	for k, v := range resp.Trailer {
		for _, vv := range v {
			h.Add(http.TrailerPrefix+k, vv)
		}
	}
}

// copyBufs are the relay's copy buffers: one per exchange would be 32 KiB of
// garbage per call.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func dropHop(h http.Header) {
	for _, k := range h.Values("Connection") {
		for _, f := range strings.Split(k, ",") {
			h.Del(strings.TrimSpace(f))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}
