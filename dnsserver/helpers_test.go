package dnsserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

const zoneName = "gslb.example.com."

// testYAML is the configuration most tests serve. %EXTRA% is replaced by
// test-specific dns settings.
const testYAML = `
listen:
  dns: "127.0.0.1:0"
  http: ""
  admin: ""
datacenters:
  - name: dc1
    priority: 1
    client_networks: ["10.1.0.0/16"]
    services:
      api:   {endpoints: ["127.0.0.1:1"], addresses: ["192.0.2.1", "2001:db8::1"]}
      near:  {endpoints: ["127.0.0.1:1"], addresses: ["192.0.2.1"]}
      every: {endpoints: ["127.0.0.1:1"], addresses: ["192.0.2.1"]}
      strict: {endpoints: ["127.0.0.1:9"], addresses: ["192.0.2.9"]}
  - name: dc2
    priority: 2
    client_networks: ["10.2.0.0/16"]
    services:
      api:   {endpoints: ["127.0.0.1:2"], addresses: ["192.0.2.2"]}
      near:  {endpoints: ["127.0.0.1:2"], addresses: ["192.0.2.2"]}
      every: {endpoints: ["127.0.0.1:2"], addresses: ["192.0.2.2"]}
services:
  api:
    hostnames: ["api.gslb.example.com", "*.apps.gslb.example.com"]
    dns_ttl: 30
  near:
    hostnames: ["near.gslb.example.com"]
    policy: nearest
  every:
    hostnames: ["all.gslb.example.com"]
    policy: all
  strict:
    hostnames: ["strict.gslb.example.com"]
    when_all_down: refuse
    dns_ttl: 5
dns:
  zone: gslb.example.com
  nameservers:
    ns1.gslb.example.com: ["192.0.2.53", "2001:db8::53"]
    ns2.other.example.net: []
  soa:
    rname: hostmaster@example.com
    negative_ttl: 45s
  records:
    - "www 300 IN CNAME API"
    - "ext 300 IN CNAME coopr.example.org."
    - "loop1 300 IN CNAME loop2"
    - "loop2 300 IN CNAME loop1"
    - "dangling 300 IN CNAME nothere"
    - "txt 60 IN TXT \"hello\""
    - "@ 300 IN MX 10 mail"
    - "mail 300 IN A 192.0.2.25"
    - "_api._tcp 300 IN SRV 0 0 443 api"
    - "@ 300 IN CAA 0 issue \"letsencrypt.org\""
    - "deep.ent.sub 300 IN TXT \"deep\""
    - "child 300 IN NS ns.child"
    - "ns.child 300 IN A 192.0.2.100"
    - "*.wild 60 IN TXT \"wildcard\""
    - "known.wild 60 IN TXT \"known\""
%EXTRA%
`

// parseConfig parses testYAML with extra appended to the dns block.
func parseConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	cfg, _, err := config.Parse([]byte(strings.Replace(testYAML, "%EXTRA%", extra, 1)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// bigTXT makes a record set too large for a 512-byte UDP response but
// small enough for our 1232 bytes.
func bigTXT() string {
	var b strings.Builder
	for i := range 5 {
		b.WriteString("    - \"big 60 IN TXT \\\"" + strings.Repeat(string(rune('a'+i)), 200) + "\\\"\"\n")
	}
	return b.String()
}

// fixture is a running server over an engine of the test configuration,
// with every endpoint healthy.
type fixture struct {
	engine *routing.Engine
	srv    *Server
	reg    *prometheus.Registry
	addr   string
}

func start(t testing.TB, extra string) *fixture {
	t.Helper()
	cfg := parseConfig(t, extra)
	engine := routing.New(cfg, routing.Options{})
	for _, ep := range []struct{ dc, svc, ep string }{
		{"dc1", "api", "127.0.0.1:1"}, {"dc1", "near", "127.0.0.1:1"}, {"dc1", "every", "127.0.0.1:1"},
		{"dc2", "api", "127.0.0.1:2"}, {"dc2", "near", "127.0.0.1:2"}, {"dc2", "every", "127.0.0.1:2"},
	} {
		engine.UpdateEndpoint(routing.EndpointUpdate{DC: ep.dc, Service: ep.svc, Endpoint: ep.ep, Up: true})
	}
	reg := prometheus.NewRegistry()
	srv, err := New(Options{
		Addr:       "127.0.0.1:0",
		Snapshot:   engine.Snapshot,
		Registerer: reg,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &fixture{engine: engine, srv: srv, reg: reg, addr: srv.Addr()}
}

// query builds a query; opts adjust it.
func query(name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	for _, o := range opts {
		o(m)
	}
	return m
}

func withEDNS(size uint16) func(*dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(size, false) }
}

func withECS(cidr string) func(*dns.Msg) {
	return func(m *dns.Msg) {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			panic(err)
		}
		bits, _ := n.Mask.Size()
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, SourceNetmask: uint8(bits), Address: n.IP}
		e.Family = 2
		if n.IP.To4() != nil {
			e.Family = 1
			e.Address = n.IP.To4()
		}
		opt := m.IsEdns0()
		if opt == nil {
			m.SetEdns0(1232, false)
			opt = m.IsEdns0()
		}
		opt.Option = append(opt.Option, e)
	}
}

// exchange sends m over network ("udp" or "tcp") and returns the response.
func (f *fixture) exchange(t testing.TB, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, f.addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], err)
	}
	return r
}

// rawExchange sends packet over UDP and returns the response bytes, or nil
// when none arrives within wait.
func (f *fixture) rawExchange(t testing.TB, packet []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(packet); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}
