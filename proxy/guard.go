package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// guardConn checks the HTTP/1.1 request stream a client sends before
// net/http parses it. net/http alone accepts what a smuggling attempt needs:
// it joins obsolete folded header lines, lets Transfer-Encoding override
// Content-Length (deleting the evidence), and, on the tunnel's inner
// connection goproxy would read, has no limit on header bytes at all.
//
// The guard reads each request head whole (within the limits), validates
// its raw bytes, and only then hands them on unchanged; it follows the body
// framing (Content-Length, or chunks it parses strictly) to find the next
// head, so it and net/http never disagree on where a request ends — anything
// it does not fully understand is refused. A refused head is replaced by a
// synthetic request naming a per-connection secret path, which the handler
// answers with the refusal's status and Connection: close; net/http thereby
// keeps writing responses in order, even when the bad head was pipelined.
//
// It also holds the per-read and per-write progress deadlines of request
// bodies and responses (a stalled client is cut, a slow but moving stream
// is not), and releases the connection's slot in the connection limit.
type guardConn struct {
	net.Conn
	lim     *Limits
	m       *metrics
	release func()
	tunnel  bool   // forward mode, outer connection: a CONNECT head opens a raw tunnel
	connect string // inner connection: the CONNECT target (host:port) of its tunnel

	// Read state; net/http reads from one goroutine at a time.
	state   int
	in      []byte       // read from the conn, not yet passed on
	out     []byte       // checked bytes to pass on
	remain  int64        // body bytes left (Content-Length, or of the current chunk)
	body    int64        // body bytes so far (for MaxBodyBytes)
	stalled atomic.Int32 // a read timed out with a head (1) or body (2) partly read
	nonce   string
	heads   int    // request heads passed on
	inBuf   []byte // g.in's buffer, reused once g.in is drained
	outBuf  []byte // g.out's, likewise

	mu      sync.Mutex
	refusal *guardRefusal
	closed  atomic.Bool
}

// guardRefusal is a request the guard refused, answered by the handler.
type guardRefusal struct {
	status int
	reason string
	msg    string
}

const (
	stHead = iota
	stBody
	stChunkSize
	stChunkData
	stChunkEnd
	stTrailer
	stTunnel
	stRefused
)

// maxReuse bounds the buffers a connection keeps between requests.
const maxReuse = 64 << 10

// emit queues checked bytes to pass on.
func (g *guardConn) emit(b []byte) {
	if len(g.out) == 0 {
		g.out = g.outBuf[:0]
	}
	g.out = append(g.out, b...)
	if cap(g.out) <= maxReuse {
		g.outBuf = g.out[:0]
	}
}

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4096

var crlf = []byte("\r\n")

// errBodyTooLarge ends a request body past Limits.MaxBodyBytes.
var errBodyTooLarge = errors.New("request body exceeds the sidecar's limit")

// errBadChunk ends a request body whose chunked framing is malformed.
var errBadChunk = errors.New("malformed chunked request body")

func newGuardConn(c net.Conn, lim *Limits, m *metrics, tunnel bool, release func()) *guardConn {
	var b [16]byte
	rand.Read(b[:])
	return &guardConn{Conn: c, lim: lim, m: m, tunnel: tunnel, release: release, nonce: "/.mdtap-refused-" + hex.EncodeToString(b[:])}
}

