package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// shardDC is twoDC with Coopr's ID partition: west creates IDs ≡ 1 mod 10
// from two endpoints {{w1}} and {{w2}}, east IDs ≡ 2 mod 10 from {{e}}, and
// each takes the other's shards over. No DC holds the other partitions.
// The service's shard_routing is {{mode}}.
const shardDC = `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    priority: 1
    coopr_ids: {start: 1, increment: 10}
    takeover: [east]
    services:
      api: {endpoints: ["{{w1}}", "{{w2}}"]}
  - name: east
    priority: 2
    coopr_ids: {start: 2, increment: 10}
    takeover: [west]
    services:
      api: {endpoints: ["{{e}}"]}
services:
  api:
    hostnames: [api.coopr.test]
    affinity: cookie
    shard_routing: {{mode}}
proxy: {outlier: {consecutive_failures: 100}}
`

// switchable is a handler a test can change while the backend runs.
type switchable struct {
	h atomic.Pointer[http.HandlerFunc]
}

func newSwitchable(h http.HandlerFunc) *switchable {
	s := &switchable{}
	s.set(h)
	return s
}

func (s *switchable) set(h http.HandlerFunc)                       { s.h.Store(&h) }
func (s *switchable) serve(w http.ResponseWriter, r *http.Request) { (*s.h.Load())(w, r) }

// shardEnv is a proxy over shardDC with real loopback backends.
type shardEnv struct {
	*env
	w1, w2, east    *backend
	w1h, w2h, eastH *switchable
	hits            func() (west, east int64)
	westAddrs       [2]string
	eastAddr        string
}

func newShardEnv(t *testing.T, mode string) *shardEnv {
	t.Helper()
	s := &shardEnv{w1h: newSwitchable(ok("west")), w2h: newSwitchable(ok("west")), eastH: newSwitchable(ok("east"))}
	s.w1 = newBackend(t, "west", s.w1h.serve)
	s.w2 = newBackend(t, "west", s.w2h.serve)
	s.east = newBackend(t, "east", s.eastH.serve)
	s.westAddrs = [2]string{s.w1.addr(), s.w2.addr()}
	s.eastAddr = s.east.addr()
	s.env = newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", mode),
		map[string]string{"w1": s.w1.addr(), "w2": s.w2.addr(), "e": s.east.addr()}, envOptions{})
	s.hits = func() (int64, int64) { return s.w1.hits.Load() + s.w2.hits.Load(), s.east.hits.Load() }
	return s
}

// setDC marks every endpoint of dc up or down in the engine.
func (s *shardEnv) setDC(dc string, up bool) {
	if dc == "east" {
		s.setUp("east", "api", s.eastAddr, up)
		return
	}
	for _, a := range s.westAddrs {
		s.setUp("west", "api", a, up)
	}
}

