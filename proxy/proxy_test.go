package proxy

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func TestHostRouting(t *testing.T) {
	api := newBackend(t, "api", ok("api"))
	ui := newBackend(t, "ui", ok("ui"))
	wild := newBackend(t, "wild", ok("wild"))
	e := newEnv(t, `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    services:
      api: {endpoints: ["{{api}}"]}
      ui: {endpoints: ["{{ui}}"]}
      tenants: {endpoints: ["{{wild}}"]}
services:
  api:
    hostnames: [coopr.test]
    path_prefixes: [/v2/]
  ui:
    hostnames: [coopr.test]
  tenants:
    hostnames: ["*.tenants.coopr.test"]
`, map[string]string{"api": api.addr(), "ui": ui.addr(), "wild": wild.addr()}, envOptions{})

	for _, tc := range []struct {
		host, path string
		code       int
		want       string
	}{
		{"coopr.test", "/v2/clusters", 200, "api"},
		{"coopr.test", "/", 200, "ui"},
		{"coopr.test", "/index.html", 200, "ui"},
		{"COOPR.test:8080", "/v2/x", 200, "api"},
		{"coopr.test.", "/", 200, "ui"},
		{"a.tenants.coopr.test", "/", 200, "wild"},
		{"b.a.tenants.coopr.test:443", "/", 200, "wild"},
		{"tenants.coopr.test", "/", http.StatusMisdirectedRequest, ""},
		{"evil.example", "/", http.StatusMisdirectedRequest, ""},
		{"127.0.0.1", "/", http.StatusMisdirectedRequest, ""},
	} {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			code, body, hdr := e.call("GET", tc.host, tc.path, nil, nil)
			if code != tc.code {
				t.Fatalf("status %d, want %d (body %q)", code, tc.code, body)
			}
			if tc.code == 200 && body != tc.want {
				t.Fatalf("served by %q, want %q", body, tc.want)
			}
			if tc.code != 200 {
				if hdr.Get("X-Backend") != "" || len(body) > 100 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
					t.Fatalf("421 answer looks proxied or verbose: %q %v", body, hdr)
				}
			}
		})
	}
	if n := api.hits.Load() + ui.hits.Load() + wild.hits.Load(); n != 7 {
		t.Errorf("backends saw %d requests, want 7: an unknown host must never be proxied", n)
	}
	if got := e.metric("coopr_gslb_proxy_requests_total", map[string]string{"service": "-", "code": "421"}); got != 3 {
		t.Errorf("421s counted %v, want 3", got)
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		client       string
		trusted      bool
	}{
		{"direct", "203.0.113.9:5555", nil, "203.0.113.9", false},
		{"untrusted peer spoofs", "203.0.113.9:5555", []string{"198.51.100.1"}, "203.0.113.9", false},
		{"trusted peer", "10.1.2.3:5555", []string{"198.51.100.1"}, "198.51.100.1", true},
		{"right-most untrusted", "10.1.2.3:5555", []string{"1.1.1.1, 198.51.100.1, 10.9.9.9"}, "198.51.100.1", true},
		{"several headers", "10.1.2.3:5555", []string{"1.1.1.1", "198.51.100.2, 10.0.0.7"}, "198.51.100.2", true},
		{"all trusted", "10.1.2.3:5555", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1", true},
		{"garbage stops", "10.1.2.3:5555", []string{"1.1.1.1, bogus, 10.0.0.2"}, "10.0.0.2", true},
		{"ports and brackets", "[::1]:5555", []string{"[2001:db8::1]:443"}, "2001:db8::1", true},
		{"no header", "10.1.2.3:5555", nil, "10.1.2.3", true},
		{"mapped v4", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			if tc.xff != nil {
				r.Header["X-Forwarded-For"] = tc.xff
			}
			_, c, tr := clientAddr(r, trusted)
			if c.String() != tc.client || tr != tc.trusted {
				t.Fatalf("client %s trusted %v, want %s %v", c, tr, tc.client, tc.trusted)
			}
		})
	}
}

