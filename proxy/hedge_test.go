package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run the proxy and its backends over an in-memory network
// inside a synctest bubble: the clock is fake, so timeouts fire at exactly
// their bound and the elapsed times below are exact, not bounds that a
// loaded machine could break.

// memNet is an in-memory network of named listeners, connected by
// net.Pipe. A listener that is not accepting (blackhole) leaves dials
// pending until their timeout, as dropped SYNs do.
type memNet struct {
	mu sync.Mutex
	ls map[string]*memListener
}

type memListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *memListener) Addr() net.Addr { return memAddr(l.addr) }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

func (n *memNet) listen(addr string) *memListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ls == nil {
		n.ls = map[string]*memListener{}
	}
	l := &memListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	n.ls[addr] = l
	return l
}

func (n *memNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.ls[addr]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, refused
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// memBackend is an endpoint on a memNet whose answers take delay; a
// negative delay hangs until the proxy gives up on the request.
type memBackend struct {
	name      string
	delay     atomic.Int64
	hits      atomic.Int64
	cancelled atomic.Int64 // requests the proxy gave up on
}

func (b *memBackend) setDelay(d time.Duration) { b.delay.Store(int64(d)) }

func startMemBackend(t *testing.T, n *memNet, addr, name string) *memBackend {
	b := &memBackend{name: name}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		d := time.Duration(b.delay.Load())
		wait := make(<-chan time.Time)
		if d >= 0 {
			wait = time.After(d)
		}
		select {
		case <-wait:
		case <-r.Context().Done():
			b.cancelled.Add(1)
			return
		}
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	})}
	l := n.listen(addr)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return b
}

// hedgeEnv is the two-DC proxy over a memNet, west first.
type hedgeEnv struct {
	*env
	west, east *memBackend
}

func newHedgeEnv(t *testing.T, extra string) *hedgeEnv {
	var n memNet
	h := &hedgeEnv{
		west: startMemBackend(t, &n, "10.0.1.1:80", "west"),
		east: startMemBackend(t, &n, "10.0.2.1:80", "east"),
	}
	h.env = newEnv(t, twoDC+extra, map[string]string{"w": "10.0.1.1:80", "e": "10.0.2.1:80"}, envOptions{noFront: true, noLog: true, dial: n.dial})
	return h
}