func TestShardRouting(t *testing.T) {
	envs := map[string]*shardEnv{}
	for _, mode := range []string{"off", "writes", "all"} {
		envs[mode] = newShardEnv(t, mode)
	}
	eastPin := withPin(signPin(testKey, "east"))
	westPin := withPin(signPin(testKey, "west"))
	// West is first by policy, so whatever goes to east went by shard.
	cases := []struct {
		name, mode, method, path string
		hdr                      http.Header
		dc                       string // the DC that must serve
		owner                    string // the shard owner header, "" for none
	}{
		{"update goes to owner", "writes", "PUT", "/v2/clusters/00000002/config", nil, "east", "east"},
		{"reconfigure goes to owner", "writes", "POST", "/v2/clusters/00000002", nil, "east", "east"},
		{"delete goes to owner", "writes", "DELETE", "/v2/clusters/00000002", nil, "east", "east"},
		{"patch goes to owner", "writes", "PATCH", "/v2/clusters/00000002", nil, "east", "east"},
		{"action sub-path goes to owner", "writes", "POST", "/v2/clusters/00000002/abort", nil, "east", "east"},
		{"unpadded id", "writes", "DELETE", "/v2/clusters/12", nil, "east", "east"},
		{"owner is the policy's DC too", "writes", "POST", "/v2/clusters/00000011", nil, "west", "west"},
		{"read follows the policy", "writes", "GET", "/v2/clusters/00000002", nil, "west", ""},
		{"head follows the policy", "writes", "HEAD", "/v2/clusters/00000002/status", nil, "west", ""},
		{"create follows the policy", "writes", "POST", "/v2/clusters", nil, "west", ""},
		{"create with a slash follows the policy", "writes", "POST", "/v2/clusters/", nil, "west", ""},
		{"non-numeric id follows the policy", "writes", "DELETE", "/v2/clusters/abc", nil, "west", ""},
		{"id of no partition follows the policy", "writes", "DELETE", "/v2/clusters/00000005", nil, "west", ""},
		{"other resource follows the policy", "writes", "DELETE", "/v2/nodes/00000002", nil, "west", ""},
		{"shard wins over a west pin", "writes", "DELETE", "/v2/clusters/00000002", westPin, "east", "east"},
		{"shard wins over an east pin", "writes", "PUT", "/v2/clusters/00000001/config", eastPin, "west", "west"},
		{"a pin still holds for reads", "writes", "GET", "/v2/clusters/00000001", eastPin, "east", ""},
		{"a pin still holds for creates", "writes", "POST", "/v2/clusters", eastPin, "east", ""},
		{"all: reads go to owner", "all", "GET", "/v2/clusters/00000002", nil, "east", "east"},
		{"all: reads go to owner over a pin", "all", "GET", "/v2/clusters/00000001/status", eastPin, "west", "west"},
		{"all: writes go to owner", "all", "DELETE", "/v2/clusters/00000002", nil, "east", "east"},
		{"all: list follows the policy", "all", "GET", "/v2/clusters", nil, "west", ""},
		{"off: writes follow the policy", "off", "DELETE", "/v2/clusters/00000002", nil, "west", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := envs[tc.mode]
			w0, e0 := e.hits()
			code, _, hdr := e.call(tc.method, "api.coopr.test", tc.path, strings.NewReader("{}"), tc.hdr)
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			if got := hdr.Get("X-Backend"); got != tc.dc {
				t.Errorf("served by %q, want %s", got, tc.dc)
			}
			if got := hdr.Get(ShardOwnerHeader); got != tc.owner {
				t.Errorf("%s: %q, want %q", ShardOwnerHeader, got, tc.owner)
			}
			w1, e1 := e.hits()
			if w1+e1 != w0+e0+1 {
				t.Errorf("%d tries reached a backend, want 1", w1+e1-w0-e0)
			}
			if tc.owner != "" && pinOf(t, hdr) != "" {
				t.Errorf("an answer routed by shard set the affinity cookie: %q", hdr.Get("Set-Cookie"))
			}
		})
	}
	t.Run("metrics", func(t *testing.T) {
		e := envs["writes"]
		if got := e.metric("coopr_gslb_proxy_shard_routed_total", map[string]string{"service": "api", "owner": "east", "taken_over": "false"}); got != 7 {
			t.Errorf("routed to east: %v, want 7", got)
		}
		if got := e.metric("coopr_gslb_proxy_shard_routed_total", map[string]string{"service": "api", "owner": "west", "taken_over": "false"}); got != 2 {
			t.Errorf("routed to west: %v, want 2", got)
		}
	})
	t.Run("access log", func(t *testing.T) {
		owners := map[string]int{}
		for _, l := range envs["writes"].accessLog() {
			owners[fmt.Sprint(l["shard_owner"])]++
		}
		if owners["east"] != 7 || owners["west"] != 2 {
			t.Errorf("access log shard_owner counts %v", owners)
		}
	})
}

