package routing

import (
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func TestTTLFromFailoverBudget(t *testing.T) {
	y := `
health: {interval: 1s, timeout: 800ms, fall: 3, fast_interval: 200ms}
datacenters:
  - name: east
    priority: 1
    services: {api: {endpoints: ["127.0.0.1:1"]}}
  - name: west
    priority: 2
    services: {api: {endpoints: ["127.0.0.1:2"]}}
services:
  api: {hostnames: ["api.example.com"], dns_ttl: 30, failover_budget: BUDGET}
listen: {dns: ""}
`
	for _, tc := range []struct {
		budget        string
		ttl           uint32
		worst, reason string
	}{
		// detection = 1s + 2 x max(200ms, 800ms) + 800ms = 3.4s
		{"0s", 30, "33.4s", "dns_ttl"},
		{"10s", 6, "9.4s", "failover_budget 10s minus detection 3.4s"},
		{"4s", 5, "8.4s", "failover_budget"}, // floored at MinTTL
	} {
		cfg, _, err := config.Parse([]byte(strings.Replace(y, "BUDGET", tc.budget, 1)))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
		e := New(cfg, Options{Now: func() time.Time { return now }})
		defer e.Close()
		e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1", Up: true})
		e.UpdateEndpoint(EndpointUpdate{DC: "west", Service: "api", Endpoint: "127.0.0.1:2", Up: true})
		svc := e.Snapshot().Service("api")
		if svc.TTL != tc.ttl || svc.WorstCaseFailover.String() != tc.worst || !strings.Contains(svc.TTLReason, tc.reason) {
			t.Errorf("budget %s: TTL %d worst %s (%s); want %d %s", tc.budget, svc.TTL, svc.WorstCaseFailover, svc.TTLReason, tc.ttl, tc.worst)
		}
	}
}

func TestTTLShrinksAfterAChange(t *testing.T) {
	y := `
datacenters:
  - name: east
    services: {api: {endpoints: ["127.0.0.1:1"]}}
services:
  api: {hostnames: ["api.example.com"], failover_budget: 60s}
listen: {dns: ""}
`
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	e := New(cfg, Options{Now: func() time.Time { return now }})
	defer e.Close()
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1", Up: true})
	long := e.Snapshot().Service("api").TTL
	if long <= config.MinTTL {
		t.Fatalf("start-up TTL %d should be the budget's, not shortened", long)
	}
	now = now.Add(time.Hour)
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1", Up: false})
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1", Up: true})
	svc := e.Snapshot().Service("api")
	if svc.TTL != config.MinTTL || !strings.Contains(svc.TTLReason, "changed state recently") {
		t.Errorf("just recovered: TTL %d (%s), want %d", svc.TTL, svc.TTLReason, config.MinTTL)
	}
	now = now.Add(config.RecentChange + time.Second)
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1", Up: true, Reason: "x"})
	if got := e.Snapshot().Service("api").TTL; got != long {
		t.Errorf("after the recent-change window: TTL %d, want %d", got, long)
	}
}
