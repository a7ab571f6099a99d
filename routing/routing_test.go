package routing

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

const threeDCs = `
datacenters:
  - name: east
    priority: 1
    weight: 100
    client_networks: ["10.1.0.0/16"]
    services:
      api: {endpoints: ["127.0.0.1:1001", "127.0.0.1:1002"], addresses: ["192.0.2.10"]}
  - name: west
    priority: 2
    weight: 300
    client_networks: ["10.2.0.0/16", "10.2.3.0/24"]
    services:
      api: {endpoints: ["127.0.0.1:2001", "127.0.0.1:2002"], addresses: ["192.0.2.20"]}
  - name: north
    priority: 2
    weight: 100
    client_networks: ["10.2.3.128/25"]
    services:
      api: {endpoints: ["127.0.0.1:3001", "127.0.0.1:3002"], addresses: ["192.0.2.30"]}
services:
  api:
    hostnames: ["api.coopr.example.com", "*.api.coopr.example.com"]
    policy: POLICY
    when_all_down: ALLDOWN
    min_healthy: MIN
dns:
  zone: coopr.example.com.
`

type fixture struct {
	e   *Engine
	now time.Time
	r   uint64 // what the fake random source returns, modulo n
}

func newFixture(t *testing.T, policy, allDown, min string) *fixture {
	t.Helper()
	y := strings.NewReplacer("POLICY", policy, "ALLDOWN", allDown, "MIN", min).Replace(threeDCs)
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	f.e = New(cfg, Options{Now: func() time.Time { return f.now }, Rand: func(n uint64) uint64 { return f.r % n }})
	for _, dc := range cfg.Datacenters {
		for _, ep := range dc.Services["api"].Endpoints {
			f.set(dc.Name, ep, true)
		}
	}
	return f
}

func (f *fixture) set(dc, ep string, up bool) {
	reason := ""
	if !up {
		reason = "connection refused"
	}
	f.e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: up, Reason: reason})
}

func (f *fixture) downDC(dc string) {
	port := map[string]string{"east": "1", "west": "2", "north": "3"}[dc]
	f.set(dc, "127.0.0.1:"+port+"001", false)
	f.set(dc, "127.0.0.1:"+port+"002", false)
}

func order(d Decision) string {
	var names []string
	for _, t := range d.Targets {
		names = append(names, t.DC)
	}
	return strings.Join(names, ",")
}

