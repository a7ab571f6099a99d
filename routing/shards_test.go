package routing

import (
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

const shardedDCs = `
datacenters:
  - name: east
    priority: 1
    coopr_ids: {start: 1, increment: 10}
    takeover: [west, north]
    services:
      api: {endpoints: ["127.0.0.1:1001"]}
  - name: west
    priority: 2
    coopr_ids: {start: 2, increment: 10}
    takeover: [north]
    services:
      api: {endpoints: ["127.0.0.1:2001"]}
  - name: north
    priority: 3
    coopr_ids: {start: 13, increment: 10}
    takeover: [east]
    services:
      api: {endpoints: ["127.0.0.1:3001"]}
services:
  api:
    hostnames: ["api.coopr.example.com"]
    shard_routing: writes
listen: {dns: ""}
`

func shardEngine(t testing.TB) (*Engine, *time.Time) {
	cfg, _, err := config.Parse([]byte(shardedDCs))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	e := New(cfg, Options{Now: func() time.Time { return now }})
	for _, dc := range []string{"east", "west", "north"} {
		e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"}[dc], Up: true})
	}
	return e, &now
}

func TestShardOwnership(t *testing.T) {
	for _, tc := range []struct {
		name   string
		down   []string
		drain  string
		id     uint64
		owner  string // "" = no owner; "-" = no partition holds the id
		reason string
	}{
		{name: "east's first id", id: 1, owner: "east", reason: "owner healthy"},
		{name: "east's partition", id: 91, owner: "east"},
		{name: "west's partition", id: 12, owner: "west"},
		{name: "north's partition (start 13 = partition 3)", id: 23, owner: "north"},
		{name: "unowned partition", id: 15, owner: "-"},
		{name: "zero id is partition 0, unowned", id: 0, owner: "-"},
		{name: "east down: first takeover", down: []string{"east"}, id: 41, owner: "west", reason: "east is down: 1/1 endpoints failing (refused); taken over by west"},
		{name: "east and west down: second takeover", down: []string{"east", "west"}, id: 41, owner: "north"},
		{name: "east drained: takeover", drain: "east", id: 41, owner: "west", reason: "east is drained: maint; taken over by west"},
		{name: "west down and its takeover down: no owner", down: []string{"west", "north"}, id: 12, owner: "", reason: "no takeover datacenter ([north]) is healthy"},
		{name: "takeover only by listed DCs", down: []string{"west"}, id: 2, owner: "north"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := shardEngine(t)
			for _, dc := range tc.down {
				ep := map[string]string{"east": "127.0.0.1:1001", "west": "127.0.0.1:2001", "north": "127.0.0.1:3001"}[dc]
				e.UpdateEndpoint(EndpointUpdate{DC: dc, Service: "api", Endpoint: ep, Up: false, Reason: "refused"})
			}
			if tc.drain != "" {
				e.Drain(tc.drain, Drain{Reason: "maint"})
			}
			sh := e.Snapshot().Service("api").ShardOf(tc.id)
			if tc.owner == "-" {
				if sh != nil {
					t.Fatalf("id %d should be in no partition, got %+v", tc.id, sh)
				}
				return
			}
			if sh == nil {
				t.Fatalf("id %d: no shard", tc.id)
			}
			if sh.Owner != tc.owner {
				t.Errorf("id %d: owner %q, want %q (%s)", tc.id, sh.Owner, tc.owner, sh.Reason)
			}
			if (sh.Target() == nil) != (tc.owner == "") || (sh.Target() != nil && sh.Target().DC != tc.owner) {
				t.Errorf("target %+v for owner %q", sh.Target(), tc.owner)
			}
			if !strings.Contains(sh.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", sh.Reason, tc.reason)
			}
		})
	}
}

func TestShardOwnerSince(t *testing.T) {
	e, now := shardEngine(t)
	start := *now
	*now = now.Add(time.Minute)
	e.UpdateEndpoint(EndpointUpdate{DC: "west", Service: "api", Endpoint: "127.0.0.1:2001", Up: false})
	svc := e.Snapshot().Service("api")
	if sh := svc.ShardOf(1); !sh.Since.Equal(start) {
		t.Errorf("east's shard did not change owner, since %v, want %v", sh.Since, start)
	}
	if sh := svc.ShardOf(2); sh.Owner != "north" || !sh.Since.Equal(*now) {
		t.Errorf("west's shard: %+v", sh)
	}
}

func TestClusterID(t *testing.T) {
	for _, tc := range []struct {
		path string
		id   uint64
		ok   bool
	}{
		{"/v2/clusters/00000017", 17, true},
		{"/v2/clusters/00000017/status", 17, true},
		{"/v2/clusters/12/services/hdfs/restart", 12, true},
		{"/v2/clusters", 0, false},
		{"/v2/clusters/", 0, false},
		{"/v2/clusters/abc", 0, false},
		{"/v2/clusters/12a", 0, false},
		{"/v2/clustersx/12", 0, false},
		{"/v2/nodes/12", 0, false},
		{"/v2/clusters/99999999999999999999999", 0, false},
	} {
		id, ok := ClusterID(tc.path)
		if id != tc.id || ok != tc.ok {
			t.Errorf("ClusterID(%q) = %d, %v; want %d, %v", tc.path, id, ok, tc.id, tc.ok)
		}
	}
}

func TestShardLookupDoesNotAllocate(t *testing.T) {
	e, _ := shardEngine(t)
	svc := e.Snapshot().Service("api")
	if n := testing.AllocsPerRun(100, func() {
		id, _ := ClusterID("/v2/clusters/00000041/config")
		_ = svc.ShardOf(id)
	}); n != 0 {
		t.Errorf("%v allocs", n)
	}
}

func BenchmarkShardRoute(b *testing.B) {
	e, _ := shardEngine(b)
	svc := e.Snapshot().Service("api")
	b.ReportAllocs()
	for b.Loop() {
		id, ok := ClusterID("/v2/clusters/00000041/config")
		if ok {
			_ = svc.ShardOf(id).Target()
		}
	}
}
