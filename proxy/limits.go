package proxy

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// Defaults of Limits: generous for MyData calls (a bearer token and a few
// dozen headers, JSON bodies of kilobytes), tight enough that one client
// cannot hold memory or connections.
const (
	DefaultMaxHeaderBytes      = 32 << 10
	DefaultMaxHeaderCount      = 100
	DefaultMaxRequestLine      = 8 << 10
	DefaultMaxBodyBytes        = 8 << 20
	DefaultMaxConns            = 4096
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientIdleTimeout   = 120 * time.Second
	DefaultClientReadTimeout   = 60 * time.Second
	DefaultClientWriteTimeout  = 60 * time.Second
	DefaultClientTLSTimeout    = 10 * time.Second
)

// Limits bound what one client can make the sidecar hold. Every hit is
// counted in mdtap_proxy_limit_total{limit}. They apply alike to the outer
// connection (CONNECT, plain proxy requests, reverse mode) and to the
// requests read inside a MITM tunnel, which the sidecar serves with its own
// net/http server behind the same guard (see guardConn).
type Limits struct {
	// MaxHeaderBytes caps a request's head (request line and headers), and
	// a chunked body's trailers: 431 (DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// MaxHeaderCount caps header fields per request: 431.
	MaxHeaderCount int
	// MaxRequestLine caps the request line: 414.
	MaxRequestLine int
	// MaxBodyBytes caps a request body: 413 before forwarding when
	// Content-Length says so; a chunked body that outgrows it is cut, the
	// upstream call aborted, and the client gets 413.
	MaxBodyBytes int64
	// MaxConns caps concurrent client connections (a MITM tunnel is one).
	// Past it a new connection is answered 503 and closed at once, so the
	// excess learns why instead of waiting in the accept queue.
	MaxConns int
	// ClientHeaderTimeout: a request head must arrive within it (slowloris).
	ClientHeaderTimeout time.Duration
	// ClientIdleTimeout: a keep-alive connection may wait this long for its
	// next request (it also bounds the next request's head).
	ClientIdleTimeout time.Duration
	// ClientReadTimeout and ClientWriteTimeout are progress deadlines, per
	// read of a request body and per write of a response: a stalled client
	// is cut, while a long response that keeps moving is never cut (there
	// is deliberately no whole-response deadline).
	ClientReadTimeout  time.Duration
	ClientWriteTimeout time.Duration
	// TLSHandshakeTimeout bounds the client's TLS handshake in a tunnel.
	TLSHandshakeTimeout time.Duration
}

// withDefaults fills zero fields with the defaults. A negative timeout
// turns that timeout off.
func (l Limits) withDefaults() Limits {
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setInt(&l.MaxHeaderCount, DefaultMaxHeaderCount)
	setInt(&l.MaxRequestLine, DefaultMaxRequestLine)
	setInt(&l.MaxConns, DefaultMaxConns)
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	setDur := func(v *time.Duration, d time.Duration) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	setDur(&l.ClientHeaderTimeout, DefaultClientHeaderTimeout)
	setDur(&l.ClientIdleTimeout, DefaultClientIdleTimeout)
	setDur(&l.ClientReadTimeout, DefaultClientReadTimeout)
	setDur(&l.ClientWriteTimeout, DefaultClientWriteTimeout)
	setDur(&l.TLSHandshakeTimeout, DefaultClientTLSTimeout)
	return l
}

// guardListener wraps accepted connections in a guardConn and holds the
// connection limit.
type guardListener struct {
	net.Listener
	lim    *Limits
	m      *metrics
	tunnel bool
	mu     sync.Mutex
	open   int
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		full := l.open >= l.lim.MaxConns
		if !full {
			l.open++
		}
		l.mu.Unlock()
		if full {
			l.m.limit("connections")
			go tooMany(c)
			continue
		}
		l.m.connOpened()
		return newGuardConn(c, l.lim, l.m, l.tunnel, l.releaseSlot), nil
	}
}

func (l *guardListener) releaseSlot() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
	l.m.connClosed()
}

// tooMany answers a connection past MaxConns and closes it.
func tooMany(c net.Conn) {
	defer c.Close()
	const msg = "mdtap: too many connections to the sidecar; retry\n"
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(msg)) + "\r\n\r\n" + msg))
}