// refused returns the refusal the request r stands for, if it is the
// guard's synthetic request.
func (g *guardConn) refused(path string) *guardRefusal {
	if path != g.nonce {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusal
}

func (g *guardConn) Close() error {
	if g.closed.CompareAndSwap(false, true) {
		// net/http gives up on a request that was partly read by closing.
		switch g.stalled.Load() {
		case 1:
			g.m.limit("client_header_timeout")
		case 2:
			g.m.limit("client_read_timeout")
		}
		if g.release != nil {
			g.release()
		}
	}
	return g.Conn.Close()
}

func (g *guardConn) Write(p []byte) (int, error) {
	if d := g.lim.ClientWriteTimeout; d > 0 {
		g.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	n, err := g.Conn.Write(p)
	if isTimeout(err) {
		g.m.limit("client_write_timeout")
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

func (g *guardConn) Read(p []byte) (int, error) {
	for {
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		switch g.state {
		case stRefused:
			return 0, errRefusedConn
		case stTunnel:
			if len(g.in) > 0 {
				n := copy(p, g.in)
				g.in = g.in[n:]
				return n, nil
			}
			return g.Conn.Read(p)
		case stBody, stChunkData:
			var n int
			var err error
			if len(g.in) > 0 {
				n = int(min(int64(len(g.in)), g.remain, int64(len(p))))
				copy(p, g.in[:n])
				g.in = g.in[n:]
			} else {
				// Read the body straight into p: no copy for large bodies.
				n, err = g.readBody(p[:min(int64(len(p)), g.remain)])
			}
			g.remain -= int64(n)
			if g.remain == 0 {
				// Now, in the reader's goroutine, before net/http starts
				// its background read: see bodyDone.
				g.bodyDone()
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		default:
			if err := g.step(); err == errRefusedHead {
				continue // g.out holds the synthetic request
			} else if err != nil {
				return 0, err
			}
		}
	}
}

// errRefusedConn ends the stream after a refusal's synthetic request.
var errRefusedConn = errors.New("connection refused by the request guard")

// errRefusedHead stops the parse of a refused head (internal to Read).
var errRefusedHead = errors.New("request head refused")

// bodyDone moves on once a Content-Length body or a chunk's data is through.
// The body's progress deadline is cleared at once: net/http owns the
// deadlines between bodies, and a stale one would fail its background read
// while a long response streams (which cancels the exchange).
func (g *guardConn) bodyDone() {
	if g.state == stChunkData {
		g.state = stChunkEnd
		return
	}
	g.state = stHead
	g.Conn.SetReadDeadline(time.Time{})
}

// readBody reads body bytes with a progress deadline.
func (g *guardConn) readBody(p []byte) (int, error) {
	if d := g.lim.ClientReadTimeout; d > 0 {
		g.Conn.SetReadDeadline(time.Now().Add(d))
	}
	n, err := g.Conn.Read(p)
	g.noteErr(err)
	return n, err
}

func (g *guardConn) noteErr(err error) {
	switch {
	case !isTimeout(err):
		g.stalled.Store(0)
	case g.state == stHead:
		g.stalled.Store(1)
	default:
		g.stalled.Store(2)
	}
}

// fill reads more input; a timeout mid-way keeps what was read, so a read
// net/http aborts on purpose (it does so to stop its background read) can
// resume where it left off.
func (g *guardConn) fill() error {
	if g.state != stHead && g.lim.ClientReadTimeout > 0 {
		g.Conn.SetReadDeadline(time.Now().Add(g.lim.ClientReadTimeout))
	}
	if len(g.in) == 0 {
		g.in = g.inBuf[:0] // reuse the connection's buffer once drained
	}
	if cap(g.in)-len(g.in) < 1024 {
		grown := make([]byte, len(g.in), max(2*cap(g.in), 4096))
		copy(grown, g.in)
		g.in = grown
		if cap(grown) <= maxReuse {
			g.inBuf = grown[:0]
		}
	}
	n, err := g.Conn.Read(g.in[len(g.in):cap(g.in)])
	g.in = g.in[:len(g.in)+n]
	if n > 0 {
		g.stalled.Store(0)
		return nil
	}
	if g.state == stHead && len(g.in) == 0 && g.heads > 0 {
		g.stalled.Store(0) // idle between requests: net/http's business
		return err
	}
	g.noteErr(err)
	return err
}

// step advances the parse of a head, a chunk line or trailers by one unit,
// reading more input when the unit is not complete yet.
func (g *guardConn) step() error {
	switch g.state {
	case stHead:
		return g.stepHead()
	case stChunkSize:
		line, ok, err := g.line(maxChunkLine)
		if !ok {
			return err
		}
		size, good := parseChunkSize(line)
		if !good {
			return g.badBody("bad_chunk", errBadChunk)
		}
		g.emit(g.in[:len(line)+2])
		g.in = g.in[len(line)+2:]
		if size == 0 {
			g.state = stTrailer
			g.remain = 0 // trailer bytes counted in remain
			return nil
		}
		g.body += size
		if g.lim.MaxBodyBytes > 0 && g.body > g.lim.MaxBodyBytes {
			g.m.limit("body_bytes")
			return g.badBody("", errBodyTooLarge)
		}
		g.state, g.remain = stChunkData, size
	case stChunkEnd:
		if len(g.in) < 2 {
			return g.fill()
		}
		if g.in[0] != '\r' || g.in[1] != '\n' {
			return g.badBody("bad_chunk", errBadChunk)
		}
		g.emit(crlf)
		g.in = g.in[2:]
		g.state = stChunkSize
	case stTrailer:
		line, ok, err := g.line(g.lim.MaxHeaderBytes)
		if !ok {
			return err
		}
		g.remain += int64(len(line) + 2)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return g.badBody("obs_fold", errBadChunk)
		}
		if len(line) > 0 && (bytes.IndexByte(line, ':') <= 0 || !validHeaderLine(line)) {
			return g.badBody("bad_header", errBadChunk)
		}
		if g.remain > int64(g.lim.MaxHeaderBytes) {
			g.m.limit("header_bytes")
			return g.badBody("", errBadChunk)
		}
		g.emit(g.in[:len(line)+2])
		g.in = g.in[len(line)+2:]
		if len(line) == 0 {
			g.state, g.remain = stHead, 0
			g.Conn.SetReadDeadline(time.Time{})
		}
	}
	return nil
}

// line returns the next CRLF-terminated line in g.in (without the CRLF),
// reading more as needed; ok is false when the caller must return err.
func (g *guardConn) line(max int) (line []byte, ok bool, err error) {
	for {
		if i := bytes.IndexByte(g.in, '\n'); i >= 0 {
			if i == 0 || g.in[i-1] != '\r' {
				return nil, false, g.badBody("bare_lf", errBadChunk)
			}
			return g.in[:i-1], true, nil
		}
		if len(g.in) > max {
			return nil, false, g.badBody("bad_chunk", errBadChunk)
		}
		if err := g.fill(); err != nil {
			return nil, false, err
		}
	}
}

// badBody ends a request whose body framing broke: the head went through,
// so only the connection can be closed (net/http fails the body read, the
// exchange ends with an error, nothing ambiguous reaches the provider —
// the upstream request is aborted with its body incomplete).
func (g *guardConn) badBody(kind string, err error) error {
	if kind != "" {
		g.m.smuggling(kind)
	}
	g.state = stRefused
	g.in, g.out = nil, nil
	return err
}

// stepHead reads a whole request head and checks it.
func (g *guardConn) stepHead() error {
	end := -1
	for {
		// Skip the empty lines RFC 9112 lets a client send before a request.
		for len(g.in) >= 2 && g.in[0] == '\r' && g.in[1] == '\n' {
			g.in = g.in[2:]
		}
		end = bytes.Index(g.in, []byte("\r\n\r\n"))
		// A line ending in a bare LF would never meet the CRLF CRLF above:
		// refuse it now rather than wait for the timeout.
		if i := bareLF(g.in, end); i >= 0 {
			return g.smuggle("bare_lf", "the request head has a line break that is not CRLF")
		}
		if end >= 0 {
			break
		}
		if i := bytes.IndexByte(g.in, '\n'); i >= 0 && i > g.lim.MaxRequestLine || i < 0 && len(g.in) > g.lim.MaxRequestLine {
			g.m.limit("request_line")
			return g.refuse(414, "", "the request line is longer than the sidecar accepts")
		}
		if len(g.in) > g.lim.MaxHeaderBytes {
			g.m.limit("header_bytes")
			return g.refuse(431, "", "the request headers are larger than the sidecar accepts")
		}
		if err := g.fill(); err != nil {
			return err
		}
	}
	head := g.in[:end+4]
	if len(head) > g.lim.MaxHeaderBytes {
		g.m.limit("header_bytes")
		return g.refuse(431, "", "the request headers are larger than the sidecar accepts")
	}
	if err := g.checkHead(head); err != nil {
		return err
	}
	g.emit(head)
	g.in = g.in[len(head):]
	g.heads++
	return nil
}

// checkHead validates a head's raw bytes and sets up its body framing.
func (g *guardConn) checkHead(head []byte) error {
	if bytes.Contains(head, []byte{0}) {
		return g.smuggle("bad_header", "the request head holds a NUL byte")
	}
	lines := bytes.Split(head[:len(head)-4], []byte("\r\n"))
	for _, l := range lines {
		if bytes.IndexByte(l, '\n') >= 0 || bytes.IndexByte(l, '\r') >= 0 {
			return g.smuggle("bare_lf", "the request head has a line break that is not CRLF")
		}
	}
	reqLine := lines[0]
	if len(reqLine) > g.lim.MaxRequestLine {
		g.m.limit("request_line")
		return g.refuse(414, "", "the request line is longer than the sidecar accepts")
	}
	if string(reqLine) == "PRI * HTTP/2.0" {
		g.m.refuse("h2_prior_knowledge")
		return g.refuse(505, "", "HTTP/2 is not captured; speak HTTP/1.1 to the sidecar")
	}
	parts := bytes.Split(reqLine, []byte(" "))
	if len(parts) != 3 || len(parts[0]) == 0 || len(parts[1]) == 0 || !isToken(parts[0]) {
		return g.refuse(400, "bad_request", "malformed request line")
	}
	method, version := string(parts[0]), string(parts[2])
	if version != "HTTP/1.1" && version != "HTTP/1.0" {
		g.m.refuse("http_version")
		return g.refuse(505, "", "only HTTP/1.1 is captured")
	}
	headers := lines[1:]
	if len(headers) > g.lim.MaxHeaderCount {
		g.m.limit("header_count")
		return g.refuse(431, "", "the request has more header fields than the sidecar accepts")
	}
	var cl []string
	te := 0
	for _, h := range headers {
		if len(h) == 0 {
			return g.refuse(400, "bad_request", "malformed request head")
		}
		if h[0] == ' ' || h[0] == '\t' {
			return g.smuggle("obs_fold", "obsolete line folding is not accepted")
		}
		if !validHeaderLine(h) {
			return g.smuggle("bad_header", "malformed header field")
		}
	}
	for _, h := range headers {
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case asciiEqualFold(name, "Content-Length"):
			cl = append(cl, string(value))
		case asciiEqualFold(name, "Transfer-Encoding"):
			te++
			if !asciiEqualFold(value, "chunked") {
				return g.smuggle("bad_transfer_encoding", "only Transfer-Encoding: chunked is accepted")
			}
		}
	}
	switch {
	case te > 0 && len(cl) > 0:
		return g.smuggle("cl_te", "Content-Length and Transfer-Encoding together")
	case te > 1:
		return g.smuggle("bad_transfer_encoding", "Transfer-Encoding given more than once")
	case te == 1 && version == "HTTP/1.0":
		// net/http ignores Transfer-Encoding on HTTP/1.0, a front end may not.
		return g.smuggle("bad_transfer_encoding", "Transfer-Encoding on an HTTP/1.0 request")
	case len(cl) > 1:
		return g.smuggle("duplicate_content_length", "Content-Length given more than once")
	}
	if method == "CONNECT" {
		if te > 0 || len(cl) > 0 {
			return g.smuggle("bad_content_length", "a CONNECT request has no body")
		}
		if g.tunnel {
			g.state = stTunnel // net/http hands the connection to the CONNECT handler
		}
		return nil
	}
	if te == 1 {
		g.state, g.body = stChunkSize, 0
		return nil
	}
	if len(cl) == 1 {
		n, ok := parseDecimal(cl[0])
		if !ok {
			return g.smuggle("bad_content_length", "malformed Content-Length")
		}
		if g.lim.MaxBodyBytes > 0 && n > g.lim.MaxBodyBytes {
			g.m.limit("body_bytes")
			return g.refuse(413, "", "the request body is larger than the sidecar accepts ("+strconv.FormatInt(g.lim.MaxBodyBytes, 10)+" bytes)")
		}
		if n > 0 {
			g.state, g.remain = stBody, n
		}
	}
	return nil
}

func (g *guardConn) smuggle(kind, msg string) error {
	g.m.smuggling(kind)
	return g.refuse(400, "", msg)
}

// refuse replaces the head with the synthetic request the handler answers.
// metric, when set, is counted as a refusal reason.
func (g *guardConn) refuse(status int, reason, msg string) error {
	if reason != "" {
		g.m.refuse(reason)
	}
	g.mu.Lock()
	g.refusal = &guardRefusal{status: status, reason: reason, msg: msg}
	g.mu.Unlock()
	g.in = nil
	g.out = append(g.out[:0], "GET "+g.nonce+" HTTP/1.1\r\nHost: refused.mdtap.invalid\r\nConnection: close\r\n\r\n"...)
	g.state = stRefused
	return errRefusedHead
}

// bareLF returns the index of the first LF not preceded by CR in b's head
// (up to end, or all of b when end < 0), or -1.
func bareLF(b []byte, end int) int {
	if end >= 0 {
		b = b[:end+4]
	}
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return i
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			return -1
		}
		i += 1 + j
	}
	return -1
}

func validHeaderLine(h []byte) bool {
	name, _, ok := bytes.Cut(h, []byte(":"))
	return ok && len(name) > 0 && isToken(name)
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i]|0x20, s[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// parseDecimal accepts what RFC 9110 allows in Content-Length: digits only.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// parseChunkSize reads "HEX[;ext]", stricter than net/http (no spaces), so
// the guard never accepts a size line net/http would read differently.
func parseChunkSize(line []byte) (int64, bool) {
	hexPart, ext, _ := bytes.Cut(line, []byte(";"))
	if len(hexPart) == 0 || len(hexPart) > 15 {
		return 0, false
	}
	if bytes.ContainsAny(ext, "\r\n\x00") {
		return 0, false
	}
	var n int64
	for _, c := range hexPart {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