// TestShardTakeover: when the owner is down or drained, writes go to its
// takeover DC; when that is out too, writes are refused with a 503 that says
// why, and reads follow the policy.
func TestShardTakeover(t *testing.T) {
	e := newShardEnv(t, "writes")
	put := func(path string) (int, string, http.Header) {
		return e.call("PUT", "api.coopr.test", path, strings.NewReader("{}"), nil)
	}

	e.setDC("east", false)
	code, _, hdr := put("/v2/clusters/00000002/config")
	if code != 200 || hdr.Get("X-Backend") != "west" || hdr.Get(ShardOwnerHeader) != "west" {
		t.Fatalf("east down: got %d from %q, owner %q; want west took over", code, hdr.Get("X-Backend"), hdr.Get(ShardOwnerHeader))
	}
	if got := e.metric("coopr_gslb_proxy_shard_routed_total", map[string]string{"owner": "west", "taken_over": "true"}); got != 1 {
		t.Errorf("taken-over routing counted %v", got)
	}

	// West drained too: neither shard has a DC that may write it.
	if err := e.engine.Drain("west", routing.Drain{Mode: "hard", Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	w0, e0 := e.hits()
	for _, c := range []struct{ path, home, why string }{
		{"/v2/clusters/00000002/config", "east", "east is down"},
		{"/v2/clusters/00000001/config", "west", "west is drained: maintenance"},
	} {
		code, body, hdr := put(c.path)
		if code != http.StatusServiceUnavailable {
			t.Fatalf("%s with no owner: got %d %q, want 503", c.path, code, body)
		}
		for _, want := range []string{c.home + "'s shard", c.why, "no takeover datacenter"} {
			if !strings.Contains(body, want) {
				t.Errorf("503 body %q lacks %q", body, want)
			}
		}
		if hdr.Get("Retry-After") == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
			t.Errorf("503 headers %v", hdr)
		}
		if hdr.Get(ShardOwnerHeader) != "" {
			t.Errorf("a refusal names an owner: %q", hdr.Get(ShardOwnerHeader))
		}
	}
	if w1, e1 := e.hits(); w1 != w0 || e1 != e0 {
		t.Fatalf("a write to a shard nobody owns reached a backend (west %d, east %d)", w1-w0, e1-e0)
	}
	if got := e.metric("coopr_gslb_proxy_shard_no_owner_total", map[string]string{"service": "api", "home": "east"}); got != 1 {
		t.Errorf("no-owner refusals for east counted %v", got)
	}
	// A read of the same cluster is served as the policy says (all down:
	// serve all undrained, so east, whose endpoints still answer).
	if code, _, hdr := e.call("GET", "api.coopr.test", "/v2/clusters/00000002", nil, nil); code != 200 || hdr.Get(ShardOwnerHeader) != "" {
		t.Errorf("read with no owner: %d, owner header %q", code, hdr.Get(ShardOwnerHeader))
	}
	// A create still follows the policy.
	if code, _, _ := e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil); code != 200 {
		t.Errorf("create with no owner: %d", code)
	}

	// East back: it owns its shard again and takes west's over.
	e.setDC("east", true)
	for _, path := range []string{"/v2/clusters/00000002/config", "/v2/clusters/00000001/config"} {
		code, _, hdr := put(path)
		if code != 200 || hdr.Get("X-Backend") != "east" || hdr.Get(ShardOwnerHeader) != "east" {
			t.Errorf("%s: got %d from %q, owner %q; want east", path, code, hdr.Get("X-Backend"), hdr.Get(ShardOwnerHeader))
		}
	}
	// West back: writes return to it.
	e.engine.Undrain("west", "test")
	if code, _, hdr := put("/v2/clusters/00000001/config"); code != 200 || hdr.Get(ShardOwnerHeader) != "west" {
		t.Errorf("west back: %d, owner %q", code, hdr.Get(ShardOwnerHeader))
	}
}

