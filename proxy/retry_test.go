package proxy

import (
	"bytes"

	"github.com/coopr-gslb/coopr-gslb/config"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// reset reads the request, then breaks the connection with a TCP reset: the
// request reached the backend, which may have acted on it.
func reset(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func TestRetryNeverWrittenAnyMethod(t *testing.T) {
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": closedAddr(t), "e": east.addr()}, envOptions{})
	for _, m := range []string{"POST", "DELETE", "PUT", "GET"} {
		code, body, hdr := e.call(m, "api.coopr.test", "/v2/clusters", strings.NewReader(`{"name":"c1"}`), nil)
		if code != 200 || body != "east" || hdr.Get("X-Coopr-GSLB-DC") != "east" {
			t.Fatalf("%s: got %d %q dc %q", m, code, body, hdr.Get("X-Coopr-GSLB-DC"))
		}
	}
	if got := e.metric("coopr_gslb_proxy_retries_total", map[string]string{"reason": "connect"}); got < 1 {
		t.Errorf("connect retries counted %v", got)
	}
	if got := e.metric("coopr_gslb_proxy_upstream_errors_total", map[string]string{"kind": "connect"}); got < 1 {
		t.Errorf("connect errors counted %v", got)
	}
}

// TestRetryLargeStreamingBodyNotRead: a body too large to buffer streams, and
// may still move on when the connection failed before any of it was read.
func TestRetryLargeStreamingBodyNotRead(t *testing.T) {
	var got atomic.Int64
	east := newBackend(t, "east", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
	})
	e := newEnv(t, twoDC+"proxy: {max_buffered_body: 1024}\n", map[string]string{"w": closedAddr(t), "e": east.addr()}, envOptions{})
	body := bytes.Repeat([]byte("x"), 64<<10)
	// An unknown length exercises the read-ahead past the limit.
	code, _, _ := e.call("POST", "api.coopr.test", "/v2/clusters", io.MultiReader(bytes.NewReader(body)), nil)
	if code != 200 || got.Load() != int64(len(body)) {
		t.Fatalf("got %d, backend read %d bytes", code, got.Load())
	}
}

func TestNoReplayAfterReset(t *testing.T) {
	west := newBackend(t, "west", reset)
	east := newBackend(t, "east", ok("east"))
	// No ejection here: it would send later requests to east directly.
	e := newEnv(t, twoDC+"proxy: {outlier: {consecutive_failures: 100}}\n", map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})

	code, body, _ := e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader(`{"name":"once"}`), nil)
	if code != http.StatusBadGateway || !strings.Contains(body, "may have been processed") {
		t.Fatalf("POST after reset: got %d %q, want a clear 502", code, body)
	}
	if n := east.hits.Load(); n != 0 {
		t.Fatalf("the POST that reached west was replayed on east (%d hits)", n)
	}
	for _, path := range []string{"/v2/clusters/00000001/abort", "/v2/clusters/00000001"} {
		for _, m := range []string{"POST", "DELETE"} {
			if code, _, _ := e.call(m, "api.coopr.test", path, strings.NewReader("{}"), nil); code != http.StatusBadGateway {
				t.Fatalf("%s %s: got %d", m, path, code)
			}
		}
	}
	if n := east.hits.Load(); n != 0 {
		t.Fatalf("job-starting requests were replayed (%d hits on east)", n)
	}

	// A safe request is retried on the next DC.
	code, body, _ = e.call("GET", "api.coopr.test", "/v2/clusters", nil, nil)
	if code != 200 || body != "east" {
		t.Fatalf("GET after reset: got %d %q", code, body)
	}
	// So is a request carrying an Idempotency-Key.
	code, body, _ = e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), http.Header{"Idempotency-Key": {"k1"}})
	if code != 200 || body != "east" {
		t.Fatalf("POST with Idempotency-Key: got %d %q", code, body)
	}
}

func TestRetryOnStatusReturnsLastAnswer(t *testing.T) {
	west := newBackend(t, "west", status(503, "west busy"))
	east := newBackend(t, "east", status(503, "east busy"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})

	code, body, hdr := e.call("GET", "api.coopr.test", "/v2/clusters", nil, nil)
	if code != 503 || body != "east busy" || hdr.Get("X-Coopr-GSLB-DC") != "east" {
		t.Fatalf("got %d %q dc %q, want east's own 503", code, body, hdr.Get("X-Coopr-GSLB-DC"))
	}
	if west.hits.Load() != 1 || east.hits.Load() != 1 {
		t.Fatalf("hits west %d east %d", west.hits.Load(), east.hits.Load())
	}

	// A POST is not replayed after an answer.
	code, body, _ = e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil)
	if code != 503 || body != "west busy" || east.hits.Load() != 1 {
		t.Fatalf("POST: got %d %q, east hits %d", code, body, east.hits.Load())
	}

	// When the retry cannot even connect, the kept answer is returned.
	e2 := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	code, body, hdr = e2.call("GET", "api.coopr.test", "/", nil, nil)
	if code != 503 || body != "west busy" || hdr.Get("X-Coopr-GSLB-DC") != "west" {
		t.Fatalf("got %d %q dc %q, want west's 503", code, body, hdr.Get("X-Coopr-GSLB-DC"))
	}
}

