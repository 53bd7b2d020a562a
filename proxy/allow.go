package proxy

import (
	"fmt"
	"net"
	"strings"
)

// Allowlist says which provider hosts the sidecar forwards to. The sidecar is
// never an open proxy: a host no pattern names gets 403.
//
// Patterns: "host" (any port), "host:port", "*.domain" (any subdomain of
// domain, not domain itself, any port). Hosts compare case-insensitively.
type Allowlist struct {
	exact    map[string]bool // host
	withPort map[string]bool // host:port
	suffixes []string        // ".domain"
}

// ParseAllowlist compiles patterns, naming the first bad one.
func ParseAllowlist(patterns []string) (*Allowlist, error) {
	a := &Allowlist{exact: map[string]bool{}, withPort: map[string]bool{}}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "":
			continue
		case strings.HasPrefix(p, "*."):
			d := p[1:]
			if strings.ContainsAny(d[1:], "*:/") || len(d) < 2 {
				return nil, fmt.Errorf("allow-host %q: want *.domain", p)
			}
			a.suffixes = append(a.suffixes, d)
		case strings.ContainsAny(p, "*/?#@ "):
			return nil, fmt.Errorf("allow-host %q: want host, host:port or *.domain", p)
		default:
			if host, port, err := net.SplitHostPort(p); err == nil {
				if host == "" || port == "" {
					return nil, fmt.Errorf("allow-host %q: want host:port", p)
				}
				a.withPort[net.JoinHostPort(host, port)] = true
			} else {
				a.exact[strings.Trim(p, "[]")] = true
			}
		}
	}
	return a, nil
}

// Allows reports whether hostport (host:port, or host alone) may be reached.
func (a *Allowlist) Allows(hostport string) bool {
	if a == nil {
		return false
	}
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), ""
	}
	if a.exact[host] {
		return true
	}
	if port != "" && a.withPort[net.JoinHostPort(host, port)] {
		return true
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(host, s) && len(host) > len(s) {
			return true
		}
	}
	return false
}

// Empty reports whether no pattern was given.
func (a *Allowlist) Empty() bool {
	return a == nil || len(a.exact)+len(a.withPort)+len(a.suffixes) == 0
}
