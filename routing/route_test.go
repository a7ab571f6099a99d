package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// routeDCs has east (priority 1, optionally without DNS addresses), west and
// north (priority 2), cluster-ID partitions with takeovers and cookie
// affinity, so that every rule of Route can apply.
const routeDCs = `
datacenters:
  - name: east
    priority: 1
    client_networks: ["10.1.0.0/16"]
    coopr_ids: {start: 1, increment: 10}
    takeover: [west]
    services:
      api: {endpoints: ["127.0.0.1:1001"]EASTADDRS}
  - name: west
    priority: 2
    weight: 300
    client_networks: ["10.2.0.0/16"]
    coopr_ids: {start: 2, increment: 10}
    takeover: [east]
    services:
      api: {endpoints: ["127.0.0.1:2001"], addresses: ["192.0.2.20"]}
  - name: north
    priority: 2
    weight: 100
    coopr_ids: {start: 3, increment: 10}
    takeover: [west]
    services:
      api: {endpoints: ["127.0.0.1:3001"], addresses: ["192.0.2.30"]}
services:
  api:
    hostnames: ["api.coopr.example.com"]
    policy: POLICY
    affinity: cookie
    shard_routing: all
    when_all_down: serve_all
listen: {dns: ""}
`

func names(ts []*Target) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.DC)
	}
	return out
}

// TestRouteAgrees runs Route over policy x health x drain x pin x shard x
// addresses and checks that the proxy order, the DNS answer and the
// explained steps are one answer: the proxy's first DC is the one the rules
// give, DNS answers the first DC of the decision that has addresses (every
// such DC for all), and the steps name both exactly.
func TestRouteAgrees(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	endpoints := map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"}
	for _, policy := range []string{"failover", "weighted", "nearest", "all"} {
		for _, eastAddrs := range []bool{true, false} {
			y := strings.Replace(routeDCs, "POLICY", policy, 1)
			if eastAddrs {
				y = strings.Replace(y, "EASTADDRS", `, addresses: ["192.0.2.10"]`, 1)
			} else {
				y = strings.Replace(y, "EASTADDRS", "", 1)
			}
			cfg, _, err := config.Parse([]byte(y))
			if err != nil {
				t.Fatal(err)
			}
			for _, health := range []string{"all up", "east down", "all down"} {
				for _, drain := range []string{"none", "east hard", "east soft"} {
					e := New(cfg, Options{Now: func() time.Time { return now }})
					for dc, ep := range endpoints {
						up := health == "all up" || (health == "east down" && dc != "east")
						e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: up, Reason: "refused"})
					}
					switch drain {
					case "east hard":
						_ = e.Drain("east", Drain{Mode: "hard", Reason: "maint"})
					case "east soft":
						_ = e.Drain("east", Drain{Mode: "soft", Reason: "maint", Deadline: now.Add(10 * time.Minute)})
					}
					svc := e.Snapshot().Service("api")
					for _, pin := range []string{"", "east", "north"} {
						for _, shard := range []string{"none", "read 11", "write 11"} {
							name := fmt.Sprintf("%s/addrs=%v/%s/%s/pin=%s/%s", policy, eastAddrs, health, drain, pin, shard)
							t.Run(name, func(t *testing.T) {
								req := Request{Client: netip.MustParseAddr("10.2.0.1"), Pin: pin, Now: now, Rand: func(uint64) uint64 { return 0 }}
								if shard != "none" {
									req.ClusterID, req.HasClusterID, req.Write = 11, true, strings.HasPrefix(shard, "write")
								}
								plain := svc.Route(req, make([]*Target, 0, 4))
								req.Explain = true
								ex := svc.Route(req, nil)
								checkRoute(t, svc, req, plain, ex, health, drain)
							})
						}
					}
					e.Close()
				}
			}
		}
	}
}