func TestRetryAttemptsLimit(t *testing.T) {
	var eps []string
	var bs []*backend
	for i := 0; i < 4; i++ {
		b := newBackend(t, "w", status(502, "bad"))
		bs = append(bs, b)
		eps = append(eps, `"`+b.addr()+`"`)
	}
	yaml := strings.Replace(twoDC, `["{{w}}"]`, "["+strings.Join(eps, ",")+"]", 1) + "proxy: {retry: {attempts: 2}}\n"
	e := newEnv(t, yaml, map[string]string{"e": closedAddr(t)}, envOptions{})
	if code, _, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 502 {
		t.Fatalf("got %d", code)
	}
	var total int64
	for _, b := range bs {
		total += b.hits.Load()
	}
	if total != 2 {
		t.Fatalf("%d tries, want retry.attempts = 2", total)
	}
}

func TestIdempotentDeclared(t *testing.T) {
	west := newBackend(t, "west", status(503, "busy"))
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC+"    idempotent: [\"PUT /v2/providers/\"]\n", map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
	if code, body, _ := e.call("PUT", "api.coopr.test", "/v2/providers/aws", strings.NewReader("{}"), nil); code != 200 || body != "east" {
		t.Fatalf("declared idempotent PUT: got %d %q", code, body)
	}
	if code, _, _ := e.call("PUT", "api.coopr.test", "/v2/clusters/00000001/config", strings.NewReader("{}"), nil); code != 503 {
		t.Fatalf("undeclared PUT: got %d, want west's 503", code)
	}
	if east.hits.Load() != 1 {
		t.Fatalf("east hits %d, want 1", east.hits.Load())
	}
}

// TestRetryBudget: a failover to another DC is always allowed, whatever the
// budget, so the budget never fails a request a healthy DC could serve.
func TestRetryBudget(t *testing.T) {
	west := newBackend(t, "west", status(503, "west busy"))
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC+"proxy: {retry: {budget_percent: 1, min_retries: 1}, outlier: {consecutive_failures: 100}}\n", map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
	for i := 0; i < 15; i++ {
		if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "east" {
			t.Fatalf("request %d: %d %q, want east's answer", i, code, body)
		}
	}
	if got := e.metric("coopr_gslb_proxy_retries_total", map[string]string{"reason": "status_503"}); got != 15 {
		t.Fatalf("retries %v, want 15", got)
	}
}

