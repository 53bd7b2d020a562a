package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzGuard feeds one client connection's byte stream through the request
// guard into a real net/http server, set up as serve.go sets up its own,
// whose handler answers the guard's refusals as answerRefusal does and
// records every request it is handed. Whatever the bytes (tunnel: the outer
// connection of forward mode, where CONNECT opens a raw tunnel; frag: the
// most bytes one read of the socket returns, 0 for all at once):
//
//   - what the guard passed on is the client's stream, in order, less only
//     blank lines before a request head, then at most the guard's synthetic
//     request, which ends the stream;
//   - net/http's own parser, run over exactly what the guard passed on,
//     finds the requests the handler was handed, in order, with their
//     headers, bodies and trailers, and at most one request more (one the
//     server refused itself, which ends the connection); each head starts
//     where the guard framed one, so the two never disagree on where a
//     request ends;
//   - no head net/http parsed has Content-Length and Transfer-Encoding
//     together, two Content-Lengths, two Transfer-Encodings or one other
//     than chunked, an obs-fold line, or a line break other than CRLF;
//   - after a refusal nothing more is dispatched;
//   - a CONNECT tunnel carries exactly the rest of the stream;
//   - the connection ends (no hang), and nothing panics.
func FuzzGuard(f *testing.F) {
	ln := startGuardFuzzServer(f)
	f.Fuzz(func(t *testing.T, stream []byte, tunnel bool, frag uint8) {
		c := serveGuarded(t, ln, stream, tunnel, frag)
		checkGuardRun(t, stream, c)
	})
}

