package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// errForbiddenAddress fails a dial to an address the sidecar never calls
// unless told to by name: loopback, link-local, unspecified or multicast.
var errForbiddenAddress = errors.New("the provider host resolves to a loopback, link-local, unspecified or multicast address")

// errOwnAddress fails a dial to the sidecar's own listeners (admin, proxy).
var errOwnAddress = errors.New("the provider host resolves to the sidecar's own listener")

// targetPolicy decides which provider addresses the sidecar may call. The
// allowlist names hosts; a name can resolve anywhere, so the resolved
// address is checked again at dial time (net.Dialer.Control sees the address
// actually connected to, so DNS rebinding between check and dial gains
// nothing).
//
// Loopback, link-local, unspecified and multicast addresses and IP literals
// are refused unless that very address (or localhost), with or without a
// port, is itself allow-listed or is the reverse-mode upstream: tests, the
// demo and local setups opt in that way. The sidecar's own listeners are
// refused always.
type targetPolicy struct {
	allow    *Allowlist
	explicit map[string]bool // lower-case host or host:port opted in to special addresses
	own      []netip.AddrPort
	local    []netip.Addr // this machine's addresses, for own listeners bound to 0.0.0.0 / ::

	// resolve, in tests, stands in for DNS: it maps a dialed host:port to
	// the address actually connected to.
	resolve func(hostport string) string
}

func newTargetPolicy(allow *Allowlist, reverse string, own []string) *targetPolicy {
	p := &targetPolicy{allow: allow, explicit: map[string]bool{}}
	for h := range allow.exact {
		if isSpecialName(h) {
			p.explicit[h] = true
		}
	}
	for hp := range allow.withPort {
		if isSpecialName(hostOnly(hp)) {
			p.explicit[strings.Trim(hostOnly(hp), "[]")+":"+portOf(hp)] = true
		}
	}
	if reverse != "" {
		p.explicit[strings.ToLower(hostOnly(reverse))] = true
	}
	for _, a := range own {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			p.own = append(p.own, ap)
			continue
		}
		// ":9090" listens everywhere; a name (localhost) is taken as
		// listening everywhere too, which refuses at least what it covers.
		if port := portOf(a); port != "" {
			if ap, err := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", port)); err == nil {
				p.own = append(p.own, ap)
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil {
				p.local = append(p.local, pfx.Addr().Unmap())
			}
		}
	}
	return p
}

// isSpecialName reports a host that names an address directly: an IP
// literal or localhost.
func isSpecialName(host string) bool {
	host = strings.Trim(strings.ToLower(host), "[]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func portOf(hostport string) string {
	if _, p, err := net.SplitHostPort(hostport); err == nil {
		return p
	}
	return ""
}

// optedIn reports whether host (or host:port) is explicitly allowed to
// reach special addresses.
func (p *targetPolicy) optedIn(host, port string) bool {
	host = strings.Trim(strings.ToLower(host), "[]")
	return p.explicit[host] || port != "" && p.explicit[host+":"+port]
}

// check decides a request's target before anything is dialed: "" allows,
// otherwise the refusal reason. defPort is the scheme's port.
func (p *targetPolicy) check(hostport, defPort string) string {
	if !p.allow.Allows(hostport) {
		return "host_not_allowed"
	}
	// Lower-cased: "LOCALHOST" is the sidecar's own listener too.
	host, port := strings.ToLower(hostOnly(hostport)), portOf(hostport)
	if port == "" {
		port = defPort
	}
	if isSpecialName(host) {
		if !p.optedIn(host, port) {
			return "address_not_allowed"
		}
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && p.isOwn(ip.Unmap(), port) {
			return "own_address"
		}
		if host == "localhost" && (p.isOwn(netip.MustParseAddr("127.0.0.1"), port) || p.isOwn(netip.IPv6Loopback(), port)) {
			return "own_address"
		}
	}
	return ""
}

func (p *targetPolicy) isOwn(ip netip.Addr, port string) bool {
	for _, o := range p.own {
		if portString(o.Port()) != port {
			continue
		}
		oip := o.Addr().Unmap()
		switch {
		case oip == ip, oip.IsLoopback() && ip.IsLoopback():
			return true
		case oip.IsUnspecified():
			if ip.IsLoopback() || ip.IsUnspecified() {
				return true
			}
			for _, l := range p.local {
				if l == ip {
					return true
				}
			}
		}
	}
	return false
}

func portString(p uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + p%10)
		p /= 10
		if p == 0 {
			return string(b[i:])
		}
	}
}

// checkDial decides the address a dial to hostport actually connects to.
func (p *targetPolicy) checkDial(hostport string, ap netip.AddrPort) error {
	ip, port := ap.Addr().Unmap(), portString(ap.Port())
	if p.isOwn(ip, port) {
		return errOwnAddress
	}
	special := ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified()
	if special && !p.optedIn(hostOnly(hostport), portOf(hostport)) && !p.optedIn(ip.String(), port) {
		return errForbiddenAddress
	}
	return nil
}

// dialContext dials with checkDial run on every address tried.
func (p *targetPolicy) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			return p.checkDial(addr, ap)
		}
		to := addr
		if p.resolve != nil {
			to = p.resolve(addr)
		}
		return dd.DialContext(ctx, network, to)
	}
}
