package proxy

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestSlowStart brings east back and checks that its share of new requests
// grows over proxy.slow_start instead of jumping to everything at once.
func TestSlowStart(t *testing.T) {
	east := newBackend(t, "east", ok("east"))
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
proxy: {slow_start: 10s}
datacenters:
  - name: east
    priority: 1
    services: {api: {endpoints: ["{{east}}"]}}
  - name: west
    priority: 2
    services: {api: {endpoints: ["{{west}}"]}}
services:
  api: {hostnames: [coopr.test]}
`, map[string]string{"east": east.addr(), "west": west.addr()}, envOptions{noLog: true, rand: rand.New(rand.NewPCG(1, 2)).Uint64N})

	share := func() float64 {
		n := 0
		for range 200 {
			if _, body, _ := e.call("GET", "coopr.test", "/", nil, nil); body == "east" {
				n++
			}
		}
		return float64(n) / 200
	}
	if s := share(); s != 1 {
		t.Fatalf("east is up since start-up: share %.2f, want 1 (no ramp)", s)
	}
	e.setUp("east", "api", east.addr(), false)
	if s := share(); s != 0 {
		t.Fatalf("east down: share %.2f", s)
	}
	e.setUp("east", "api", east.addr(), true) // came back at the clock's now
	for _, tc := range []struct {
		at       time.Duration
		min, max float64
	}{
		{0, 0, 0.05},
		{2500 * time.Millisecond, 0.1, 0.45},
		{7500 * time.Millisecond, 0.55, 0.92},
		{10 * time.Second, 1, 1},
	} {
		e.clock.Advance(tc.at - e.clock.Now().Sub(e.engine.Snapshot().Service("api").DC("east").Since))
		if s := share(); s < tc.min || s > tc.max {
			t.Errorf("%s after east came back: share %.2f, want %.2f..%.2f", tc.at, s, tc.min, tc.max)
		}
	}
}