// serveGuarded serves stream as one client connection through a guard and
// returns the connection once the server is done with it.
func serveGuarded(t *testing.T, ln *chanListener, stream []byte, tunnel bool, frag uint8) *tapConn {
	t.Helper()
	g := newGuardConn(&streamConn{in: stream, frag: int(frag)}, &fuzzGuardLimits, nil, tunnel, nil)
	c := &tapConn{guardConn: g, synth: -1, done: make(chan struct{})}
	if !ln.push(c) {
		t.Fatal("the fuzz server stopped accepting")
	}
	// The client's stream is all there and never blocks, so a connection
	// still open after the deadline hangs; the deadline is far above an
	// exec's milliseconds because fuzzing shares the CPU with other work.
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("the connection was still open 10s after the client's stream ended; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	// Closing is the server's last act on the connection (it waits for its
	// background read first); the lock is for the race detector's sake.
	c.mu.Lock()
	t.Cleanup(c.mu.Unlock)
	return c
}

// fuzzGuardLimits are small, so that the fuzzer reaches every limit.
var fuzzGuardLimits = Limits{MaxHeaderBytes: 1024, MaxHeaderCount: 16, MaxRequestLine: 256, MaxBodyBytes: 512}.withDefaults()

// startGuardFuzzServer starts, once per fuzzing process, the net/http
// server the fuzz target's connections are handed to.
func startGuardFuzzServer(tb testing.TB) *chanListener {
	ln := newChanListener()
	lim := fuzzGuardLimits
	srv := &http.Server{
		Handler: http.HandlerFunc(recordGuarded), ReadHeaderTimeout: lim.ClientHeaderTimeout, IdleTimeout: lim.ClientIdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes + lim.MaxRequestLine + 4096, ErrorLog: log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			tc := c.(*tapConn)
			return context.WithValue(context.WithValue(ctx, guardKey{}, tc.guardConn), tapKey{}, tc)
		},
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln
}

type tapKey struct{}

// recordGuarded answers the guard's synthetic request as answerRefusal
// does, records every other request with its whole body, and in forward
// mode's outer connection takes over the connection at a CONNECT, as
// serveConnect does for an allowed host (the other outcome, a refusal,
// closes the connection).
func recordGuarded(w http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(tapKey{}).(*tapConn)
	g := guardOf(r)
	if rf := g.refused(r.URL.Path); rf != nil {
		c.record(seenRequest{refusal: true})
		w.Header().Set("Connection", "close")
		http.Error(w, "mdtap: "+rf.msg, rf.status)
		return
	}
	body, err := io.ReadAll(r.Body)
	c.record(seenRequest{method: r.Method, uri: r.RequestURI, proto: r.Proto, header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: body, bodyErr: err != nil})
	if r.Method == http.MethodConnect && g.tunnel && err == nil {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(rw.Reader)
		c.mu.Lock()
		c.tunnel, c.tunneled = rest, true
		c.mu.Unlock()
		conn.Close()
		return
	}
	io.WriteString(w, "ok")
}

// seenRequest is what the handler was handed.
type seenRequest struct {
	refusal         bool // the guard's synthetic request
	method, uri     string
	proto           string
	header, trailer http.Header
	body            []byte
	bodyErr         bool
}

// tapConn is the guard as net/http sees it: it records what the guard
// passed on, where the synthetic request began, and what the handler saw.
type tapConn struct {
	*guardConn
	mu       sync.Mutex
	out      []byte // every byte the guard passed on
	heads    []int  // offsets in out of the heads the guard framed
	synth    int    // offset in out of the synthetic request; -1: none
	seen     []seenRequest
	tunnel   []byte // what a CONNECT's tunnel carried
	tunneled bool
	done     chan struct{}
	once     sync.Once
}

func (c *tapConn) Read(p []byte) (int, error) {
	heads := c.guardConn.heads
	n, err := c.guardConn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	// The guard frames a head only once it passed on all before it, and
	// this Read returns the head's first bytes.
	for ; heads < c.guardConn.heads; heads++ {
		c.heads = append(c.heads, len(c.out))
	}
	// refuse puts the synthetic request in the guard's empty output, and
	// the same Read returns its first bytes.
	if c.synth < 0 && c.guardConn.refused(c.guardConn.nonce) != nil {
		c.synth = len(c.out)
	}
	c.out = append(c.out, p[:n]...)
	return n, err
}

func (c *tapConn) Close() error {
	err := c.guardConn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

func (c *tapConn) record(s seenRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, s)
}

// streamConn is the client's side of the socket: it delivers a fixed
// stream, at most frag bytes a read, then EOF (the client half-closed),
// and discards what the server writes. Reads never block; a read deadline
// in the past (net/http aborting its background read) fails a read with a
// timeout, as it does on a socket.
type streamConn struct {
	mu       sync.Mutex
	in       []byte
	frag     int
	deadline time.Time
	closed   bool
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		return 0, os.ErrDeadlineExceeded
	case len(c.in) == 0:
		return 0, io.EOF
	}
	if c.frag > 0 && len(p) > c.frag {
		p = p[:c.frag]
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *streamConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *streamConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (c *streamConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
}
func (c *streamConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// checkGuardRun checks one connection's run against the properties above.
func checkGuardRun(t *testing.T, stream []byte, c *tapConn) {
	t.Helper()
	g := c.guardConn
	out, synth := c.out, []byte(nil)
	if c.synth >= 0 {
		out, synth = c.out[:c.synth], c.out[c.synth:]
	}
	synthetic := "GET " + g.nonce + " HTTP/1.1\r\nHost: refused.mdtap.invalid\r\nConnection: close\r\n\r\n"
	if !strings.HasPrefix(synthetic, string(synth)) {
		t.Fatalf("after its synthetic request the guard passed on %q", synth[min(len(synth), len(synthetic)):])
	}
	used, skips, ok := lessBlankLines(stream, out)
	if !ok {
		t.Fatalf("the guard passed on bytes the client did not send at offset %d of what it passed on (client offset %d)", len(out), used)
	}

	reqs, tail, tunnelAt := reparse(out, g.tunnel)
	for i, r := range reqs {
		if shape := smugglingShape(out[r.start:r.end]); shape != "" {
			t.Fatalf("net/http parsed head %d with %s: %q", i, shape, out[r.start:r.end])
		}
	}
	starts := map[int]bool{len(out): true}
	for _, r := range reqs {
		starts[r.start] = true
	}
	if tail >= 0 {
		starts[tail] = true
		// The unit net/http could not parse is one head (whole, or partly
		// read before the server hung up), the last the guard passed on.
		if i := bytes.Index(out[tail:], []byte("\r\n\r\n")); i >= 0 && i != len(out)-tail-4 {
			t.Fatalf("the guard passed on more after a head net/http could not parse: %q", out[tail:])
		}
	}
	for _, s := range skips {
		if !starts[s] || tunnelAt >= 0 && s > tunnelAt {
			t.Fatalf("the guard dropped a blank line at offset %d of what it passed on, not before a request head", s)
		}
	}
	// The guard and net/http agree on where every head starts.
	var wantHeads []int
	for _, r := range reqs {
		wantHeads = append(wantHeads, r.start)
	}
	if tail >= 0 {
		wantHeads = append(wantHeads, tail)
	}
	if !slices.Equal(c.heads, wantHeads) {
		t.Fatalf("the guard framed heads at %v of what it passed on, net/http reads heads at %v", c.heads, wantHeads)
	}

	seen := c.seen
	refused := len(seen) > 0 && seen[len(seen)-1].refusal
	if refused {
		seen = seen[:len(seen)-1]
		if c.synth < 0 || string(synth) != synthetic {
			t.Fatal("the handler answered a refusal the guard did not pass on whole")
		}
	}
	for i, s := range seen {
		if s.refusal {
			t.Fatalf("request %d was dispatched after a refusal", i+1)
		}
	}
	if len(seen) > len(reqs) {
		t.Fatalf("the handler was handed %d requests, what the guard passed on holds %d", len(seen), len(reqs))
	}
	if len(reqs)-len(seen) > 1 || refused && len(reqs) != len(seen) {
		t.Fatalf("the handler was handed %d requests of the %d in what the guard passed on (refusal %v)", len(seen), len(reqs), refused)
	}
	for i, s := range seen {
		r := reqs[i]
		if s.method != r.method || s.uri != r.uri || s.proto != r.proto || !reflect.DeepEqual(s.header, r.header) ||
			!reflect.DeepEqual(s.trailer, r.trailer) || !bytes.Equal(s.body, r.body) || s.bodyErr != r.bodyErr {
			t.Fatalf("request %d: the handler saw %s %q %s %v body %q (err %v) trailer %v; what the guard passed on reads %s %q %s %v body %q (err %v) trailer %v",
				i, s.method, s.uri, s.proto, s.header, s.body, s.bodyErr, s.trailer, r.method, r.uri, r.proto, r.header, r.body, r.bodyErr, r.trailer)
		}
	}
	if c.tunneled {
		if tunnelAt < 0 || !bytes.Equal(c.tunnel, out[tunnelAt:]) || used != len(stream) {
			t.Fatalf("the tunnel carried %q, want the rest of the stream %q", c.tunnel, stream[min(used, len(stream)):])
		}
	}
}

// lessBlankLines reports whether out is in with only some CRLF pairs left
// out, returning how much of in it covers and the offsets in out where
// pairs were left out. Heads never start with CR, so matching greedily is
// exact.
func lessBlankLines(in, out []byte) (used int, skips []int, ok bool) {
	i := 0
	for j := 0; j < len(out); {
		switch {
		case i < len(in) && in[i] == out[j]:
			i++
			j++
		case i+1 < len(in) && in[i] == '\r' && in[i+1] == '\n':
			skips = append(skips, j)
			i += 2
		default:
			return i, skips, false
		}
	}
	return i, skips, true
}

// rawRequest is a request as net/http's parser reads it from what the
// guard passed on, with its head's offsets.
type rawRequest struct {
	start, end      int
	method, uri     string
	proto           string
	header, trailer http.Header
	body            []byte
	bodyErr         bool
}

// reparse reads out with http.ReadRequest, the parser the server uses. tail
// is the offset of a unit it could not parse (-1: none); tunnelAt that of
// the bytes after a CONNECT head in tunnel mode (-1: none).
func reparse(out []byte, tunnel bool) (reqs []rawRequest, tail, tunnelAt int) {
	rd := bytes.NewReader(out)
	br := bufio.NewReader(rd)
	pos := func() int { return len(out) - rd.Len() - br.Buffered() }
	for {
		start := pos()
		if start == len(out) {
			return reqs, -1, -1
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return reqs, start, -1
		}
		end := pos()
		body, err := io.ReadAll(req.Body)
		reqs = append(reqs, rawRequest{start: start, end: end, method: req.Method, uri: req.RequestURI, proto: req.Proto,
			header: req.Header.Clone(), trailer: req.Trailer.Clone(), body: body, bodyErr: err != nil})
		switch {
		case err != nil:
			return reqs, -1, -1 // nothing after a broken body is read
		case tunnel && req.Method == http.MethodConnect:
			return reqs, -1, pos()
		}
	}
}

// smugglingShape names what makes a raw head ambiguous, or "".
func smugglingShape(head []byte) string {
	lines := strings.Split(strings.TrimSuffix(string(head), "\r\n\r\n"), "\r\n")
	cl, te := 0, 0
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n\x00") {
			return "a bare CR, LF or NUL"
		}
		if i == 0 {
			continue
		}
		if l == "" || l[0] == ' ' || l[0] == '\t' {
			return "an obs-fold or empty line"
		}
		name, value, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			cl++
		case "transfer-encoding":
			te++
			if !strings.EqualFold(strings.Trim(value, " \t"), "chunked") {
				return "a Transfer-Encoding other than chunked"
			}
		}
	}
	switch {
	case cl > 0 && te > 0:
		return "Content-Length and Transfer-Encoding"
	case cl > 1:
		return "two Content-Lengths"
	case te > 1:
		return "two Transfer-Encodings"
	}
	return ""
}