// TestShardRetryStaysInOwner: a shard write is retried among the owner's
// endpoints and never on another DC, even one that would serve it by policy.
func TestShardRetryStaysInOwner(t *testing.T) {
	e := newShardEnv(t, "writes")
	put := func(hdr http.Header) (int, string, http.Header) {
		return e.call("PUT", "api.coopr.test", "/v2/clusters/00000001/config", strings.NewReader("{}"), hdr)
	}
	idem := http.Header{"Idempotency-Key": {"k1"}}
	cases := []struct {
		name   string
		w1, w2 http.HandlerFunc
		hdr    http.Header
		code   int
		// minHits..maxHits tries reach west. http.Transport itself may
		// resend a replayable request whose reused connection broke.
		minHits, maxHits int64
	}{
		{"one endpoint answers 503, replayable", status(503, "busy"), ok("west"), idem, 200, 1, 2},
		{"every endpoint answers 503", status(503, "busy"), status(503, "busy"), idem, 503, 2, 2},
		{"every endpoint resets", reset, reset, idem, 502, 2, 6},
		{"not replayable: one reset, no retry", reset, reset, nil, 502, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.w1h.set(tc.w1)
			e.w2h.set(tc.w2)
			defer e.w1h.set(ok("west"))
			defer e.w2h.set(ok("west"))
			w0, e0 := e.hits()
			code, body, _ := put(tc.hdr)
			w1, e1 := e.hits()
			if code != tc.code {
				t.Errorf("status %d %q, want %d", code, body, tc.code)
			}
			if e1 != e0 {
				t.Errorf("the shard write reached east (%d tries); only west owns it", e1-e0)
			}
			if n := w1 - w0; n < tc.minHits || n > tc.maxHits {
				t.Errorf("%d tries reached west, want %d to %d", n, tc.minHits, tc.maxHits)
			}
		})
	}

	t.Run("dead endpoints: next owner endpoint, never east", func(t *testing.T) {
		// The engine still thinks both west endpoints are up.
		dead := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "writes"),
			map[string]string{"w1": closedAddr(t), "w2": e.w2.addr(), "e": e.eastAddr}, envOptions{})
		for range 4 {
			code, _, hdr := dead.call("DELETE", "api.coopr.test", "/v2/clusters/00000001", nil, nil)
			if code != 200 || hdr.Get("X-Backend") != "west" || hdr.Get(ShardOwnerHeader) != "west" {
				t.Fatalf("got %d from %q", code, hdr.Get("X-Backend"))
			}
		}
		allDead := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "writes"),
			map[string]string{"w1": closedAddr(t), "w2": closedAddr(t), "e": e.eastAddr}, envOptions{})
		_, e0 := e.hits()
		code, _, _ := allDead.call("DELETE", "api.coopr.test", "/v2/clusters/00000001", nil, nil)
		if code != http.StatusServiceUnavailable {
			t.Errorf("owner unreachable: %d, want 503", code)
		}
		if _, e1 := e.hits(); e1 != e0 {
			t.Errorf("the write went to east")
		}
		// The same dead west: a create is not a shard write and fails over.
		code, _, hdr := allDead.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil)
		if code != 200 || hdr.Get("X-Backend") != "east" {
			t.Errorf("create with west dead: %d from %q, want east", code, hdr.Get("X-Backend"))
		}
	})
	t.Run("all: a read may leave a failing owner", func(t *testing.T) {
		e := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "all"),
			map[string]string{"w1": closedAddr(t), "w2": closedAddr(t), "e": e.eastAddr}, envOptions{})
		code, _, hdr := e.call("GET", "api.coopr.test", "/v2/clusters/00000001", nil, nil)
		if code != 200 || hdr.Get("X-Backend") != "east" || hdr.Get(ShardOwnerHeader) != "" {
			t.Errorf("got %d from %q, owner header %q", code, hdr.Get("X-Backend"), hdr.Get(ShardOwnerHeader))
		}
	})
}

