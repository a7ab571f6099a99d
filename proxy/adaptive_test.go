package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnStatus: an idempotent request answered with a code of
// retry.on_status is retried in another DC; a POST is not; when every DC
// answers one, the last answer is returned.
func TestOnStatus(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		west, east http.HandlerFunc
		method     string
		wantCode   int
		wantBody   string
		wantEast   int64
	}{
		{"500 is retried by default", "", status(500, "west broke"), ok("east"), "GET", 200, "east", 1},
		{"502 is retried by default", "", status(502, "west bad gw"), ok("east"), "HEAD", 200, "", 1},
		{"a POST is not retried", "", status(500, "west broke"), ok("east"), "POST", 500, "west broke", 0},
		{"a code outside on_status is not retried", "proxy: {retry: {on_status: [503]}}\n", status(500, "west broke"), ok("east"), "GET", 500, "west broke", 0},
		{"a listed code beyond the defaults", "proxy: {retry: {on_status: [507]}}\n", status(507, "west full"), ok("east"), "GET", 200, "east", 1},
		{"every DC fails: the last answer", "", status(500, "west broke"), status(503, "east busy"), "GET", 503, "east busy", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			west, east := newBackend(t, "west", tt.west), newBackend(t, "east", tt.east)
			e := newEnv(t, twoDC+tt.extra, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader("{}")
			}
			var code int
			var got string
			if body != nil {
				code, got, _ = e.call(tt.method, "api.coopr.test", "/", body, nil)
			} else {
				code, got, _ = e.call(tt.method, "api.coopr.test", "/", nil, nil)
			}
			if code != tt.wantCode || got != tt.wantBody || east.hits.Load() != tt.wantEast {
				t.Fatalf("got %d %q, east hits %d; want %d %q, %d", code, got, east.hits.Load(), tt.wantCode, tt.wantBody, tt.wantEast)
			}
		})
	}
}

// TestAdaptiveTryTimeout: once an endpoint's latency is known, a GET it
// does not answer moves to the next DC after latencyMultiple times its
// recent high percentile (here the floor), not after retry.try_timeout.
func TestAdaptiveTryTimeout(t *testing.T) {
	var hang atomic.Bool
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = w.Write([]byte("west"))
	})
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC+"proxy: {retry: {try_timeout: 3s}}\n", map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})

	// Before any latency is known the configured try_timeout applies.
	for i := 0; i < latencyMinSamples; i++ {
		if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "west" {
			t.Fatalf("warm-up %d: %d %q", i, code, body)
		}
	}
	var ep *endpoint
	e.proxy.viewMu.Lock()
	for _, x := range e.proxy.store.endpoints {
		if x.addr == west.addr() {
			ep = x
		}
	}
	e.proxy.viewMu.Unlock()
	if got := ep.lat.bound(150*time.Millisecond, 3*time.Second, 4, latencyMinSamples); got != 150*time.Millisecond {
		t.Fatalf("learned bound %v, want the floor 150ms for a fast endpoint", got)
	}
	hang.Store(true)
	start := time.Now()
	if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "east" {
		t.Fatalf("GET during the hang: %d %q", code, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("GET took %v; the adaptive timeout should fail over after about 150ms", d)
	}
	// The timeout ejected west at once: the next GET goes straight to east.
	start = time.Now()
	if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "east" || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("GET after the ejection: %d %q after %v", code, body, time.Since(start))
	}
}

// TestRetryWaitsTryTimeout: only the first try gives up early. The DC a
// request fails over to takes the failed DC's load, so its retry waits
// retry.try_timeout: a 300 ms answer from it is taken even though its
// learned latency would time it out after the floor.
func TestRetryWaitsTryTimeout(t *testing.T) {
	var hang atomic.Bool
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-r.Context().Done()
			return
		}
		_, _ = w.Write([]byte("west"))
	})
	slow := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		_, _ = w.Write([]byte("east"))
	}
	east, east2 := newBackend(t, "east", slow), newBackend(t, "east2", slow)
	yaml := strings.Replace(twoDC, `["{{e}}"]`, `["{{e}}", "{{e2}}"]`, 1) + "proxy: {retry: {try_timeout: 2s}}\n"
	e := newEnv(t, yaml, map[string]string{"w": west.addr(), "e": east.addr(), "e2": east2.addr()}, envOptions{})
	for i := 0; i < latencyMinSamples; i++ {
		e.call("GET", "api.coopr.test", "/", nil, nil)
	}
	e.proxy.viewMu.Lock()
	for _, x := range e.proxy.store.endpoints {
		if x.addr == east.addr() || x.addr == east2.addr() {
			for i := 0; i < latencyRing; i++ {
				x.lat.observe(time.Millisecond) // east looks fast
			}
		}
	}
	e.proxy.viewMu.Unlock()
	hang.Store(true)
	if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "east" {
		t.Fatalf("GET: %d %q, want east's slow answer", code, body)
	}
	// Only west's timeout ejected an endpoint.
	if got := e.metric("coopr_gslb_proxy_ejections_total", nil); got != 1 {
		t.Fatalf("ejections %v, want 1: the retry in east must not time out early", got)
	}
}