func TestPolicies(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		down         []string
		drain        string
		client       string
		rand         uint64
		want         string
		scope        int
		reason       string
	}{
		{name: "failover picks priority 1", policy: "failover", want: "east,west,north", reason: "failover: east (priority 1, 2/2 healthy); then west priority 2"},
		{name: "failover skips down DC", policy: "failover", down: []string{"east"}, want: "west,north", reason: "east down: 2/2 endpoints failing (connection refused)"},
		{name: "failover equal priorities share by weight (west 300)", policy: "failover", down: []string{"east"}, rand: 299, want: "west,north"},
		{name: "failover equal priorities share by weight (north 100)", policy: "failover", down: []string{"east"}, rand: 300, want: "north,west"},
		{name: "failover skips drained DC", policy: "failover", drain: "east", want: "west,north", reason: "east drained: maintenance"},
		{name: "weighted low draw", policy: "weighted", rand: 50, want: "east,west,north"},
		{name: "weighted middle draw", policy: "weighted", rand: 150, want: "west,east,north"},
		{name: "weighted high draw", policy: "weighted", rand: 450, want: "north,east,west"},
		{name: "nearest east network", policy: "nearest", client: "10.1.2.3", want: "east,west,north", scope: 16},
		{name: "nearest longest prefix wins", policy: "nearest", client: "10.2.3.200", want: "north,east,west", scope: 25},
		{name: "nearest /24 over /16", policy: "nearest", client: "10.2.3.4", want: "west,east,north", scope: 24},
		{name: "nearest IPv4-mapped client", policy: "nearest", client: "::ffff:10.2.9.9", want: "west,east,north", scope: 16},
		{name: "nearest unmatched falls back to failover", policy: "nearest", client: "192.0.2.1", want: "east,west,north", scope: -1},
		{name: "nearest DC down falls back to failover", policy: "nearest", client: "10.2.9.9", down: []string{"west"}, want: "east,north", scope: 16},
		{name: "nearest single choice is client independent", policy: "nearest", client: "10.2.9.9", down: []string{"west", "north"}, want: "east", scope: 0},
		{name: "all healthy in failover order", policy: "all", want: "east,west,north"},
		{name: "all minus down", policy: "all", down: []string{"west"}, want: "east,north"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.policy, "serve_all", "1")
			for _, dc := range tc.down {
				f.downDC(dc)
			}
			if tc.drain != "" {
				if err := f.e.Drain(tc.drain, Drain{Reason: "maintenance"}); err != nil {
					t.Fatal(err)
				}
			}
			f.r = tc.rand
			client := netip.MustParseAddr("127.0.0.1")
			if tc.client != "" {
				client = netip.MustParseAddr(tc.client)
			}
			d := f.e.Snapshot().Service("api").Decide(client)
			if got := order(d); got != tc.want {
				t.Errorf("order = %s, want %s (reason %q)", got, tc.want, d.Reason)
			}
			if d.ScopeBits != tc.scope {
				t.Errorf("scope = %d, want %d", d.ScopeBits, tc.scope)
			}
			if d.AllDown {
				t.Errorf("AllDown set with healthy DCs")
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestMinHealthy(t *testing.T) {
	for _, tc := range []struct {
		min     string
		downOne bool
		want    State
	}{
		{"1", true, StateUp},
		{"2", true, StateDown},
		{"2", false, StateUp},
		{`"50%"`, true, StateUp},
		{`"51%"`, true, StateDown},
		{`"100%"`, false, StateUp},
	} {
		f := newFixture(t, "failover", "serve_all", tc.min)
		if tc.downOne {
			f.set("east", "127.0.0.1:1001", false)
		}
		st := f.e.Snapshot().Service("api").DC("east")
		if st.State != tc.want {
			t.Errorf("min_healthy %s, one down=%v: state %s, want %s (%s)", tc.min, tc.downOne, st.State, tc.want, st.Reason)
		}
		if tc.want == StateDown && !strings.Contains(st.Reason, "1/2 endpoints failing") {
			t.Errorf("reason %q", st.Reason)
		}
	}
}

func TestAllDown(t *testing.T) {
	t.Run("serve_all answers every DC and says so", func(t *testing.T) {
		f := newFixture(t, "failover", "serve_all", "1")
		for _, dc := range []string{"east", "west", "north"} {
			f.downDC(dc)
		}
		svc := f.e.Snapshot().Service("api")
		d := svc.Decide(netip.MustParseAddr("127.0.0.1"))
		if !d.AllDown || !svc.AllDown || order(d) != "east,west,north" {
			t.Fatalf("decision %+v", d)
		}
		if len(d.Targets[0].Endpoints) != 2 {
			t.Errorf("serving all should offer every endpoint, got %v", d.Targets[0].Endpoints)
		}
		if !strings.Contains(d.Reason, "serving all") {
			t.Errorf("reason %q", d.Reason)
		}
		evs := f.e.Events(time.Time{})
		if evs[len(evs)-1].Kind != EventAllDown {
			t.Errorf("last event %+v, want all_down", evs[len(evs)-1])
		}
	})
	t.Run("serve_all excludes drained DCs", func(t *testing.T) {
		f := newFixture(t, "failover", "serve_all", "1")
		f.downDC("east")
		f.downDC("west")
		_ = f.e.Drain("north", Drain{})
		if got := order(f.e.Snapshot().Service("api").Decide(netip.Addr{})); got != "east,west" {
			t.Errorf("order %s", got)
		}
	})
	t.Run("refuse answers nothing", func(t *testing.T) {
		f := newFixture(t, "failover", "refuse", "1")
		for _, dc := range []string{"east", "west", "north"} {
			f.downDC(dc)
		}
		d := f.e.Snapshot().Service("api").Decide(netip.Addr{})
		if len(d.Targets) != 0 || !d.AllDown || !strings.Contains(d.Reason, "refusing") {
			t.Fatalf("decision %+v", d)
		}
		f.set("west", "127.0.0.1:2001", true)
		if got := order(f.e.Snapshot().Service("api").Decide(netip.Addr{})); got != "west" {
			t.Errorf("after recovery: %s", got)
		}
	})
}

func TestDrainAndEvents(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	f.now = f.now.Add(time.Minute)
	if err := f.e.Drain("mars", Drain{}); err == nil {
		t.Errorf("draining an unknown DC should fail")
	}
	if err := f.e.Drain("east", Drain{Reason: "kernel upgrade", Mode: "soft", Deadline: f.now.Add(10 * time.Minute), By: "ops"}); err != nil {
		t.Fatal(err)
	}
	st := f.e.Snapshot().Service("api").DC("east")
	if st.State != StateDrained || !st.Drain.HoldsPinned(f.now) || st.Drain.HoldsPinned(f.now.Add(11*time.Minute)) {
		t.Errorf("drained state %+v", st)
	}
	f.now = f.now.Add(time.Minute)
	f.downDC("west")
	if err := f.e.Undrain("east", "ops"); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range f.e.Events(f.now.Add(-90 * time.Second)) {
		kinds = append(kinds, string(ev.Kind))
	}
	want := "drained,endpoint_down,endpoint_down,dc_down,undrained"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("events %s, want %s", got, want)
	}
	if st := f.e.Snapshot().Service("api").DC("east"); st.State != StateUp {
		t.Errorf("east after undrain: %s", st.State)
	}
}

func TestDCSinceAndInitialEvents(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	start := f.now
	f.now = f.now.Add(time.Hour)
	f.set("east", "127.0.0.1:1001", false) // one of two down: DC still up
	if st := f.e.Snapshot().Service("api").DC("east"); st.State != StateUp || !st.Since.Equal(start) {
		t.Errorf("east %s since %v, want up since %v", st.State, st.Since, start)
	}
	for _, ev := range f.e.Events(time.Time{}) {
		if ev.Kind == EventDCUp && !ev.Initial {
			t.Errorf("first dc_up should be marked initial: %+v", ev)
		}
	}
}

func TestSetConfigKeepsHealth(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	f.downDC("east")
	y := strings.NewReplacer("POLICY", "failover", "ALLDOWN", "serve_all", "MIN", "1", `"127.0.0.1:3002"`, `"127.0.0.1:3003"`).Replace(threeDCs)
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	f.e.SetConfig(cfg)
	svc := f.e.Snapshot().Service("api")
	if svc.DC("east").State != StateDown || svc.DC("west").State != StateUp {
		t.Errorf("health lost across reload: east %s west %s", svc.DC("east").State, svc.DC("west").State)
	}
	north := svc.DC("north")
	if north.Healthy != 1 || north.Endpoints[1].Probed {
		t.Errorf("new endpoint must wait for its probe: %+v", north.Endpoints)
	}
}

func TestMatch(t *testing.T) {
	y := `
datacenters:
  - name: east
    services:
      api: {endpoints: ["127.0.0.1:1"]}
      ui: {endpoints: ["127.0.0.1:2"]}
services:
  api: {hostnames: ["coopr.example.com", "api.example.com"], path_prefixes: ["/v2/"]}
  ui: {hostnames: ["coopr.example.com", "*.ui.example.com"]}
listen: {dns: ""}
`
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, Options{}).Snapshot()
	for _, tc := range []struct{ host, path, want string }{
		{"coopr.example.com", "/v2/clusters", "api"},
		{"coopr.example.com", "/", "ui"},
		{"coopr.example.com", "/v2", "ui"},
		{"api.example.com", "/v2/x", "api"},
		{"api.example.com", "/other", ""},
		{"a.ui.example.com", "/", "ui"},
		{"a.b.ui.example.com", "/", "ui"},
		{"ui.example.com", "/", ""},
		{"evil.com", "/", ""},
	} {
		got := ""
		if svc := s.Match(tc.host, tc.path); svc != nil {
			got = svc.Name
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	if svc := s.MatchName("api.example.com"); svc == nil || svc.Name != "api" {
		t.Errorf("MatchName ignores path prefixes: %v", svc)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"failover", "weighted", "nearest", "all"} {
		f := newFixture(t, p, "serve_all", "1")
		svc := f.e.Snapshot().Service("api")
		client := netip.MustParseAddr("10.2.3.4")
		if n := testing.AllocsPerRun(100, func() { _ = svc.Decide(client) }); n != 0 {
			t.Errorf("%s: %v allocs per decision", p, n)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, p := range []string{"failover", "weighted", "nearest", "all"} {
		b.Run(p, func(b *testing.B) {
			y := strings.NewReplacer("POLICY", p, "ALLDOWN", "serve_all", "MIN", "1").Replace(threeDCs)
			cfg, _, err := config.Parse([]byte(y))
			if err != nil {
				b.Fatal(err)
			}
			e := New(cfg, Options{})
			for _, dc := range cfg.Datacenters {
				for _, ep := range dc.Services["api"].Endpoints {
					e.UpdateEndpoint(EndpointUpdate{DC: dc.Name, Service: "api", Endpoint: ep, Up: true})
				}
			}
			client := netip.MustParseAddr("10.2.3.4")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				svc := e.Snapshot().Service("api")
				_ = svc.Decide(client)
			}
		})
	}
}