// TestRetryBudgetSameDC: retries within one DC are capped at a share of
// recent requests plus a floor of min_retries per second; past the cap a
// failing request gets its own answer instead of a retry.
func TestRetryBudgetSameDC(t *testing.T) {
	w1 := newBackend(t, "w1", status(503, "w1 busy"))
	w2 := newBackend(t, "w2", ok("w2"))
	const oneDC = `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    services:
      api: {endpoints: ["{{w1}}", "{{w2}}"]}
services:
  api:
    hostnames: [api.coopr.test]
proxy: {retry: {budget_percent: 1, min_retries: 1}, outlier: {consecutive_failures: 1000}}
`
	e := newEnv(t, oneDC, map[string]string{"w1": w1.addr(), "w2": w2.addr()}, envOptions{})
	// The floor is 1 per second over the 10 s window, and the requests' 1%
	// lets an 11th retry fit: 10 < 10 + 40/100.
	refused := 0
	for i := 0; i < 40; i++ {
		code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil)
		switch {
		case code == 200 && body == "w2":
		case code == 503 && body == "w1 busy":
			refused++
		default:
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if got := e.metric("coopr_gslb_proxy_retries_total", map[string]string{"reason": "status_503"}); got != 11 {
		t.Fatalf("retries %v, want 11", got)
	}
	if refused == 0 || int64(refused)+11 != w1.hits.Load() {
		t.Fatalf("%d answered w1's 503 of %d tries of w1; want the tries past the budget's 11", refused, w1.hits.Load())
	}
}

func TestRetryBudgetShare(t *testing.T) {
	var b retryBudget
	r := config.Retry{BudgetPercent: 20, MinRetries: 0}
	for i := 0; i < 100; i++ {
		b.request(1000)
	}
	n := 0
	for b.withdraw(1005, r) {
		n++
	}
	if n != 20 {
		t.Fatalf("%d retries allowed for 100 requests at 20%%, want 20", n)
	}
	// Ten seconds later the old requests no longer count.
	if b.withdraw(1010, r) {
		t.Fatal("a retry was allowed on requests older than the window")
	}
}

func TestOutlierEjection(t *testing.T) {
	var w1Fails atomic.Bool
	w1Fails.Store(true)
	w1 := newBackend(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		if w1Fails.Load() {
			w.WriteHeader(500)
			return
		}
		_, _ = io.WriteString(w, "w1")
	})
	w2 := newBackend(t, "w2", ok("w2"))
	yaml := strings.Replace(twoDC, `["{{w}}"]`, `["{{w1}}", "{{w2}}"]`, 1) +
		"proxy: {outlier: {consecutive_failures: 2, ejection: 10s}, retry: {on_status: []}}\n"
	e := newEnv(t, yaml, map[string]string{"w1": w1.addr(), "w2": w2.addr(), "e": closedAddr(t)}, envOptions{})

	for i := 0; i < 4; i++ {
		e.call("GET", "api.coopr.test", "/", nil, nil)
	}
	if w1.hits.Load() != 2 || w2.hits.Load() != 2 {
		t.Fatalf("round robin: w1 %d w2 %d", w1.hits.Load(), w2.hits.Load())
	}
	reps := e.reports()
	if len(reps) != 1 || !reps[0].failure || reps[0].dc != "west" || reps[0].service != "api" || reps[0].endpoint != w1.addr() {
		t.Fatalf("passive reports %+v", reps)
	}
	for i := 0; i < 6; i++ {
		if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "w2" {
			t.Fatalf("ejected endpoint served: %d %q", code, body)
		}
	}
	if w1.hits.Load() != 2 {
		t.Fatalf("ejected w1 still got requests (%d)", w1.hits.Load())
	}
	if got := e.metric("coopr_gslb_proxy_ejections_total", nil); got != 1 {
		t.Fatalf("ejections %v", got)
	}
	// After the ejection w1 is tried again, and a success is reported once.
	w1Fails.Store(false)
	e.clock.Advance(11 * time.Second)
	for i := 0; i < 4; i++ {
		e.call("GET", "api.coopr.test", "/", nil, nil)
	}
	if w1.hits.Load() != 4 {
		t.Fatalf("w1 hits %d after its ejection ended, want 4", w1.hits.Load())
	}
	reps = e.reports()
	if len(reps) != 2 || reps[1].failure || reps[1].endpoint != w1.addr() {
		t.Fatalf("passive reports %+v", reps)
	}
}

// TestEjectedDCSkipped: once a refusing DC's endpoint is ejected, requests
// stop paying a failed dial for it; if everything is ejected, it is tried anyway.
func TestEjectedDCSkipped(t *testing.T) {
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": closedAddr(t), "e": east.addr()}, envOptions{})
	for i := 0; i < 10; i++ {
		if code, _, _ := e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if got := e.metric("coopr_gslb_proxy_upstream_errors_total", map[string]string{"kind": "connect"}); got != 3 {
		t.Fatalf("%v failed dials, want 3 (then ejected)", got)
	}
	if r := e.reports(); len(r) != 1 || r[0].dc != "west" {
		t.Fatalf("reports %+v", r)
	}

	e2 := newEnv(t, twoDC+"proxy: {outlier: {consecutive_failures: 1}}\n", map[string]string{"w": closedAddr(t), "e": closedAddr(t)}, envOptions{})
	e2.call("GET", "api.coopr.test", "/", nil, nil)
	e2.call("GET", "api.coopr.test", "/", nil, nil)
	if got := e2.metric("coopr_gslb_proxy_upstream_errors_total", map[string]string{"kind": "connect"}); got != 4 {
		t.Fatalf("%v failed dials, want 4: ejected endpoints are still tried when nothing else is left", got)
	}
}

func TestLeastOutstanding(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "slow")
	})
	fast := newBackend(t, "fast", ok("fast"))
	yaml := strings.Replace(twoDC, `["{{w}}"]`, `["{{a}}", "{{b}}"]`, 1) + "    load_balancing: least_outstanding\n"
	e := newEnv(t, yaml, map[string]string{"a": slow.addr(), "b": fast.addr(), "e": closedAddr(t)}, envOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.call("GET", "api.coopr.test", "/hold", nil, nil)
	}()
	<-arrived
	for i := 0; i < 5; i++ {
		if _, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); body != "fast" {
			t.Fatalf("request %d went to the busy endpoint", i)
		}
	}
	close(release)
	<-done
}
