package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// testKey signs affinity cookies in tests.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// backend is a loopback endpoint that counts what reaches it.
type backend struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// newBackend starts an endpoint that stamps its name on every answer.
func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

// ok answers 200 with the backend's name.
func ok(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	}
}

// status answers code with body.
func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// closedAddr returns a loopback address where nothing listens, so dials are refused.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fakeClock is an adjustable clock for drain deadlines and ejections.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type passiveReport struct {
	dc, service, endpoint string
	failure               bool
	reason                string
}

// env is a proxy in front of loopback backends, routed by a real engine.
type env struct {
	t       testing.TB
	cfg     *config.Config
	engine  *routing.Engine
	proxy   *Proxy
	front   *httptest.Server
	reg     *prometheus.Registry
	clock   *fakeClock
	log     *syncBuffer
	mu      sync.Mutex
	passive []passiveReport
}

type envOptions struct {
	tls     bool
	down    []string // endpoints to mark down instead of up
	noLog   bool
	noFront bool
	// rand is the engine's random source; nil means always 0, so that
	// weighted picks are deterministic.
	rand func(n uint64) uint64
	// dial replaces the proxy's dialer (Options.Dial).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// newEnv loads yaml, in which {{name}} stands for the address of addrs[name],
// marks every endpoint up and starts the proxy behind a loopback server.
func newEnv(t testing.TB, yaml string, addrs map[string]string, o envOptions) *env {
	t.Helper()
	for name, a := range addrs {
		yaml = strings.ReplaceAll(yaml, "{{"+name+"}}", a)
	}
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e := &env{t: t, cfg: cfg, clock: newFakeClock(), reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	rnd := o.rand
	if rnd == nil {
		rnd = func(uint64) uint64 { return 0 }
	}
	e.engine = routing.New(cfg, routing.Options{Now: e.clock.Now, Rand: rnd})
	down := map[string]bool{}
	for _, d := range o.down {
		down[d] = true
	}
	for _, dc := range cfg.Datacenters {
		for svc, ds := range dc.Services {
			for _, ep := range ds.Endpoints {
				e.engine.UpdateEndpoint(routing.EndpointUpdate{DC: dc.Name, Service: svc, Endpoint: ep, Up: !down[ep]})
			}
		}
	}
	opts := Options{
		Snapshot:    e.engine.Snapshot,
		Registerer:  e.reg,
		AffinityKey: testKey,
		Now:         e.clock.Now,
		Dial:        o.dial,
		ReportPassive: func(dc, service, endpoint string, failure bool, reason string) {
			e.mu.Lock()
			e.passive = append(e.passive, passiveReport{dc, service, endpoint, failure, reason})
			e.mu.Unlock()
		},
	}
	if !o.noLog {
		opts.Logger = slog.New(slog.NewJSONHandler(e.log, nil))
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = p
	t.Cleanup(func() { p.Close() })
	if !o.noFront {
		if o.tls {
			e.front = httptest.NewTLSServer(p)
		} else {
			e.front = httptest.NewServer(p)
		}
		t.Cleanup(e.front.Close)
	}
	return e
}

func (e *env) setUp(dc, service, endpoint string, up bool) {
	e.engine.UpdateEndpoint(routing.EndpointUpdate{DC: dc, Service: service, Endpoint: endpoint, Up: up, Reason: "test"})
}

func (e *env) reports() []passiveReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]passiveReport(nil), e.passive...)
}

// do sends a request for host through the proxy.
func (e *env) do(method, host, path string, body io.Reader, hdr http.Header) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := e.front.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return res
}

// get sends a request and returns its status and body.
func (e *env) call(method, host, path string, body io.Reader, hdr http.Header) (int, string, http.Header) {
	e.t.Helper()
	res := e.do(method, host, path, body, hdr)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("reading body: %v", err)
	}
	return res.StatusCode, string(b), res.Header
}

// accessLog returns the access-log records written so far.
func (e *env) accessLog() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("access log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// metric returns the value of the counter or the histogram count with the
// given name and labels (a subset), summed over matching series.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// twoDC is a configuration with an api service in west (priority 1) and
// east (priority 2), one endpoint each, {{w}} and {{e}}.
const twoDC = `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    priority: 1
    services:
      api: {endpoints: ["{{w}}"]}
  - name: east
    priority: 2
    services:
      api: {endpoints: ["{{e}}"]}
services:
  api:
    hostnames: [api.coopr.test]
`

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dialTimeout(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