func checkRoute(t *testing.T, svc *Service, req Request, plain, ex Answer, health, drain string) {
	t.Helper()
	if !slices.Equal(names(plain.Proxy), names(ex.Proxy)) || !slices.Equal(names(plain.DNS), names(ex.DNS)) {
		t.Fatalf("explaining changed the answer: proxy %v vs %v, dns %v vs %v", names(plain.Proxy), names(ex.Proxy), names(plain.DNS), names(ex.DNS))
	}
	a := ex
	up := func(dc string) bool {
		switch {
		case dc == "east" && drain != "none":
			return false
		case health == "all up":
			return true
		case health == "east down":
			return dc != "east"
		}
		return false
	}
	// Nothing drained hard or down (while another DC is up) is ever offered.
	for _, t2 := range a.Targets {
		if health != "all down" && !up(t2.DC) {
			t.Errorf("decision offers %s, which cannot serve: %v", t2.DC, names(a.Targets))
		}
		if t2.DC == "east" && drain != "none" {
			t.Errorf("decision offers drained east: %v", names(a.Targets))
		}
	}

	// The proxy's first DC follows the rules: shard owner, then pin, then policy.
	var want string
	owner := ""
	switch {
	case up("east"):
		owner = "east"
	case up("west"):
		owner = "west"
	}
	eastHoldsPins := drain == "east soft" && health != "east down" && health != "all down"
	switch {
	case req.HasClusterID && owner != "":
		want = owner
		if req.Write && len(a.Proxy) != 1 {
			t.Errorf("a write goes to the owner alone, got %v", names(a.Proxy))
		}
		if a.Shard == nil {
			t.Errorf("shard not reported")
		}
	case req.HasClusterID && req.Write:
		want = ""
		if !a.ShardRefused || len(a.Proxy) != 0 {
			t.Errorf("a write of an orphaned shard must be refused: %+v", names(a.Proxy))
		}
	case req.Pin != "" && (slices.Contains(names(a.Targets), req.Pin) || (req.Pin == "east" && eastHoldsPins)):
		want = req.Pin
		if !a.Pinned {
			t.Errorf("pin %s not reported honoured", req.Pin)
		}
	case len(a.Targets) > 0:
		want = a.Targets[0].DC
	}
	got := ""
	if len(a.Proxy) > 0 {
		got = a.Proxy[0].DC
	}
	if got != want {
		t.Errorf("proxy first %q, want %q (proxy %v, decision %v)", got, want, names(a.Proxy), names(a.Targets))
	}
	// Proxy holds no DC twice, and only DCs of the decision (plus a pinned
	// DC finishing its sessions, or the shard owner).
	seen := map[string]bool{}
	for _, t2 := range a.Proxy {
		if seen[t2.DC] {
			t.Errorf("proxy tries %s twice: %v", t2.DC, names(a.Proxy))
		}
		seen[t2.DC] = true
		if !slices.Contains(names(a.Targets), t2.DC) && !(a.Pinned && t2.DC == req.Pin) && (a.Shard == nil || a.Shard.Owner != t2.DC) {
			t.Errorf("proxy tries %s, which the decision does not offer: %v", t2.DC, names(a.Targets))
		}
	}

	// DNS: the first DC of the decision with addresses, every such DC for all.
	var wantDNS []string
	for _, t2 := range a.Targets {
		if len(t2.Addresses) > 0 {
			wantDNS = append(wantDNS, t2.DC)
			if svc.Policy != PolicyAll {
				break
			}
		}
	}
	if wantDNS == nil {
		wantDNS = []string{}
	}
	if !slices.Equal(names(a.DNS), wantDNS) {
		t.Errorf("dns %v, want %v (decision %v)", names(a.DNS), wantDNS, names(a.Targets))
	}
	for _, t2 := range a.DNS {
		if len(t2.Addresses) == 0 {
			t.Errorf("dns answers %s, which has no addresses", t2.DC)
		}
	}

	// The steps say what was served, in the same words explain shows.
	proxyStep := "proxy: refuses (503)"
	if len(a.Proxy) > 0 {
		proxyStep = "proxy: " + strings.Join(names(a.Proxy), ", ")
	}
	if !slices.Contains(a.Steps, proxyStep) {
		t.Errorf("steps lack %q: %q", proxyStep, a.Steps)
	}
	dnsStep := "dns: no address to answer (NODATA)"
	if len(a.DNS) > 0 {
		var parts []string
		for _, t2 := range a.DNS {
			for _, ad := range t2.Addresses {
				parts = append(parts, ad.String()+" ("+t2.DC+")")
			}
		}
		dnsStep = "dns: " + strings.Join(parts, ", ")
	}
	if !slices.Contains(a.Steps, dnsStep) {
		t.Errorf("steps lack %q: %q", dnsStep, a.Steps)
	}
}

