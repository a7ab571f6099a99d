package proxy

import (
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Try timeouts on the fake clock of a synctest bubble (see hedge_test.go):
// each elapsed time is exact.

// TestHungEndpointPOST: a POST is never replayed: it ends with a 504 after
// the try timeout, not response_header_timeout, and the timeout ejects the
// endpoint at once, so the next POST goes to the other DC.
func TestHungEndpointPOST(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedgeEnv(t, "proxy: {response_header_timeout: 600ms, retry: {try_timeout: 150ms}}\n")
		h.west.setDelay(-1)
		rec, took := h.serve(http.MethodPost)
		if rec.Code != http.StatusGatewayTimeout || h.east.hits.Load() != 0 || took != 150*time.Millisecond {
			t.Fatalf("POST: %d %q after %v, east hits %d; want 504 after 150ms and no replay", rec.Code, rec.Body.String(), took, h.east.hits.Load())
		}
		if rec, took = h.serve(http.MethodPost); rec.Code != 200 || rec.Body.String() != "east" || took != 0 {
			t.Fatalf("POST after the timeout: %d %q after %v, want east at once (west ejected)", rec.Code, rec.Body.String(), took)
		}
		if got := h.metric("coopr_gslb_proxy_upstream_errors_total", map[string]string{"kind": "timeout"}); got != 1 {
			t.Errorf("timeouts counted %v, want 1", got)
		}
		if got := h.metric("coopr_gslb_proxy_ejections_total", nil); got != 1 {
			t.Errorf("ejections %v, want 1 (a timeout ejects at once)", got)
		}
	})
}

// TestHungEndpointGET: before any latency is known, a GET to a hung
// endpoint moves on after retry.try_timeout.
func TestHungEndpointGET(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedgeEnv(t, "proxy: {response_header_timeout: 600ms, retry: {try_timeout: 150ms}}\n")
		h.west.setDelay(-1)
		if rec, took := h.serve(http.MethodGet); rec.Code != 200 || rec.Body.String() != "east" || took != 150*time.Millisecond {
			t.Fatalf("GET: %d %q after %v, want east after the 150ms try timeout", rec.Code, rec.Body.String(), took)
		}
	})
}

// TestAdaptiveTryTimeout: until latencyMinSamples answers are known the
// configured try_timeout applies; after that a GET the endpoint does not
// answer moves to the next DC after the adaptive timeout (here the floor).
func TestAdaptiveTryTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedgeEnv(t, "proxy: {retry: {try_timeout: 3s, hedge: false}}\n")
		for i := 0; i < latencyMinSamples-1; i++ {
			h.serve(http.MethodGet)
		}
		h.west.setDelay(-1)
		if rec, took := h.serve(http.MethodGet); rec.Body.String() != "east" || took != 3*time.Second {
			t.Fatalf("GET with %d answers known: %q after %v, want east after try_timeout 3s", latencyMinSamples-1, rec.Body.String(), took)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		h := newHedgeEnv(t, "proxy: {retry: {try_timeout: 3s, hedge: false}}\n")
		h.warm(t)
		h.west.setDelay(-1)
		if rec, took := h.serve(http.MethodGet); rec.Body.String() != "east" || took != 150*time.Millisecond {
			t.Fatalf("GET after warm-up: %q after %v, want east after the 150ms floor", rec.Body.String(), took)
		}
	})
}

// TestRetryWaitsTryTimeout: only the first try gives up early. The DC a
// request fails over to takes the failed DC's load, so its try waits
// retry.try_timeout: a 300 ms answer from it is taken even though its
// learned latency would time it out after the floor.
func TestRetryWaitsTryTimeout(t *testing.T) {
	for _, hedge := range []string{"true", "false"} {
		t.Run("hedge="+hedge, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHedgeEnv(t, "proxy: {retry: {try_timeout: 2s, hedge: "+hedge+"}}\n")
				h.warm(t)
				// east looks fast, from earlier answers, but answers in 300ms now.
				h.proxy.viewMu.Lock()
				for _, x := range h.proxy.store.endpoints {
					if strings.HasPrefix(x.addr, "10.0.2.") {
						for i := 0; i < latencyRing; i++ {
							x.lat.observe(time.Millisecond)
						}
					}
				}
				h.proxy.viewMu.Unlock()
				h.west.setDelay(-1)
				h.east.setDelay(300 * time.Millisecond)
				if rec, took := h.serve(http.MethodGet); rec.Body.String() != "east" || took != 450*time.Millisecond {
					t.Fatalf("GET: %q after %v, want east's slow answer after 150ms + 300ms", rec.Body.String(), took)
				}
				// Only west's timeout ejected an endpoint.
				if got := h.metric("coopr_gslb_proxy_ejections_total", nil); got != 1 {
					t.Fatalf("ejections %v, want 1: the retry in east must not time out early", got)
				}
			})
		})
	}
}
