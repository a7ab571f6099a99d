package dnsserver

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// minimalYAML has a zone and nothing else about DNS.
const minimalYAML = `
listen:
  dns: "%LISTEN%"
  http: ""
  admin: ""
datacenters:
  - name: dc1
    services:
      api: {endpoints: ["127.0.0.1:1"], addresses: ["192.0.2.1"]}
services:
  api:
    hostnames: ["Api.Coopr.Example.com"]
dns:
  zone: Coopr.Example.com.
`

func testZone(t *testing.T, listen string) *zone {
	t.Helper()
	cfg, _, err := config.Parse([]byte(strings.Replace(minimalYAML, "%LISTEN%", listen, 1)))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newMetrics(nil)
	snap := routing.New(cfg, routing.Options{}).Snapshot()
	return buildZone(cfg, snap, 7, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestZoneDefaults(t *testing.T) {
	z := testZone(t, "127.0.0.1:8053")
	if z.origin != "coopr.example.com." {
		t.Errorf("origin %q", z.origin)
	}
	soa := z.soa
	if soa.Ns != "ns1.coopr.example.com." || soa.Mbox != "hostmaster.coopr.example.com." || soa.Serial != 7 {
		t.Errorf("SOA %v: want mname ns1.<zone>, rname hostmaster.<zone>, serial 7", soa)
	}
	if soa.Minttl != 3600 || soa.Refresh != 14400 || soa.Retry != 3600 || soa.Expire != 1209600 {
		t.Errorf("SOA timers %v", soa)
	}
	if z.negSOA.Hdr.Ttl != 60 {
		t.Errorf("negative SOA TTL %d, want min(3600, 60)", z.negSOA.Hdr.Ttl)
	}
	ns := z.apex.rrs(dns.TypeNS)
	if len(ns) != 1 || ns[0].(*dns.NS).Ns != "ns1.coopr.example.com." {
		t.Errorf("apex NS %v", ns)
	}
	if len(z.apex.glue) != 1 || z.apex.glue[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Errorf("glue %v, want the listener's address", z.apex.glue)
	}
	if n := z.nodes["api.coopr.example.com."]; n == nil || n.service < 0 {
		t.Error("the service hostname is not a GSLB name (case not folded?)")
	}

	for _, listen := range []string{"0.0.0.0:53", "[::]:53", ":53"} {
		if z := testZone(t, listen); len(z.apex.glue) != 0 {
			t.Errorf("listen %s: glue %v, want none for a wildcard address", listen, z.apex.glue)
		}
	}
}

func TestSerialChangesOnReload(t *testing.T) {
	f := start(t, "")
	serial := func() uint32 {
		m := f.exchange(t, "udp", query(zoneName, dns.TypeSOA))
		return m.Answer[0].(*dns.SOA).Serial
	}
	first := serial()
	z := f.srv.view.Load().zone
	f.engine.Drain("dc1", routing.Drain{})
	if got := serial(); got != first {
		t.Errorf("serial changed from %d to %d on a health change; want it per configuration", first, got)
	}
	if f.srv.view.Load().zone != z {
		t.Error("the zone was rebuilt for a new snapshot of the same configuration")
	}
	// The same content, reloaded, keeps its serial; new content changes it.
	f.engine.SetConfig(parseConfig(t, ""))
	if got := serial(); got != first {
		t.Errorf("serial %d after reloading the same configuration, want %d", got, first)
	}
	f.engine.SetConfig(parseConfig(t, `    - "new 60 IN TXT \"x\""`))
	if got := serial(); got == first || got == 0 {
		t.Errorf("serial %d after a change of content, want other than %d", got, first)
	}
	// Two servers of one configuration agree.
	if a, b := contentSerial(parseConfig(t, "")), contentSerial(parseConfig(t, "")); a != b || a != first {
		t.Errorf("serials %d and %d of one configuration, first served %d", a, b, first)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		name   string
		parent string
		labels int
	}{
		{"a.b.", "b.", 2},
		{"b.", ".", 1},
		{".", "", 0},
		{`a\.b.c.`, "c.", 2},
		{`a\\.b.`, "b.", 2},
		{`a\\\.b.c.`, "c.", 2},
	} {
		if got := string(parent([]byte(c.name))); got != c.parent {
			t.Errorf("parent(%q) = %q, want %q", c.name, got, c.parent)
		}
		if got := countLabels([]byte(c.name)); got != c.labels {
			t.Errorf("countLabels(%q) = %d, want %d", c.name, got, c.labels)
		}
	}
	for _, c := range []struct {
		name string
		in   bool
	}{
		{"z.", true}, {"a.z.", true}, {"az.", false}, {`a\.z.`, false}, {`a\\.z.`, true}, {"x.", false},
	} {
		if got := inZone([]byte(c.name), "z."); got != c.in {
			t.Errorf("inZone(%q, z.) = %v", c.name, got)
		}
	}
	if got := mailboxName("first.last@example.com", "z."); got != `first\.last.example.com.` {
		t.Errorf("mailboxName = %q", got)
	}
	if got := absoluteName("ns1", "z."); got != "ns1.z." {
		t.Errorf("absoluteName(ns1) = %q", got)
	}
	if got := absoluteName("ns1.example.net", "z."); got != "ns1.example.net." {
		t.Errorf("absoluteName(ns1.example.net) = %q", got)
	}
}

func TestUDPSizeSetting(t *testing.T) {
	f := start(t, bigTXT()+"  udp_size: 1400")
	m := f.exchange(t, "udp", query("big.gslb.example.com.", dns.TypeTXT, withEDNS(4096)))
	if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != 1400 {
		t.Fatalf("OPT %v, want UDP size 1400", opt)
	}
	if m.Truncated || len(m.Answer) != 5 {
		t.Errorf("TC %v with %d records, want the whole answer", m.Truncated, len(m.Answer))
	}
	// Our size caps what a client advertises.
	g := start(t, bigTXT()+"  udp_size: 512")
	m = g.exchange(t, "udp", query("big.gslb.example.com.", dns.TypeTXT, withEDNS(4096)))
	if !m.Truncated || len(m.Answer) != 0 {
		t.Errorf("TC %v with %d records, want an empty truncated answer", m.Truncated, len(m.Answer))
	}
}
