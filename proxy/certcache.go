package proxy

import (
	"crypto/tls"
	"sync"
)

// certCache keeps the MITM certificates minted per host, so signing (the
// costly part of a new tunnel) happens once per host. Hosts are limited by
// the allowlist, so the cache is too.
type certCache struct {
	mu sync.Mutex
	m  map[string]*certEntry
}

type certEntry struct {
	once sync.Once
	cert *tls.Certificate
	err  error
}

func newCertCache() *certCache { return &certCache{m: map[string]*certEntry{}} }

func (c *certCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	e, ok := c.m[host]
	if !ok {
		e = &certEntry{}
		c.m[host] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.cert, e.err = gen() })
	if e.err != nil {
		c.mu.Lock()
		delete(c.m, host) // try again next time
		c.mu.Unlock()
	}
	return e.cert, e.err
}
