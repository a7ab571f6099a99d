package routing

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// twoServices: api and ui in east and west; 127.0.0.1:1001 serves both
// api and ui in east, as one process answering both would.
const twoServices = `
datacenters:
  - name: east
    priority: 1
    services:
      api: {endpoints: ["127.0.0.1:1001", "127.0.0.1:1002"], addresses: ["192.0.2.10"]}
      ui: {endpoints: ["127.0.0.1:1001", "127.0.0.1:1003"], addresses: ["192.0.2.11"]}
  - name: west
    priority: 2
    services:
      api: {endpoints: ["127.0.0.1:2001", "127.0.0.1:2002"], addresses: ["192.0.2.20"]}
      ui: {endpoints: ["127.0.0.1:2003"], addresses: ["192.0.2.21"]}
services:
  api:
    hostnames: ["api.coopr.example.com"]
    min_healthy: MIN
  ui:
    hostnames: ["coopr.example.com"]
dns:
  zone: coopr.example.com.
`

func newDrainEngine(t *testing.T, min string) (*Engine, *time.Time) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(strings.ReplaceAll(twoServices, "MIN", min)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	e := New(cfg, Options{Now: func() time.Time { return now }})
	for _, dc := range cfg.Datacenters {
		for svc, ds := range dc.Services {
			for _, ep := range ds.Endpoints {
				e.UpdateEndpoint(EndpointUpdate{DC: dc.Name, Service: svc, Endpoint: ep, Up: true})
			}
		}
	}
	return e, &now
}

// view is what a test compares: per service, the proxy's first DC, the DNS
// DCs, and east's state, healthy count and endpoints the proxy may use.
type view struct {
	first, dns, eastState string
	eastHealthy           int
	eastEndpoints         string
}

func viewOf(s *Snapshot, service string) view {
	svc := s.Service(service)
	ans := svc.Route(Request{Client: netip.MustParseAddr("127.0.0.1")}, nil)
	var dns []string
	for _, t := range ans.DNS {
		dns = append(dns, t.DC)
	}
	east := svc.DC("east")
	return view{
		first: ans.Proxy[0].DC, dns: strings.Join(dns, ","),
		eastState: east.State.String(), eastHealthy: east.Healthy,
		eastEndpoints: strings.Join(east.Target.Endpoints, ","),
	}
}