// TestRouteDCWithoutAddresses is the case explain used to get wrong: east is
// first for the proxy but has no DNS addresses, so DNS answers west's.
func TestRouteDCWithoutAddresses(t *testing.T) {
	y := strings.NewReplacer("POLICY", "failover", "EASTADDRS", "").Replace(routeDCs)
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	e := New(cfg, Options{Rand: func(uint64) uint64 { return 0 }})
	defer e.Close()
	for dc, ep := range map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"} {
		e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: true})
	}
	a := e.Snapshot().Service("api").Route(Request{Client: netip.MustParseAddr("192.0.2.1"), Explain: true}, nil)
	if got := names(a.Proxy); got[0] != "east" {
		t.Errorf("proxy %v, want east first", got)
	}
	if got := a.Addresses(); len(got) != 1 || got[0].String() != "192.0.2.20" {
		t.Errorf("dns %v, want 192.0.2.20", got)
	}
	if !slices.Contains(a.Steps, "dns: skips east (no addresses)") {
		t.Errorf("steps do not say east was skipped: %q", a.Steps)
	}
}

// TestRouteSlowStart: a DC that came back within proxy.slow_start gets a
// share of new requests that grows with the time since, decided by the
// injected random source; DNS is not affected.
func TestRouteSlowStart(t *testing.T) {
	y := strings.NewReplacer("POLICY", "failover", "EASTADDRS", `, addresses: ["192.0.2.10"]`).Replace(routeDCs) + "proxy: {slow_start: 60s}\n"
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	e := New(cfg, Options{Now: func() time.Time { return now }})
	defer e.Close()
	for dc, ep := range map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"} {
		e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: true})
	}
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001", Up: false, Reason: "refused"})
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001", Up: true})
	svc := e.Snapshot().Service("api")
	at := now.Add(15 * time.Second) // a quarter of the window
	for _, tc := range []struct {
		draw  uint64
		first string
	}{{0, "east"}, {uint64(14 * time.Second), "east"}, {uint64(16 * time.Second), "west"}, {uint64(59 * time.Second), "west"}} {
		a := svc.Route(Request{Client: netip.MustParseAddr("192.0.2.1"), Now: at, Rand: func(uint64) uint64 { return tc.draw }}, nil)
		if a.Proxy[0].DC != tc.first || a.SlowStarted != (tc.first == "west") {
			t.Errorf("draw %v: proxy %v, want %s first", time.Duration(tc.draw), names(a.Proxy), tc.first)
		}
		if a.DNS[0].DC != "east" {
			t.Errorf("slow start changed DNS: %v", names(a.DNS))
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	y := strings.NewReplacer("POLICY", "weighted", "EASTADDRS", `, addresses: ["192.0.2.10"]`).Replace(routeDCs)
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	e := New(cfg, Options{})
	defer e.Close()
	for dc, ep := range map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"} {
		e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: true})
	}
	svc := e.Snapshot().Service("api")
	buf := make([]*Target, 0, 8)
	client := netip.MustParseAddr("10.2.0.1")
	for _, req := range []Request{
		{Client: client},
		{Client: client, Pin: "north"},
		{Client: client, ClusterID: 12, HasClusterID: true},
		{Client: client, ClusterID: 11, HasClusterID: true, Write: true},
	} {
		if n := testing.AllocsPerRun(100, func() { _ = svc.Route(req, buf) }); n != 0 {
			t.Errorf("Route(%+v) allocates %v times", req, n)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	y := strings.NewReplacer("POLICY", "weighted", "EASTADDRS", `, addresses: ["192.0.2.10"]`).Replace(routeDCs)
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		b.Fatal(err)
	}
	e := New(cfg, Options{})
	defer e.Close()
	svc := e.Snapshot().Service("api")
	buf := make([]*Target, 0, 8)
	client := netip.MustParseAddr("10.2.0.1")
	b.ReportAllocs()
	for b.Loop() {
		_ = svc.Route(Request{Client: client, Pin: "north"}, buf)
	}
}
