package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleConns returns how many idle upstream connections the proxy keeps to addr.
func (e *env) idleConns(addr string) int {
	e.proxy.viewMu.Lock()
	defer e.proxy.viewMu.Unlock()
	n := 0
	for _, ep := range e.proxy.store.endpoints {
		if ep.addr == addr {
			ep.conns.mu.Lock()
			n += len(ep.conns.idle)
			ep.conns.mu.Unlock()
		}
	}
	return n
}

// TestLeanKeepAlive: ordinary requests go over the lean client, which keeps
// one connection per endpoint for sequential requests, and Close closes it.
func TestLeanKeepAlive(t *testing.T) {
	var peers sync.Map
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		peers.Store(r.RemoteAddr, true)
		ok("west")(w, r)
	})
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	for i := range 20 {
		m := "GET"
		if i%2 == 1 {
			m = "POST"
		}
		if code, body, _ := e.call(m, "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil); code != 200 || body != "west" {
			t.Fatalf("%s: got %d %q", m, code, body)
		}
	}
	n := 0
	peers.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d upstream connections for 20 sequential requests, want 1", n)
	}
	if n := e.idleConns(west.addr()); n != 1 {
		t.Fatalf("%d idle upstream connections, want 1", n)
	}
	e.proxy.Close()
	if n := e.idleConns(west.addr()); n != 0 {
		t.Fatalf("%d idle upstream connections after Close, want 0", n)
	}
}

// TestLeanStaleConnection: a backend that closed the pooled connections
// while they were idle costs neither a retry nor a passive failure, for a
// request that may be replayed and one that may not.
func TestLeanStaleConnection(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC+"proxy: {outlier: {consecutive_failures: 1}}\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	for _, m := range []string{"GET", "POST", "GET", "DELETE", "HEAD"} {
		if code, _, _ := e.call(m, "api.coopr.test", "/v2/clusters", nil, nil); code != 200 {
			t.Fatalf("warm-up %s: got %d", m, code)
		}
		eventually(t, "a pooled connection", func() bool { return e.idleConns(west.addr()) == 1 })
		west.CloseClientConnections()
		time.Sleep(20 * time.Millisecond) // let the FIN arrive
		hits := west.hits.Load()
		if code, body, _ := e.call(m, "api.coopr.test", "/v2/clusters", nil, nil); code != 200 || (m != "HEAD" && body != "west") {
			t.Fatalf("%s on a stale connection: got %d %q", m, code, body)
		}
		if n := west.hits.Load() - hits; n != 1 {
			t.Fatalf("%s reached the backend %d times", m, n)
		}
	}
	if got := e.metric("coopr_gslb_proxy_retries_total", nil); got != 0 {
		t.Errorf("%v retries counted", got)
	}
	if r := e.reports(); len(r) != 0 {
		t.Errorf("passive reports %+v", r)
	}
}

// TestLeanUnreadAnswerClosesConnection: an answer the client stops reading
// closes its upstream connection rather than draining it or pooling it.
func TestLeanUnreadAnswerClosesConnection(t *testing.T) {
	release := make(chan struct{})
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/endless" {
			w.Header().Set("Content-Type", "text/event-stream")
			for {
				if _, err := io.WriteString(w, "data: x\n\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-release:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
		_, _ = io.WriteString(w, "west")
	})
	defer close(release)
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	res := e.do("GET", "api.coopr.test", "/endless", nil, nil)
	buf := make([]byte, 9)
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "data: x\n\n" {
		t.Fatalf("stream: %q %v", buf, err)
	}
	res.Body.Close()
	// The proxy notices the client left, and the backend that its client did.
	eventually(t, "the stream's end", func() bool { return e.idleConns(west.addr()) == 0 })
	if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "west" {
		t.Fatalf("after the stream: %d %q", code, body)
	}
}