// TestShardRoutingWithSimulator drives simulated Coopr servers, which answer
// 409 to a write for a cluster their DC does not own: with shard routing no
// write conflicts; without it, writes for east's clusters do.
func TestShardRoutingWithSimulator(t *testing.T) {
	fleet, err := simulator.StartFleet(
		simulator.DCOptions{Name: "west", IDStart: 1, IDIncrement: 10, UIs: -1},
		simulator.DCOptions{Name: "east", IDStart: 2, IDIncrement: 10, UIs: -1},
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	west, east := fleet.Datacenter("west"), fleet.Datacenter("east")
	conflicts := func() (n int64) {
		for _, d := range fleet.Datacenters() {
			for _, s := range d.Servers() {
				n += s.Conflicts()
			}
		}
		return n
	}
	// Clusters created in each DC directly, as its own users would.
	var ids []string
	for _, d := range []*simulator.Datacenter{west, east, west, east} {
		res, err := http.Post(d.Servers()[0].URL()+"/v2/clusters", "application/json", strings.NewReader(`{"name":"c"}`))
		if err != nil {
			t.Fatal(err)
		}
		var created struct{ ID string }
		err = json.NewDecoder(res.Body).Decode(&created)
		res.Body.Close()
		if err != nil || created.ID == "" {
			t.Fatalf("create: %v", err)
		}
		ids = append(ids, created.ID)
	}
	addrs := map[string]string{"w1": west.Servers()[0].Addr(), "w2": west.Servers()[1].Addr(), "e": east.Servers()[0].Addr()}

	for _, tc := range []struct {
		mode      string
		conflicts bool
	}{{"writes", false}, {"off", true}} {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", tc.mode), addrs, envOptions{})
			before := conflicts()
			for _, id := range ids {
				code, body, _ := e.call("PUT", "api.coopr.test", "/v2/clusters/"+id+"/config", strings.NewReader(`{"size":3}`), nil)
				if !tc.conflicts && code != 200 {
					t.Errorf("update %s: %d %s", id, code, body)
				}
				code, body, _ = e.call("POST", "api.coopr.test", "/v2/clusters/"+id+"/pause", nil, nil)
				if !tc.conflicts && code != 200 {
					t.Errorf("pause %s: %d %s", id, code, body)
				}
			}
			if got := conflicts() - before; (got > 0) != tc.conflicts {
				t.Errorf("%d writes refused with 409 by a DC that does not own the cluster", got)
			}
		})
	}
	t.Run("delete", func(t *testing.T) {
		e := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "writes"), addrs, envOptions{})
		before := conflicts()
		for _, id := range ids {
			if code, body, hdr := e.call("DELETE", "api.coopr.test", "/v2/clusters/"+id, nil, withPin(signPin(testKey, "west"))); code != 200 || hdr.Get(ShardOwnerHeader) != hdr.Get(simulator.HeaderDC) {
				t.Errorf("delete %s: %d %s, owner %q served by %q", id, code, body, hdr.Get(ShardOwnerHeader), hdr.Get(simulator.HeaderDC))
			}
		}
		if got := conflicts() - before; got != 0 {
			t.Errorf("%d deletes conflicted", got)
		}
	})
}

