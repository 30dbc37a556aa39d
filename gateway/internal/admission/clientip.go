package admission

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// DefaultTrustedProxies is TRUSTED_PROXIES' default: a proxy on the same
// host (the shipped nginx in front of a gateway on one machine).
const DefaultTrustedProxies = "127.0.0.1/32,::1/128"

// maxForwardedHops bounds the X-Forwarded-For walk: a header is attacker
// input, and no real chain of proxies is this long.
const maxForwardedHops = 16

// ParseTrustedProxies reads TRUSTED_PROXIES: comma-separated CIDRs (a bare
// address means that one host), or "none" to trust no peer.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty entry in %q (want comma-separated CIDRs like 10.0.0.0/8,::1/128, or none)", s)
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", part)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8: %v", part, err)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q: write IPv4 ranges in IPv4 form", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the address a request's limits are counted against: the TCP
// peer; when the peer is a trusted proxy, X-Forwarded-For is read from the
// right (the hop the proxy itself added) to the left, skipping trusted
// proxies, and the first address that is not one is the client. With one
// proxy that sets the header (the shipped nginx), that is the header's
// first address, as PROTOCOL.md says; with a proxy that appends to what the
// client sent, it is still the address the proxy saw, not the one the
// client wrote. A header from an untrusted peer is ignored, and a malformed
// entry ends the walk at the last trusted hop. ok is false when the peer
// address cannot be read (never for a net/http request).
func ClientIP(proxies []netip.Prefix, r *http.Request) (ip netip.Addr, ok bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = peer.Addr().Unmap().WithZone("")
	if !trusted(proxies, ip) {
		return ip, true
	}
	hops := r.Header.Values("X-Forwarded-For")
	seen := 0
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		for h != "" {
			var entry string
			if j := strings.LastIndexByte(h, ','); j >= 0 {
				h, entry = h[:j], h[j+1:]
			} else {
				entry, h = h, ""
			}
			if seen++; seen > maxForwardedHops {
				return ip, true
			}
			a, err := netip.ParseAddr(strings.TrimSpace(entry))
			if err != nil || a.Zone() != "" {
				return ip, true
			}
			ip = a.Unmap()
			if !trusted(proxies, ip) {
				return ip, true
			}
		}
	}
	return ip, true
}

// bucketKey is the address a rate bucket is kept for: the IPv4 address, or
// the /64 of an IPv6 one (one subscriber usually holds a whole /64, so
// per-address buckets would let one client rotate through 2^64 of them).
func bucketKey(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}