func TestScopedDrains(t *testing.T) {
	for _, tc := range []struct {
		name    string
		min     string
		drains  []DrainScope
		api, ui view
		reason  string // east's reason for api
	}{
		{
			name: "nothing drained", min: "1",
			api: view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1002"},
			ui:  view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
		},
		{
			name: "service in a DC: out for that service only", min: "1",
			drains: []DrainScope{{DC: "east", Service: "api"}},
			api:    view{first: "west", dns: "west", eastState: "drained", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1002"},
			ui:     view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
			reason: "drained: maint",
		},
		{
			name: "endpoint of a service: out of its DC's healthy set", min: "1",
			drains: []DrainScope{{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001"}},
			api:    view{first: "east", dns: "east", eastState: "up", eastHealthy: 1, eastEndpoints: "127.0.0.1:1002"},
			ui:     view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
		},
		{
			name: "endpoint of every service of the DC", min: "1",
			drains: []DrainScope{{DC: "east", Endpoint: "127.0.0.1:1001"}},
			api:    view{first: "east", dns: "east", eastState: "up", eastHealthy: 1, eastEndpoints: "127.0.0.1:1002"},
			ui:     view{first: "east", dns: "east", eastState: "up", eastHealthy: 1, eastEndpoints: "127.0.0.1:1003"},
		},
		{
			name: "endpoint drain below min_healthy takes the DC down", min: "2",
			drains: []DrainScope{{DC: "east", Service: "api", Endpoint: "127.0.0.1:1002"}},
			api:    view{first: "west", dns: "west", eastState: "down", eastHealthy: 1, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1002"},
			ui:     view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
			reason: "1/2 endpoints drained (needs 2 healthy) (drained: maint)",
		},
		{
			name: "every endpoint drained", min: "1",
			drains: []DrainScope{{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001"}, {DC: "east", Service: "api", Endpoint: "127.0.0.1:1002"}},
			api:    view{first: "west", dns: "west", eastState: "down", eastHealthy: 0, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1002"},
			ui:     view{first: "east", dns: "east", eastState: "up", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
			reason: "2/2 endpoints drained (drained: maint)",
		},
		{
			name: "a DC drain still takes every service out", min: "1",
			drains: []DrainScope{{DC: "east"}},
			api:    view{first: "west", dns: "west", eastState: "drained", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1002"},
			ui:     view{first: "west", dns: "west", eastState: "drained", eastHealthy: 2, eastEndpoints: "127.0.0.1:1001,127.0.0.1:1003"},
			reason: "drained: maint",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newDrainEngine(t, tc.min)
			for _, sc := range tc.drains {
				if err := e.DrainScoped(sc, Drain{Reason: "maint", By: "ops"}); err != nil {
					t.Fatal(err)
				}
			}
			s := e.Snapshot()
			if got := viewOf(s, "api"); got != tc.api {
				t.Errorf("api:\n got %+v\nwant %+v", got, tc.api)
			}
			if got := viewOf(s, "ui"); got != tc.ui {
				t.Errorf("ui:\n got %+v\nwant %+v", got, tc.ui)
			}
			if got := s.Service("api").DC("east").Reason; got != tc.reason {
				t.Errorf("east reason %q, want %q", got, tc.reason)
			}
			var scoped int
			for _, sc := range tc.drains {
				if !sc.IsDC() {
					scoped++
				}
			}
			if len(s.ScopedDrains) != scoped {
				t.Errorf("snapshot lists %d scoped drains, want %d: %+v", len(s.ScopedDrains), scoped, s.ScopedDrains)
			}
			// Undraining everything restores the undrained view.
			for _, sc := range tc.drains {
				if err := e.UndrainScoped(sc, "ops"); err != nil {
					t.Fatal(err)
				}
			}
			if got := viewOf(e.Snapshot(), "api"); got.first != "east" || got.eastHealthy != 2 || got.eastState != "up" {
				t.Errorf("after undrain: api %+v", got)
			}
		})
	}
}

func TestScopedDrainMarksWhat(t *testing.T) {
	e, _ := newDrainEngine(t, "1")
	e.DrainScoped(DrainScope{DC: "east", Service: "api"}, Drain{Reason: "deploy", Mode: "soft"})
	e.DrainScoped(DrainScope{DC: "west", Service: "api", Endpoint: "127.0.0.1:2001"}, Drain{Reason: "disk"})
	s := e.Snapshot()
	east := s.Service("api").DC("east")
	if !east.ServiceDrain || east.Drain == nil || east.Drain.Mode != "soft" || east.Drain.Reason != "deploy" {
		t.Errorf("east api: service drain %v %+v", east.ServiceDrain, east.Drain)
	}
	if ui := s.Service("ui").DC("east"); ui.Drain != nil || ui.ServiceDrain {
		t.Errorf("east ui carries a drain: %+v", ui.Drain)
	}
	if _, ok := s.Drains["east"]; ok {
		t.Errorf("a service drain shows as a DC drain")
	}
	for _, ep := range s.Service("api").DC("west").Endpoints {
		if drained := ep.Drain != nil; drained != (ep.Address == "127.0.0.1:2001") {
			t.Errorf("west %s drained %v", ep.Address, drained)
		}
		if !ep.Up {
			t.Errorf("a drain changed %s's health", ep.Address)
		}
	}
	want := []string{"east/api", "west/api/127.0.0.1:2001"}
	var got []string
	for _, sd := range s.ScopedDrains {
		got = append(got, sd.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("scoped drains %v, want %v", got, want)
	}
}

func TestScopedDrainErrorsAndEvents(t *testing.T) {
	e, now := newDrainEngine(t, "1")
	for _, tc := range []struct {
		scope DrainScope
		want  error
		text  string
	}{
		{DrainScope{DC: "mars", Service: "api"}, ErrUnknownDC, `"mars"`},
		{DrainScope{DC: "east", Service: "db"}, ErrUnknownService, `"db" in datacenter "east" (it runs [api ui])`},
		{DrainScope{DC: "east", Service: "api", Endpoint: "127.0.0.1:1003"}, ErrUnknownEndpoint, `"127.0.0.1:1003" in service "api" in datacenter "east"`},
		{DrainScope{DC: "west", Endpoint: "127.0.0.1:1001"}, ErrUnknownEndpoint, `in datacenter "west"`},
	} {
		for _, op := range []func() error{
			func() error { return e.DrainScoped(tc.scope, Drain{}) },
			func() error { return e.UndrainScoped(tc.scope, "ops") },
		} {
			if err := op(); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%s: %v, want %v with %q", tc.scope, err, tc.want, tc.text)
			}
		}
	}

	scope := DrainScope{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001"}
	*now = now.Add(time.Minute)
	before := len(e.Events(time.Time{}))
	for range 3 { // a retried drain is one drain and one event
		if err := e.DrainScoped(scope, Drain{Reason: "disk", By: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	e.UndrainScoped(scope, "ops")
	e.UndrainScoped(scope, "ops") // not drained: no event
	evs := e.Events(time.Time{})[before:]
	if len(evs) != 2 || evs[0].Kind != EventDrained || evs[1].Kind != EventUndrained {
		t.Fatalf("events %+v, want drained then undrained", evs)
	}
	for _, ev := range evs {
		if ev.DC != "east" || ev.Service != "api" || ev.Endpoint != "127.0.0.1:1001" {
			t.Errorf("event %+v does not name the endpoint", ev)
		}
	}
	if evs[0].Reason != "disk" || evs[0].By != "ops" || evs[0].Mode != "hard" {
		t.Errorf("drained event %+v", evs[0])
	}
}

func TestScopedDrainsRestoreAndReload(t *testing.T) {
	e, _ := newDrainEngine(t, "1")
	e.RestoreScopedDrains([]ScopedDrain{
		{DrainScope: DrainScope{DC: "east", Service: "api"}, Drain: Drain{Reason: "saved", Mode: "hard"}},
		{DrainScope: DrainScope{DC: "east", Service: "gone"}, Drain: Drain{Reason: "stale"}},
		{DrainScope: DrainScope{DC: "west", Service: "api", Endpoint: "127.0.0.1:2002"}, Drain: Drain{Reason: "saved"}},
	})
	s := e.Snapshot()
	if len(s.ScopedDrains) != 2 || s.Service("api").DC("east").State != StateDrained {
		t.Fatalf("restored %+v", s.ScopedDrains)
	}
	if len(e.Events(time.Time{})) != 0 && hasKind(e.Events(time.Time{}), EventDrained) {
		t.Errorf("restoring drains emitted events")
	}
	// A reload that removes the endpoint drops its drain, keeps the other.
	cfg, _, err := config.Parse([]byte(strings.ReplaceAll(strings.ReplaceAll(twoServices, "MIN", "1"), `"127.0.0.1:2001", "127.0.0.1:2002"`, `"127.0.0.1:2001"`)))
	if err != nil {
		t.Fatal(err)
	}
	e.SetConfig(cfg)
	s = e.Snapshot()
	if len(s.ScopedDrains) != 1 || s.ScopedDrains[0].String() != "east/api" {
		t.Errorf("after reload: %+v", s.ScopedDrains)
	}
}

func hasKind(evs []Event, k EventKind) bool {
	for _, ev := range evs {
		if ev.Kind == k {
			return true
		}
	}
	return false
}
