package dnsserver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func TestLimiter(t *testing.T) {
	l := newLimiter()
	l.configure(config.RRL{ResponsesPerSecond: 10, Slip: 3, IPv4PrefixLen: 24, IPv6PrefixLen: 56})
	p := l.params.Load()
	a := netip.MustParseAddr("198.51.100.7")
	sameNet := netip.MustParseAddr("198.51.100.200")
	otherNet := netip.MustParseAddr("198.51.101.7")
	now := int64(time.Hour)

	counts := map[rrlAction]int{}
	for i := range 40 {
		c := a
		if i%2 == 1 {
			c = sameNet // the same /24 shares one bucket
		}
		counts[l.checkAt(p, c, now)]++
	}
	if counts[rrlAllow] != 10 || counts[rrlSlip] != 10 || counts[rrlDrop] != 20 {
		t.Errorf("40 at once at 10/s, slip 3: %v, want 10 allowed, 10 slipped, 20 dropped", counts)
	}
	if got := l.checkAt(p, otherNet, now); got != rrlAllow {
		t.Errorf("another network: %v, want allowed", got)
	}
	// Tokens come back at the configured rate.
	if got := l.checkAt(p, a, now+int64(50*time.Millisecond)); got == rrlAllow {
		t.Error("allowed 50ms later, before a token came back")
	}
	if got := l.checkAt(p, a, now+int64(150*time.Millisecond)); got != rrlAllow {
		t.Errorf("150ms later: %v, want allowed", got)
	}
	if got := l.checkAt(p, a, now+int64(2*time.Second)); got != rrlAllow {
		t.Errorf("after 2s: %v, want allowed", got)
	}

	// IPv6 networks are grouped by their /56.
	v6a, v6b := netip.MustParseAddr("2001:db8:0:1::1"), netip.MustParseAddr("2001:db8:0:ff::2")
	if p.key(v6a) != p.key(v6b) {
		t.Error("two addresses of one /56 have different keys")
	}
	if p.key(netip.MustParseAddr("::ffff:198.51.100.7")) != p.key(a) {
		t.Error("an IPv4-mapped address and its IPv4 form have different keys")
	}

	l.configure(config.RRL{})
	if l.enabled() {
		t.Error("enabled with 0 responses per second")
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	l := newLimiter()
	l.configure(config.RRL{ResponsesPerSecond: 1, Slip: 2, IPv4PrefixLen: 32, IPv6PrefixLen: 128})
	p := l.params.Load()
	now := int64(time.Hour)
	// Twice as many networks as the table holds: old entries are
	// evicted, nothing grows, and a fresh network is allowed.
	for i := range 2 * rrlSets * rrlWays {
		var b [4]byte
		b[0], b[1], b[2], b[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		l.checkAt(p, netip.AddrFrom4(b), now)
	}
	if got := l.checkAt(p, netip.MustParseAddr("192.0.2.1"), now); got != rrlAllow {
		t.Errorf("fresh network after a flood: %v, want allowed", got)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := newLimiter()
	l.configure(config.RRL{ResponsesPerSecond: 1 << 30, Slip: 2, IPv4PrefixLen: 24, IPv6PrefixLen: 56})
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			l.check(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), now)
		}
	})
}

func TestRateLimitingOverUDP(t *testing.T) {
	f := start(t, "  rrl: {responses_per_second: 5, slip: 2}")
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server, _ := net.ResolveUDPAddr("udp", f.addr)
	const n = 30
	for i := range n {
		q := query("api.gslb.example.com.", dns.TypeA)
		q.Id = uint16(i + 1)
		if _, err := c.WriteToUDP(packet(t, q), server); err != nil {
			t.Fatal(err)
		}
	}
	var answered, slipped int
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		var m dns.Msg
		if err := m.Unpack(buf[:k]); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Truncated && len(m.Answer) == 0:
			slipped++
		case len(m.Answer) == 1:
			answered++
		default:
			t.Errorf("unexpected response:\n%v", &m)
		}
	}
	// 5 within the burst (6 if a token came back meanwhile); of the
	// limited rest every second one slips, the others are dropped.
	if answered < 5 || answered > 6 || slipped < 11 || slipped > 13 {
		t.Errorf("%d answered, %d slipped of %d: want 5 answered and about half the rest slipped", answered, slipped, n)
	}
	if got := metricValue(t, f, "coopr_gslb_dns_rrl_total", map[string]string{"action": "dropped"}); got < 10 {
		t.Errorf("rrl dropped metric = %v", got)
	}

	// TCP is never limited.
	for range 20 {
		wantAddrs(t, f.exchange(t, "tcp", query("api.gslb.example.com.", dns.TypeA)), "192.0.2.1")
	}
}
