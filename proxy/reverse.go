package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
)

// hopHeaders describe one connection, not the message; a proxy drops them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// serveReverse forwards one request to the --upstream base URL and streams
// the response back unchanged.
func (s *Server) serveReverse(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.metrics.refuse("shutting_down")
		w.Header().Set("Connection", "close")
		http.Error(w, "mdtap: the sidecar is shutting down; retry", http.StatusServiceUnavailable)
		return
	}
	if err := s.admitted(); err != nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "mdtap: the exchange was not forwarded: "+err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = s.reverse.Scheme
	out.URL.Host = s.reverse.Host
	out.URL.Path = strings.TrimSuffix(s.reverse.Path, "/") + r.URL.Path
	out.URL.RawPath = ""
	out.Host = s.reverse.Host
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	dropHop(out.Header)
	resp, _ := s.transport.RoundTrip(out) // never fails: errors come back as 502/504
	defer resp.Body.Close()

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
	buf := make([]byte, 32<<10)
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