// TestShardLookupAllocs guards the hot path: finding a request's shard owner
// does not allocate, and a request routed by shard allocates no more than
// the same request routed by policy.
func TestShardLookupAllocs(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts differ under the race detector")
	}
	addrs := map[string]string{"w1": newBackend(t, "west", ok("west")).addr(), "w2": newBackend(t, "west", ok("west")).addr(), "e": closedAddr(t)}
	e := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "writes"), addrs, envOptions{noLog: true, noFront: true})
	sv := serviceViewOf(e, "api")
	for _, path := range []string{"/v2/clusters/00000011/config", "/v2/clusters/00000005", "/v2/clusters", "/v2/nodes"} {
		id, has := routing.ClusterID(path)
		req := routing.Request{ClusterID: id, HasClusterID: has, Write: true}
		var buf [4]*routing.Target
		if n := testing.AllocsPerRun(1000, func() { sv.svc.Route(req, buf[:0]) }); n != 0 {
			t.Errorf("%s: shard lookup allocates %.1f times", path, n)
		}
	}

	serve := func(e *env) float64 {
		req := httptest.NewRequest("DELETE", "http://api.coopr.test/v2/clusters/00000011", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		e.proxy.ServeHTTP(httptest.NewRecorder(), req) // build the view, warm the pool
		return testing.AllocsPerRun(500, func() {
			w := httptest.NewRecorder()
			e.proxy.ServeHTTP(w, req)
			if w.Code != 200 || w.Header().Get(ShardOwnerHeader) == "" && e.cfg.Services["api"].ShardRouting != "off" {
				t.Fatalf("status %d, owner %q", w.Code, w.Header().Get(ShardOwnerHeader))
			}
		})
	}
	off := newEnv(t, strings.ReplaceAll(shardDC, "{{mode}}", "off"), addrs, envOptions{noLog: true, noFront: true})
	byShard, byPolicy := serve(e), serve(off)
	// The request carries no cookie, so the difference is the shard lookup
	// and the owner header against the affinity cookie the policy's answer
	// gets. Half an allocation of slack absorbs the loopback backend's own
	// variation.
	if byShard > byPolicy+0.5 {
		t.Errorf("a request routed by shard allocates %.1f times, by policy %.1f", byShard, byPolicy)
	}
	t.Logf("allocations per proxied DELETE: by shard %.1f, by policy %.1f (backend included)", byShard, byPolicy)
}

func serviceViewOf(e *env, name string) *serviceView {
	v := e.proxy.currentView()
	return v.services[v.snap.Service(name)]
}

// BenchmarkShardLookup measures what shard routing adds to a proxied
// request: parsing the cluster ID from the path and finding its owner.
func BenchmarkShardLookup(b *testing.B) {
	addrs := map[string]string{"w1": newBackend(b, "west", ok("west")).addr(), "w2": newBackend(b, "west", ok("west")).addr(), "e": closedAddr(b)}
	e := newEnv(b, strings.ReplaceAll(shardDC, "{{mode}}", "writes"), addrs, envOptions{noLog: true, noFront: true})
	sv := serviceViewOf(e, "api")
	for _, bc := range []struct{ name, method, path string }{
		{"owner", "PUT", "/v2/clusters/00000012/config"},
		{"no partition", "DELETE", "/v2/clusters/00000015"},
		{"read", "GET", "/v2/clusters/00000012"},
		{"create", "POST", "/v2/clusters"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			id, has := routing.ClusterID(bc.path)
			req := routing.Request{ClusterID: id, HasClusterID: has, Write: !isRead(bc.method)}
			var buf [4]*routing.Target
			b.ReportAllocs()
			for b.Loop() {
				if a := sv.svc.Route(req, buf[:0]); a.ShardRefused {
					b.Fatal("no owner")
				}
			}
		})
	}
}

// BenchmarkServeHTTPShard compares a cluster write routed by shard with the
// same write routed by policy, through the whole handler.
func BenchmarkServeHTTPShard(b *testing.B) {
	addrs := map[string]string{"w1": newBackend(b, "west", ok("west")).addr(), "w2": newBackend(b, "west", ok("west")).addr(), "e": closedAddr(b)}
	for _, mode := range []string{"off", "writes"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, strings.ReplaceAll(shardDC, "{{mode}}", mode), addrs, envOptions{noLog: true, noFront: true})
			req := httptest.NewRequest("DELETE", "http://api.coopr.test/v2/clusters/00000011", nil)
			req.RemoteAddr = "192.0.2.1:1234"
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.proxy.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