// TestSpoofedXFF checks end to end that an untrusted peer cannot choose its
// DC (policy nearest) or its X-Forwarded-For, and a trusted one can.
func TestSpoofedXFF(t *testing.T) {
	echo := func(name string) *backend {
		return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, name+" "+strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
		})
	}
	w, east := echo("west"), echo("east")
	yaml := `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    priority: 1
    client_networks: [198.51.100.0/24]
    services: {api: {endpoints: ["{{w}}"]}}
  - name: east
    priority: 2
    client_networks: [203.0.113.0/24]
    services: {api: {endpoints: ["{{e}}"]}}
services:
  api: {hostnames: [api.coopr.test], policy: nearest}
proxy:
  trusted_proxies: [TRUSTED]
`
	addrs := map[string]string{"w": w.addr(), "e": east.addr()}
	spoof := http.Header{"X-Forwarded-For": {"203.0.113.50"}}

	untrusted := newEnv(t, strings.Replace(yaml, "TRUSTED", "192.0.2.0/24", 1), addrs, envOptions{})
	if _, body, _ := untrusted.call("GET", "api.coopr.test", "/", nil, spoof); body != "west 127.0.0.1" {
		t.Errorf("untrusted peer: got %q, want west with X-Forwarded-For 127.0.0.1 only", body)
	}
	trusted := newEnv(t, strings.Replace(yaml, "TRUSTED", "127.0.0.0/8", 1), addrs, envOptions{})
	if _, body, _ := trusted.call("GET", "api.coopr.test", "/", nil, spoof); body != "east 203.0.113.50, 127.0.0.1" {
		t.Errorf("trusted peer: got %q, want east with the chain extended", body)
	}
}

func TestHeaderPassThrough(t *testing.T) {
	var got *http.Request
	b := newBackend(t, "w", func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		w.Header().Set("Connection", "X-Drop")
		w.Header().Set("X-Drop", "hop")
		w.Header().Set("X-End", "end")
		w.Header().Add("Set-Cookie", "app=1")
		_, _ = io.WriteString(w, "ok")
	})
	e := newEnv(t, twoDC, map[string]string{"w": b.addr(), "e": closedAddr(t)}, envOptions{})
	hdr := http.Header{
		"Coopr-Userid":    {"admin"},
		"Coopr-Tenantid":  {"superadmin"},
		"Coopr-Apikey":    {"secret"},
		"X-Custom":        {"a", "b"},
		"Connection":      {"X-Hop"},
		"X-Hop":           {"should go"},
		"Keep-Alive":      {"timeout=5"},
		"Accept-Encoding": {"gzip"},
	}
	code, body, rh := e.call("GET", "api.coopr.test", "/v2/clusters?x=1", nil, hdr)
	if code != 200 || body != "ok" {
		t.Fatalf("got %d %q", code, body)
	}
	for k, want := range map[string]string{
		"Coopr-Userid": "admin", "Coopr-Tenantid": "superadmin", "Coopr-Apikey": "secret",
		"Accept-Encoding": "gzip", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "api.coopr.test",
		"X-Forwarded-For": "127.0.0.1",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("backend saw %s=%q, want %q", k, v, want)
		}
	}
	if v := got.Header.Values("X-Custom"); len(v) != 2 {
		t.Errorf("X-Custom = %q, want both values", v)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive"} {
		if v := got.Header.Get(k); v != "" {
			t.Errorf("hop-by-hop %s reached the backend: %q", k, v)
		}
	}
	if got.Host != "api.coopr.test" || got.URL.RawQuery != "x=1" || got.URL.Path != "/v2/clusters" {
		t.Errorf("backend saw host %q path %q query %q", got.Host, got.URL.Path, got.URL.RawQuery)
	}
	if rh.Get("X-Coopr-GSLB-DC") != "west" || rh.Get("X-End") != "end" || rh.Get("X-Drop") != "" || rh.Get("Set-Cookie") != "app=1" {
		t.Errorf("response headers: %v", rh)
	}

	// upstream_host replaces Host; dc_header "-" turns the header off.
	e2 := newEnv(t, twoDC+"    upstream_host: internal.api:55054\nproxy: {dc_header: \"-\"}\n",
		map[string]string{"w": b.addr(), "e": closedAddr(t)}, envOptions{})
	_, _, rh = e2.call("GET", "api.coopr.test", "/", nil, nil)
	if got.Host != "internal.api:55054" {
		t.Errorf("upstream_host: backend saw Host %q", got.Host)
	}
	if _, ok := rh["X-Coopr-Gslb-Dc"]; ok {
		t.Errorf("dc_header \"-\" still sent %v", rh)
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	w := newBackend(t, "w", status(503, "west busy"))
	east := newBackend(t, "e", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": w.addr(), "e": east.addr()}, envOptions{})
	if code, body, _ := e.call("GET", "api.coopr.test", "/v2/x", nil, nil); code != 200 || body != "east" {
		t.Fatalf("got %d %q", code, body)
	}
	logs := e.accessLog()
	if len(logs) != 1 {
		t.Fatalf("%d access-log records, want 1", len(logs))
	}
	l := logs[0]
	for k, want := range map[string]any{
		"msg": "access", "service": "api", "dc": "east", "endpoint": east.addr(), "status": 200.0,
		"retries": 1.0, "retry_reasons": "status_503", "method": "GET", "path": "/v2/x",
	} {
		if l[k] != want {
			t.Errorf("log %s = %v, want %v", k, l[k], want)
		}
	}
	if _, ok := l["duration_ms"].(float64); !ok {
		t.Errorf("log has no duration: %v", l)
	}
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"coopr_gslb_proxy_requests_total", map[string]string{"service": "api", "dc": "east", "code": "200"}, 1},
		{"coopr_gslb_proxy_request_duration_seconds", map[string]string{"service": "api", "dc": "east"}, 1},
		{"coopr_gslb_proxy_retries_total", map[string]string{"service": "api", "reason": "status_503"}, 1},
	} {
		if got := e.metric(m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}

	// access_log: false silences the log.
	e2 := newEnv(t, twoDC+"proxy: {access_log: false}\n", map[string]string{"w": east.addr(), "e": east.addr()}, envOptions{})
	e2.call("GET", "api.coopr.test", "/", nil, nil)
	if s := e2.log.String(); s != "" {
		t.Errorf("access_log false still logged %q", s)
	}
}