// serve sends one request through the proxy and returns its answer and how
// long it took on the bubble's clock.
func (h *hedgeEnv) serve(method string) (*httptest.ResponseRecorder, time.Duration) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"name":"c1"}`)
	}
	req := httptest.NewRequest(method, "http://api.coopr.test/v2/clusters", body)
	rec := httptest.NewRecorder()
	start := time.Now()
	h.proxy.ServeHTTP(rec, req)
	return rec, time.Since(start)
}

// warm teaches the proxy west's latency (instant): its adaptive timeout
// becomes the floor.
func (h *hedgeEnv) warm(t *testing.T) {
	for i := 0; i < latencyMinSamples; i++ {
		if rec, _ := h.serve(http.MethodGet); rec.Code != 200 || rec.Body.String() != "west" {
			t.Fatalf("warm-up %d: %d %q", i, rec.Code, rec.Body.String())
		}
	}
}

func TestHedge(t *testing.T) {
	const floor = 150 * time.Millisecond
	tests := []struct {
		name       string
		extra      string
		method     string
		west, east time.Duration // answer delays; -1 hangs
		wantCode   int
		wantBody   string
		wantTook   time.Duration
		wantEast   int64 // requests east saw
		wantHedges map[string]float64
		wantEject  float64
	}{
		{
			name: "a slow first DC still wins the race", method: "GET",
			west: 200 * time.Millisecond, east: 100 * time.Millisecond,
			wantCode: 200, wantBody: "west", wantTook: 200 * time.Millisecond, wantEast: 1,
			wantHedges: map[string]float64{"started": 1, "first_won": 1, "backup_won": 0},
		},
		{
			name: "a hung first DC loses to the backup and is ejected", method: "GET",
			west: -1, east: 10 * time.Millisecond,
			wantCode: 200, wantBody: "east", wantTook: floor + 10*time.Millisecond, wantEast: 1,
			wantHedges: map[string]float64{"started": 1, "first_won": 0, "backup_won": 1}, wantEject: 1,
		},
		{
			name: "without hedging the slow first try is abandoned", extra: "proxy: {retry: {hedge: false}}\n", method: "GET",
			west: 200 * time.Millisecond, east: 100 * time.Millisecond,
			wantCode: 200, wantBody: "east", wantTook: floor + 100*time.Millisecond, wantEast: 1,
			wantHedges: map[string]float64{"started": 0}, wantEject: 1,
		},
		{
			name: "a POST is never duplicated: 504 after try_timeout", extra: "proxy: {retry: {try_timeout: 2s}}\n", method: "POST",
			west: -1, east: 0,
			wantCode: 504, wantTook: 2 * time.Second, wantEast: 0,
			wantHedges: map[string]float64{"started": 0}, wantEject: 1,
		},
		{
			name: "one attempt: nothing to race, the try waits", extra: "proxy: {retry: {attempts: 1}}\n", method: "GET",
			west: 400 * time.Millisecond, east: 0,
			wantCode: 200, wantBody: "west", wantTook: 400 * time.Millisecond, wantEast: 0,
			wantHedges: map[string]float64{"started": 0},
		},
		{
			name: "a configured floor and multiplier", extra: "proxy: {retry: {timeout_floor: 50ms, timeout_multiplier: 2}}\n", method: "GET",
			west: -1, east: 10 * time.Millisecond,
			wantCode: 200, wantBody: "east", wantTook: 60 * time.Millisecond, wantEast: 1,
			wantHedges: map[string]float64{"started": 1, "backup_won": 1}, wantEject: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHedgeEnv(t, tt.extra)
				h.warm(t)
				h.west.setDelay(tt.west)
				h.east.setDelay(tt.east)
				rec, took := h.serve(tt.method)
				if rec.Code != tt.wantCode || (tt.wantBody != "" && rec.Body.String() != tt.wantBody) {
					t.Fatalf("answer %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
				}
				if took != tt.wantTook {
					t.Errorf("took %v, want %v", took, tt.wantTook)
				}
				if got := h.east.hits.Load(); got != tt.wantEast {
					t.Errorf("east saw %d requests, want %d", got, tt.wantEast)
				}
				for outcome, want := range tt.wantHedges {
					if got := h.metric("coopr_gslb_proxy_hedges_total", map[string]string{"outcome": outcome}); got != want {
						t.Errorf("hedges_total{outcome=%q} = %v, want %v", outcome, got, want)
					}
				}
				if got := h.metric("coopr_gslb_proxy_ejections_total", nil); got != tt.wantEject {
					t.Errorf("ejections %v, want %v", got, tt.wantEject)
				}
				// The loser of a race was cancelled and joined: nothing of
				// the request is left running.
				synctest.Wait()
				if tt.wantHedges["started"] == 1 {
					loser := h.east
					if tt.wantBody == "east" {
						loser = h.west
					}
					if loser.cancelled.Load() != 1 {
						t.Errorf("the race's loser (%s) was not cancelled", loser.name)
					}
				}
			})
		})
	}
}

// TestHedgeEjectedDCGetsNoTraffic: after a hung DC lost a race it is
// ejected, and the next GET goes straight to the other DC, without waiting.
func TestHedgeEjectedDCGetsNoTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHedgeEnv(t, "")
		h.warm(t)
		h.west.setDelay(-1)
		if rec, took := h.serve(http.MethodGet); rec.Body.String() != "east" || took != 150*time.Millisecond {
			t.Fatalf("first GET in the hang: %q after %v", rec.Body.String(), took)
		}
		westHits := h.west.hits.Load()
		for i := 0; i < 5; i++ {
			rec, took := h.serve(http.MethodGet)
			if rec.Body.String() != "east" || took != 0 {
				t.Fatalf("GET %d after the ejection: %q after %v, want east at once", i, rec.Body.String(), took)
			}
		}
		if got := h.west.hits.Load(); got != westHits {
			t.Fatalf("west got %d more requests while ejected", got-westHits)
		}
	})
}

// TestHedgeBackupFailsFirstStillAnswers: when the backup fails (its DC
// answers 503 at once), the race goes on and the slow first try's answer is
// returned.
func TestHedgeBackupFailsFirstStillAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n memNet
		west := startMemBackend(t, &n, "10.0.1.1:80", "west")
		// east refuses: no listener at its address.
		e := newEnv(t, twoDC, map[string]string{"w": "10.0.1.1:80", "e": "10.0.2.1:80"}, envOptions{noFront: true, noLog: true, dial: n.dial})
		h := &hedgeEnv{env: e, west: west}
		h.warm(t)
		west.setDelay(time.Second)
		rec, took := h.serve(http.MethodGet)
		if rec.Code != 200 || rec.Body.String() != "west" || took != time.Second {
			t.Fatalf("got %d %q after %v, want west's answer after 1s", rec.Code, rec.Body.String(), took)
		}
	})
}