// FuzzTarget: the target decision (allowlist, then address names, then the
// sidecar's own listeners) and the dial-time check of the address actually
// connected to. patterns are --allow-host values, one a line; resolved is
// the address DNS gives a name (ignored for IP literals and localhost).
// Never a panic; the decision is deterministic and case-insensitive; the
// allowlist is the union of its patterns and "*.domain" never matches the
// domain itself; an IP literal or localhost passes the check only when an
// allow-list entry or the reverse upstream names it exactly; an address
// that is loopback, link-local, unspecified or multicast is dialed only
// when it or the name dialed is so named; the sidecar's own listener is
// never dialed.
func FuzzTarget(f *testing.F) {
	f.Fuzz(func(t *testing.T, patterns, reverse, own, hostport, resolved string) {
		list := strings.Split(patterns, "\n")
		allow, err := ParseAllowlist(list)
		if err != nil {
			return
		}
		owns := []string{"127.0.0.1:9090", ":9091", "[::1]:9092"}
		if own != "" {
			owns = append(owns, own)
		}
		p := newTargetPolicy(allow, reverse, owns)

		allowed := allow.Allows(hostport)
		if again, _ := ParseAllowlist(list); again.Allows(hostport) != allowed || allow.Allows(asciiUpper(hostport)) != allowed {
			t.Fatalf("Allows(%q) is not deterministic or not case-insensitive", hostport)
		}
		union := false
		for _, pat := range list {
			one, err := ParseAllowlist([]string{pat})
			if err != nil {
				t.Fatalf("pattern %q parses in a list but not alone: %v", pat, err)
			}
			union = union || one.Allows(hostport)
			if d, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(pat)), "*."); ok && one.Allows(d) {
				t.Fatalf("%q allows the domain %q itself", pat, d)
			}
		}
		if union != allowed {
			t.Fatalf("Allows(%q) = %v, but its patterns one by one say %v", hostport, allowed, union)
		}

		for _, defPort := range []string{"80", "443"} {
			got := p.check(hostport, defPort)
			if p.check(hostport, defPort) != got || newTargetPolicy(allow, reverse, owns).check(hostport, defPort) != got {
				t.Fatalf("check(%q) is not deterministic", hostport)
			}
			if up := p.check(asciiUpper(hostport), defPort); up != got {
				t.Fatalf("check(%q) = %q, check(%q) = %q", hostport, got, asciiUpper(hostport), up)
			}
			switch got {
			case "", "address_not_allowed", "own_address":
				if !allowed {
					t.Fatalf("check(%q) = %q for a host the allowlist refuses", hostport, got)
				}
			case "host_not_allowed":
				if allowed {
					t.Fatalf("check(%q) = host_not_allowed for a host the allowlist allows", hostport)
				}
			default:
				t.Fatalf("check(%q) = unknown reason %q", hostport, got)
			}
			if got != "" {
				continue
			}
			host, port := hostOnly(hostport), portOf(hostport)
			if port == "" {
				port = defPort
			}
			name := strings.Trim(strings.ToLower(host), "[]")
			ip, err := netip.ParseAddr(name)
			localhost := name == "localhost" || strings.HasSuffix(name, ".localhost")
			addressName := isAddressName(host)
			// An address name opts in by being allow-listed; any name by
			// being the reverse upstream.
			optIn := func(h string) bool {
				return isAddressName(h) && namedExactly(list, h, port) ||
					reverse != "" && strings.EqualFold(strings.Trim(hostOnly(reverse), "[]"), strings.Trim(h, "[]"))
			}
			if addressName && !optIn(host) {
				t.Fatalf("check(%q) allows an address name that neither the allowlist %q nor the upstream %q names", hostport, list, reverse)
			}
			// What a dial to the target connects to.
			var dials []netip.Addr
			switch {
			case err == nil:
				dials = []netip.Addr{ip}
			case localhost:
				dials = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
			default:
				if r, err := netip.ParseAddr(resolved); err == nil {
					dials = []netip.Addr{r}
				}
			}
			pn, err := netip.ParseAddrPort("0.0.0.0:" + port)
			if err != nil {
				continue // not a port the dialer takes
			}
			for _, a := range dials {
				ap := netip.AddrPortFrom(a, pn.Port())
				dialErr := p.checkDial(net.JoinHostPort(host, port), ap)
				if dialErr == nil && isOwnListener(owns, ap) {
					t.Fatalf("dialing %s for %q reaches the sidecar's own listener", ap, hostport)
				}
				u := a.Unmap()
				special := u.IsLoopback() || u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() || u.IsInterfaceLocalMulticast() || u.IsMulticast() || u.IsUnspecified()
				if dialErr == nil && special && !optIn(host) && !optIn(u.String()) {
					t.Fatalf("dialing %s for %q is allowed, but the allowlist %q and upstream %q name neither", ap, hostport, list, reverse)
				}
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only: Unicode case mappings (ſ to
// S) are no claim of the allowlist's.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// namedExactly reports whether an allow-list entry (host, or host:port with
// this port) names host literally.
func namedExactly(patterns []string, host, port string) bool {
	norm := func(h string) string { return strings.Trim(strings.ToLower(h), "[]") }
	h := norm(host)
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if ph, pp, err := net.SplitHostPort(p); err == nil {
			if norm(ph) == h && pp == port {
				return true
			}
		} else if norm(p) == h {
			return true
		}
	}
	return false
}

// isAddressName reports a host that names an address itself: an IP
// literal, localhost or a name under it.
func isAddressName(host string) bool {
	h := strings.Trim(strings.ToLower(host), "[]")
	_, err := netip.ParseAddr(h)
	return err == nil || h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// isOwnListener reports an address one of own listens on: the address
// itself, or any loopback or unspecified address for one listening on all.
func isOwnListener(own []string, ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	for _, o := range own {
		if oap, err := netip.ParseAddrPort(o); err == nil {
			if oap.Port() == ap.Port() && (oap.Addr().Unmap() == ip || oap.Addr().Unmap().IsUnspecified() && (ip.IsLoopback() || ip.IsUnspecified())) {
				return true
			}
		} else if strings.HasPrefix(o, ":") && o[1:] == portString(ap.Port()) && (ip.IsLoopback() || ip.IsUnspecified()) {
			return true
		}
	}
	return false
}

// FuzzGuardWellFormed: spec describes a pipeline of well-formed requests
// within the limits (methods, targets, headers, Content-Length, chunked
// bodies with extensions and trailers, blank lines between requests, a
// final CONNECT and what its tunnel carries), written as a careful client
// would. Besides FuzzGuard's properties, the guard refuses none of them,
// and the handler is handed each, in order, unchanged.
func FuzzGuardWellFormed(f *testing.F) {
	ln := startGuardFuzzServer(f)
	f.Fuzz(func(t *testing.T, spec []byte, tunnel bool, frag uint8) {
		stream, want, rest := wellFormedStream(spec, tunnel)
		c := serveGuarded(t, ln, stream, tunnel, frag)
		checkGuardRun(t, stream, c)
		if rf := c.refused(c.nonce); rf != nil {
			t.Fatalf("the guard refused a well-formed request: %s\n%q", rf.msg, stream)
		}
		if len(c.seen) != len(want) {
			t.Fatalf("the handler was handed %d of %d well-formed requests\n%q", len(c.seen), len(want), stream)
		}
		for i, w := range want {
			s := c.seen[i]
			if s.method != w.method || s.uri != w.uri || s.bodyErr || !bytes.Equal(s.body, w.body) {
				t.Fatalf("request %d: handed %s %q body %q (err %v), sent %s %q body %q", i, s.method, s.uri, s.body, s.bodyErr, w.method, w.uri, w.body)
			}
			for name := range w.header {
				if !slices.Equal(s.header[name], w.header[name]) {
					t.Fatalf("request %d: header %s handed %q, sent %q", i, name, s.header[name], w.header[name])
				}
			}
			for name := range w.trailer {
				if !slices.Equal(s.trailer[name], w.trailer[name]) {
					t.Fatalf("request %d: trailer %s handed %q, sent %q", i, name, s.trailer[name], w.trailer[name])
				}
			}
		}
		if n := len(want); n > 0 && want[n-1].method == http.MethodConnect && tunnel && !bytes.Equal(c.tunnel, rest) {
			t.Fatalf("the tunnel carried %q, sent %q", c.tunnel, rest)
		}
	})
}

// sentRequest is a request wellFormedStream wrote.
type sentRequest struct {
	method, uri     string
	header, trailer http.Header
	body            []byte
}

// specReader hands out spec's bytes as choices; past its end every choice
// is the first.
type specReader []byte

func (r *specReader) next() byte {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b
}

// upTo returns a number in [0, n].
func (r *specReader) upTo(n int) int { return int(r.next()) % (n + 1) }

func (r *specReader) pick(from ...string) string { return from[r.upTo(len(from)-1)] }

func (r *specReader) text(alphabet string, max int) string {
	b := make([]byte, r.upTo(max))
	for i := range b {
		b[i] = alphabet[int(r.next())%len(alphabet)]
	}
	return string(b)
}

func (r *specReader) raw(max int) []byte {
	n := min(r.upTo(max), len(*r))
	b := bytes.Clone((*r)[:n])
	*r = (*r)[n:]
	return b
}

// wellFormedStream writes the pipeline spec describes, within
// fuzzGuardLimits; in tunnel mode, rest is what follows a final CONNECT.
func wellFormedStream(spec []byte, tunnel bool) (stream []byte, sent []sentRequest, rest []byte) {
	const (
		pathChars  = "abcdefghijklmnopqrstuvwxyz0123456789-._~/!$'()*+,;:@"
		valueChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
		tokenChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
	)
	r := specReader(spec)
	var b bytes.Buffer
	for n := 1 + r.upTo(3); len(sent) < n; {
		for range r.upTo(3) / 2 {
			b.WriteString("\r\n") // blank lines a client may send before a request
		}
		s := sentRequest{method: r.pick("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT"), header: http.Header{}, trailer: http.Header{}}
		s.uri = "/v1/" + r.text(pathChars, 24)
		if q := r.text(pathChars+"=&", 24); q != "" {
			s.uri += "?" + q
		}
		if s.method == http.MethodConnect {
			s.uri = "api.bank.example:443"
		}
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api.bank.example\r\n", s.method, s.uri)
		for range r.upTo(5) {
			name := r.pick("Authorization", "Accept", "Content-Type", "X-Api-Tran-Id", "X-Api-Type", "")
			if name == "" {
				name = "X-" + r.text(tokenChars, 12)
			}
			value := strings.Trim(r.text(valueChars, 30), " ")
			s.header[http.CanonicalHeaderKey(name)] = append(s.header[http.CanonicalHeaderKey(name)], value)
			fmt.Fprintf(&b, "%s:%s%s\r\n", name, r.pick("", " ", "  ", "\t"), value)
		}
		if s.method == http.MethodConnect {
			b.WriteString("\r\n")
			sent = append(sent, s)
			if tunnel {
				rest = bytes.Clone(r)
				b.Write(rest)
				break
			}
			continue
		}
		s.body = r.raw(120)
		switch r.upTo(2) {
		case 0:
			s.body = nil // no framing header: no body
			b.WriteString("\r\n")
		case 1:
			fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(s.body))
			b.Write(s.body)
		default:
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			for body := s.body; len(body) > 0; {
				size := min(1+r.upTo(len(body)), len(body))
				fmt.Fprintf(&b, r.pick("%x", "%X", "%03x")+"%s\r\n", size, r.pick("", ";ext", ";ext=1", `;name="quoted"`))
				b.Write(body[:size])
				b.WriteString("\r\n")
				body = body[size:]
			}
			b.WriteString("0\r\n")
			for range r.upTo(2) {
				name := "X-T" + r.text(tokenChars, 8)
				value := strings.Trim(r.text(valueChars, 20), " ")
				s.trailer[http.CanonicalHeaderKey(name)] = append(s.trailer[http.CanonicalHeaderKey(name)], value)
				fmt.Fprintf(&b, "%s: %s\r\n", name, value)
			}
			b.WriteString("\r\n")
		}
		sent = append(sent, s)
	}
	return b.Bytes(), sent, rest
}