func TestNothingServes(t *testing.T) {
	t.Run("refused everywhere", func(t *testing.T) {
		e := newEnv(t, twoDC, map[string]string{"w": closedAddr(t), "e": closedAddr(t)}, envOptions{})
		code, body, hdr := e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader("{}"), nil)
		if code != 503 || hdr.Get("Retry-After") == "" || len(body) > 120 || strings.Contains(body, "goroutine") {
			t.Fatalf("got %d %q %v", code, body, hdr)
		}
	})
	t.Run("when_all_down refuse", func(t *testing.T) {
		b := newBackend(t, "w", ok("w"))
		other := closedAddr(t)
		e := newEnv(t, twoDC+"    when_all_down: refuse\n", map[string]string{"w": b.addr(), "e": other},
			envOptions{down: []string{b.addr(), other}})
		code, _, hdr := e.call("GET", "api.coopr.test", "/", nil, nil)
		if code != 503 || hdr.Get("Retry-After") == "" || b.hits.Load() != 0 {
			t.Fatalf("got %d %v, %d hits", code, hdr, b.hits.Load())
		}
	})
}

func TestConfigValidation(t *testing.T) {
	base := twoDC
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"bad cidr", "proxy: {trusted_proxies: [nonsense]}\n", "proxy.trusted_proxies[0]"},
		{"attempts", "proxy: {retry: {attempts: 50}}\n", "proxy.retry.attempts"},
		{"budget", "proxy: {retry: {budget_percent: 500}}\n", "proxy.retry.budget_percent"},
		{"lb", "    load_balancing: random\n", "services.api.load_balancing"},
		{"idempotent", "    idempotent: [\"put /x\"]\n", "services.api.idempotent[0]"},
		{"idempotent path", "    idempotent: [\"PUT x\"]\n", "services.api.idempotent[0]"},
		{"dc header", "proxy: {dc_header: \"bad header\"}\n", "proxy.dc_header"},
		{"tls without https", "tls: {redirect_http: true}\n", "tls.redirect_http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := strings.NewReplacer("{{w}}", "127.0.0.1:1", "{{e}}", "127.0.0.1:2").Replace(base + tc.extra)
			_, _, err := config.Parse([]byte(yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	yaml := strings.NewReplacer("{{w}}", "127.0.0.1:1", "{{e}}", "127.0.0.1:2").Replace(base +
		"    idempotent: [\"PUT /v2/providers/\", \"* /v2/plugins/\"]\n    load_balancing: least_outstanding\nproxy: {trusted_proxies: [10.0.0.0/8, 192.0.2.1]}\n")
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Proxy.TrustedNets) != 2 || cfg.Proxy.TrustedNets[1].String() != "192.0.2.1/32" {
		t.Errorf("trusted nets %v", cfg.Proxy.TrustedNets)
	}
	if cfg.Services["api"].Retry.TryTimeout.D() != 10*time.Second/3 {
		t.Errorf("try_timeout default %v", cfg.Services["api"].Retry.TryTimeout)
	}
	// An explicit proxy.retry.try_timeout reaches services that override
	// other retry fields; the default follows each service's own deadline.
	yaml = strings.NewReplacer("{{w}}", "127.0.0.1:1", "{{e}}", "127.0.0.1:2").Replace(base +
		"    retry: {attempts: 4}\nproxy: {retry: {try_timeout: 2s}}\n")
	if cfg, _, err = config.Parse([]byte(yaml)); err != nil {
		t.Fatal(err)
	}
	if r := cfg.Services["api"].Retry; r.TryTimeout.D() != 2*time.Second || r.Attempts != 4 {
		t.Errorf("service retry %+v", r)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{})
	b := newBackend(t, "w", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	e := newEnv(t, twoDC, map[string]string{"w": b.addr(), "e": closedAddr(t)}, envOptions{noFront: true})
	srv := e.proxy.Server("127.0.0.1:0")
	if srv.ReadHeaderTimeout != 10*time.Second || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("server settings %v %v", srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req.Host = "api.coopr.test"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- result{code: res.StatusCode, body: string(b)}
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() { shut <- e.proxy.Shutdown(context.Background(), srv) }()
	// The listener stops accepting while the request is still in flight.
	eventually(t, "listener closed", func() bool {
		c, err := dialTimeout(ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestLoadAffinityKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadAffinityKey("", dir)
	if err != nil || len(k1) < 32 {
		t.Fatalf("generate: %q %v", k1, err)
	}
	k2, err := LoadAffinityKey("", dir)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("key not persisted: %q %q %v", k1, k2, err)
	}
	if k, err := LoadAffinityKey("", ""); err != nil || k != nil {
		t.Fatalf("no state dir: %q %v", k, err)
	}
	if _, err := LoadAffinityKey(dir+"/missing", ""); err == nil {
		t.Fatal("missing key file accepted")
	}
}

// TestPrepareBuildsViewOffTheRequestPath: Prepare of the current snapshot
// builds the view a request then uses as it is; a snapshot already replaced
// is not built.
func TestPrepareBuildsViewOffTheRequestPath(t *testing.T) {
	api := newBackend(t, "api", ok("api"))
	e := newEnv(t, `
listen: {http: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    services:
      api: {endpoints: ["{{api}}"]}
services:
  api:
    hostnames: [coopr.test]
`, map[string]string{"api": api.addr()}, envOptions{})
	old := e.engine.Snapshot()
	e.setUp("west", "api", api.addr(), false)
	e.setUp("west", "api", api.addr(), true)
	cur := e.engine.Snapshot()
	if cur == old {
		t.Fatal("the engine published no new snapshot")
	}
	e.proxy.Prepare(old)
	if v := e.proxy.view.Load(); v != nil && v.snap == old {
		t.Fatal("Prepare built a view of a snapshot already replaced")
	}
	e.proxy.Prepare(cur)
	v := e.proxy.view.Load()
	if v == nil || v.snap != cur {
		t.Fatal("Prepare did not build the current snapshot's view")
	}
	if code, _, _ := e.call(http.MethodGet, "coopr.test", "/", nil, nil); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	if e.proxy.view.Load() != v {
		t.Error("the request rebuilt the view Prepare had built")
	}
}
