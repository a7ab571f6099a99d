package dnsserver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// addresses returns the A and AAAA data of an answer.
func addresses(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

func wantAddrs(t *testing.T, m *dns.Msg, want ...string) {
	t.Helper()
	got := addresses(m)
	if len(got) != len(want) {
		t.Fatalf("addresses = %v, want %v\n%v", got, want, m)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("addresses = %v, want %v\n%v", got, want, m)
		}
	}
}

func TestDrainAndHealthShowInTheNextAnswer(t *testing.T) {
	f := start(t, "")
	q := query("api.gslb.example.com.", dns.TypeA)
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.1")

	if err := f.engine.Drain("dc1", routing.Drain{Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.2")
	wantAddrs(t, f.exchange(t, "tcp", q), "192.0.2.2")

	if err := f.engine.Undrain("dc1", "test"); err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.1")

	f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc1", Service: "api", Endpoint: "127.0.0.1:1", Up: false, Reason: "connection refused"})
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.2")
	// dc2 has no IPv6 address: NODATA, not dc1's address, cached no
	// longer than the A answer (dns_ttl 30 < negative_ttl 45).
	m := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeAAAA))
	check(t, m, want{aa: true, ns: []string{"gslb.example.com. 30 SOA"}})

	f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc1", Service: "api", Endpoint: "127.0.0.1:1", Up: true})
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.1")

	// all policy: a drained DC leaves the answer.
	wantAddrs(t, f.exchange(t, "udp", query("all.gslb.example.com.", dns.TypeA)), "192.0.2.1", "192.0.2.2")
	f.engine.Drain("dc2", routing.Drain{})
	wantAddrs(t, f.exchange(t, "udp", query("all.gslb.example.com.", dns.TypeA)), "192.0.2.1")
}

func TestRefusedServiceRecovers(t *testing.T) {
	f := start(t, "")
	q := query("strict.gslb.example.com.", dns.TypeA)
	check(t, f.exchange(t, "udp", q), want{aa: true, ns: []string{"gslb.example.com. 5 SOA"}})
	f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc1", Service: "strict", Endpoint: "127.0.0.1:9", Up: true})
	wantAddrs(t, f.exchange(t, "udp", q), "192.0.2.9")
}

func TestClientSubnet(t *testing.T) {
	f := start(t, "")
	tests := []struct {
		name, qname, ecs string
		addr             string
		scope            uint8
	}{
		{"nearest, matching network", "near.gslb.example.com.", "10.2.3.0/24", "192.0.2.2", 16},
		{"nearest, other network", "near.gslb.example.com.", "10.1.0.0/16", "192.0.2.1", 16},
		// Scope 1 keeps 10.0.0.0/8, where the client networks are, out.
		{"nearest, no matching network: short enough to exclude every network", "near.gslb.example.com.", "203.0.113.0/24", "192.0.2.1", 1},
		{"nearest, IPv6 client: no IPv6 network, the same for all", "near.gslb.example.com.", "2001:db8:1::/48", "192.0.2.1", 0},
		{"failover does not depend on the client", "api.gslb.example.com.", "10.2.3.0/24", "192.0.2.1", 0},
		{"source prefix 0: not tailored", "near.gslb.example.com.", "10.2.0.0/0", "192.0.2.1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := f.exchange(t, "udp", query(tt.qname, dns.TypeA, withECS(tt.ecs)))
			wantAddrs(t, m, tt.addr)
			opt := m.IsEdns0()
			if opt == nil {
				t.Fatal("no OPT")
			}
			var ecs *dns.EDNS0_SUBNET
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_SUBNET); ok {
					ecs = e
				}
			}
			if ecs == nil {
				t.Fatal("ECS not echoed")
			}
			_, n, _ := net.ParseCIDR(tt.ecs)
			bits, _ := n.Mask.Size()
			if int(ecs.SourceNetmask) != bits || !ecs.Address.Equal(n.IP) {
				t.Errorf("echoed ECS %v, want source %s", ecs, tt.ecs)
			}
			if ecs.SourceScope != tt.scope {
				t.Errorf("scope = %d, want %d", ecs.SourceScope, tt.scope)
			}
		})
	}

	t.Run("static answers have scope 0", func(t *testing.T) {
		m := f.exchange(t, "udp", query("txt.gslb.example.com.", dns.TypeTXT, withECS("10.2.3.0/24")))
		for _, o := range m.IsEdns0().Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok && e.SourceScope != 0 {
				t.Errorf("scope = %d, want 0", e.SourceScope)
			}
		}
	})
	t.Run("address bits beyond the source prefix are FORMERR", func(t *testing.T) {
		q := query("near.gslb.example.com.", dns.TypeA, withECS("10.0.0.0/12"))
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		// The option ends the packet with the two address bytes a /12
		// needs; miekg masks them when packing, so set a bit past the
		// prefix by hand.
		b[len(b)-1] = 2
		resp := f.rawExchange(t, b, time.Second)
		if resp == nil {
			t.Fatal("no response")
		}
		var m dns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		if m.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode = %s, want FORMERR", dns.RcodeToString[m.Rcode])
		}
	})
}

// TestECSScopeExcludesNestedNetworks is the case (RFC 7871 section
// 7.2.1): east 10.0.0.0/8, west 10.2.0.0/16 and 10.1.0.128/25 inside it.
func TestECSScopeExcludesNestedNetworks(t *testing.T) {
	sd := &serviceData{networks: []dcNetwork{
		{netip.MustParsePrefix("10.2.0.0/16"), "west"},
		{netip.MustParsePrefix("10.1.0.128/25"), "west"},
		{netip.MustParsePrefix("10.0.0.0/8"), "east"},
	}}
	for _, tc := range []struct {
		client string
		bits   int
		dc     string
		want   int
	}{
		{"10.1.5.0", 8, "east", 22},  // 10.1.4.0/22 holds neither of west's networks
		{"10.0.0.0", 8, "east", 16},  // a query for 10.0.0.0/8 gets a scope longer than 8
		{"10.2.5.0", 16, "west", 16}, // inside west's network: nothing of east's is more specific
		{"10.1.0.200", 25, "west", 25},
		{"10.1.0.5", 8, "east", 25},  // 10.1.0.0/25 is east's; /24 would hold west's /25
		{"10.200.0.0", 8, "east", 9}, // /9 excludes 10.0.0.0/9, where west's networks are
		{"192.0.2.1", -1, "east", 1},
	} {
		got := sd.scope(netip.MustParseAddr(tc.client), tc.bits, tc.dc)
		if got != tc.want {
			t.Errorf("scope(%s, matched /%d, %s) = %d, want %d", tc.client, tc.bits, tc.dc, got, tc.want)
		}
		// Whatever the scope, no network of another DC lies inside it.
		p := netip.PrefixFrom(netip.MustParseAddr(tc.client), got).Masked()
		for _, n := range sd.networks {
			if n.dc != tc.dc && n.prefix.Bits() > p.Bits() && p.Contains(n.prefix.Addr()) {
				t.Errorf("%s holds %s of %s", p, n.prefix, n.dc)
			}
		}
	}
}
