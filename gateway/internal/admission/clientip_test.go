package admission

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func mustProxies(t testing.TB, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		DefaultTrustedProxies:          "127.0.0.1/32 ::1/128",
		"10.0.0.0/8, 192.168.1.7":      "10.0.0.0/8 192.168.1.7/32",
		"10.1.2.3/8":                   "10.0.0.0/8",
		"fd00::/8,2001:db8::1":         "fd00::/8 2001:db8::1/128",
		"none":                         "",
		"::ffff:10.0.0.1":              "10.0.0.1/32",
		" 172.16.0.0/12 ,10.0.0.0/8  ": "172.16.0.0/12 10.0.0.0/8",
	}
	for in, want := range good {
		p, err := ParseTrustedProxies(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		var got []string
		for _, x := range p {
			got = append(got, x.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%q = %v, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "10.0.0.0/8,", "example.com", "10.0.0.0/8,,::1", "fe80::1%eth0", "::ffff:10.0.0.0/104", "10.0.0/8"} {
		if p, err := ParseTrustedProxies(in); err == nil {
			t.Errorf("%q accepted: %v", in, p)
		} else if in != "" && !strings.Contains(err.Error(), "") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func req(peer string, xff ...string) *http.Request {
	r := &http.Request{RemoteAddr: peer, Header: http.Header{}}
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := mustProxies(t, "127.0.0.1/32,::1/128,10.0.0.0/8")
	cases := []struct {
		name string
		r    *http.Request
		want string
	}{
		{"direct", req("203.0.113.9:5000"), "203.0.113.9"},
		{"untrusted peer's header ignored", req("203.0.113.9:5000", "198.51.100.1"), "203.0.113.9"},
		{"trusted proxy", req("127.0.0.1:40000", "198.51.100.1"), "198.51.100.1"},
		{"trusted proxy, no header", req("127.0.0.1:40000"), "127.0.0.1"},
		{"proxy that appends: forged left entry ignored", req("127.0.0.1:40000", "1.2.3.4, 198.51.100.1"), "198.51.100.1"},
		{"two trusted hops", req("10.0.0.5:1", "198.51.100.1, 10.0.0.7"), "198.51.100.1"},
		{"several headers", req("10.0.0.5:1", "1.2.3.4", "198.51.100.1"), "198.51.100.1"},
		{"all trusted: leftmost", req("10.0.0.5:1", "10.9.9.9, 10.0.0.7"), "10.9.9.9"},
		{"garbage ends the walk", req("127.0.0.1:1", "junk"), "127.0.0.1"},
		{"garbage left of the client", req("127.0.0.1:1", "junk, 198.51.100.1"), "198.51.100.1"},
		{"ipv6 peer", req("[2001:db8::5]:443"), "2001:db8::5"},
		{"ipv4-mapped peer", req("[::ffff:203.0.113.9]:443"), "203.0.113.9"},
		{"ipv6 loopback proxy", req("[::1]:443", "2001:db8::7"), "2001:db8::7"},
		{"zone dropped from peer", req("[fe80::1%eth0]:443"), "fe80::1"},
		{"zone in header is garbage", req("127.0.0.1:1", "fe80::1%eth0"), "127.0.0.1"},
		{"port in header is garbage", req("127.0.0.1:1", "198.51.100.1:80"), "127.0.0.1"},
	}
	for _, c := range cases {
		got, ok := ClientIP(proxies, c.r)
		if !ok || got.String() != c.want {
			t.Errorf("%s: ClientIP = %v %v, want %s", c.name, got, ok, c.want)
		}
	}
	if _, ok := ClientIP(proxies, req("not an address")); ok {
		t.Error("bad RemoteAddr accepted")
	}
	long := strings.Repeat("10.0.0.1,", 100) + "10.0.0.1"
	if got, _ := ClientIP(proxies, req("10.0.0.5:1", long)); got.String() != "10.0.0.1" {
		t.Errorf("long chain: %v", got)
	}
}

func TestBucketKey(t *testing.T) {
	t.Parallel()
	a := bucketKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"))
	b := bucketKey(netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	c := bucketKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("IPv6 /64 keys: %v %v %v", a, b, c)
	}
	if k := bucketKey(netip.MustParseAddr("198.51.100.1")); k.String() != "198.51.100.1" {
		t.Errorf("IPv4 key %v", k)
	}
}

// FuzzParseTrustedProxies: never panics; what it accepts is canonical
// (masked, no IPv4-in-IPv6) and parses again to the same list.
func FuzzParseTrustedProxies(f *testing.F) {
	for _, s := range []string{DefaultTrustedProxies, "none", "10.0.0.0/8,192.168.1.7", "", ",", "::ffff:1.2.3.4", "1.2.3.4/40", "fe80::1%lo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseTrustedProxies(s)
		if err != nil {
			return
		}
		var parts []string
		for _, x := range p {
			if x != x.Masked() || x.Addr().Is4In6() || x.Addr().Zone() != "" {
				t.Fatalf("%q: not canonical: %v", s, x)
			}
			parts = append(parts, x.String())
		}
		if len(parts) == 0 {
			return
		}
		again, err := ParseTrustedProxies(strings.Join(parts, ","))
		if err != nil || len(again) != len(p) {
			t.Fatalf("%q -> %v -> %v, %v", s, p, again, err)
		}
	})
}

// FuzzClientIP: never panics; the answer is the peer or an address that
// appears in X-Forwarded-For, and an untrusted peer is always its own answer.
func FuzzClientIP(f *testing.F) {
	f.Add("127.0.0.1:1", "198.51.100.1")
	f.Add("127.0.0.1:1", "1.2.3.4, 198.51.100.1")
	f.Add("203.0.113.9:5", "198.51.100.1")
	f.Add("[::1]:1", "2001:db8::1,junk")
	f.Add("[::1]:1", ",,,")
	proxies := mustProxies(f, DefaultTrustedProxies)
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := req(peer, xff)
		ip, ok := ClientIP(proxies, r)
		if !ok {
			return
		}
		p, err := netip.ParseAddrPort(peer)
		if err != nil {
			t.Fatalf("%q accepted as a peer", peer)
		}
		pa := p.Addr().Unmap().WithZone("")
		if !trusted(proxies, pa) && ip != pa {
			t.Fatalf("untrusted peer %v: answer %v", pa, ip)
		}
		if ip == pa {
			return
		}
		for _, e := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil && a.Unmap() == ip {
				return
			}
		}
		t.Fatalf("answer %v is neither the peer nor in %q", ip, xff)
	})
}
