package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// proxyConfig is the two-DC config with the proxy on, short timeouts so a
// hung DC is given up on quickly, and an affinity cookie on the UI.
func proxyConfig(t *testing.T, fleet *simulator.Fleet, admin, httpAddr, extra string) string {
	t.Helper()
	cfg := opsConfig(t, fleet, admin, httpAddr, "", "proxy:\n  response_header_timeout: 1s\n  dial_timeout: 500ms\n  access_log: false\n"+extra)
	cfg = strings.Replace(cfg, "    check: {type: http, path: /status}\n", "    check: {type: http, path: /status}\n    affinity: cookie\n", 1)
	return cfg
}

// loadResult counts what clients saw during a load run.
type loadResult struct {
	gets, getFails, posts, postOK, postErr atomic.Int64
	mu                                     sync.Mutex
	failures                               []string
	postIDs                                []string
}

func (r *loadResult) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 20 {
		r.failures = append(r.failures, fmt.Sprintf(format, args...))
	}
}

// runLoad sends GETs and POSTs at a fixed rate (open loop) for d, calling
// midway after half of it.
func runLoad(t *testing.T, proxy string, d time.Duration, midway func()) *loadResult {
	t.Helper()
	res := &loadResult{}
	client := &http.Client{Timeout: 15 * time.Second}
	var wg sync.WaitGroup
	var seq atomic.Int64
	tick := time.NewTicker(5 * time.Millisecond) // 200 requests/s
	defer tick.Stop()
	start := time.Now()
	mid := false
	for time.Since(start) < d {
		<-tick.C
		if !mid && time.Since(start) > d/2 {
			mid = true
			midway()
		}
		n := seq.Add(1)
		wg.Go(func() {
			if n%4 == 0 {
				id := fmt.Sprintf("post-%d-%d", time.Now().UnixNano(), n)
				req, _ := http.NewRequest("POST", "http://"+proxy+"/v2/clusters", strings.NewReader(`{"name":"c"}`))
				req.Host = "api.coopr.example.com"
				req.Header.Set("X-Request-Id", id)
				res.posts.Add(1)
				resp, err := client.Do(req)
				res.mu.Lock()
				res.postIDs = append(res.postIDs, id)
				res.mu.Unlock()
				if err != nil {
					res.postErr.Add(1)
					res.fail("POST %s: %v", id, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode < 300:
					res.postOK.Add(1)
				case len(bytes.TrimSpace(body)) > 0:
					res.postErr.Add(1) // a clear error: status and a message
				default:
					res.postErr.Add(1)
					res.fail("POST %s: %d with an empty body", id, resp.StatusCode)
				}
				return
			}
			req, _ := http.NewRequest("GET", "http://"+proxy+"/v2/clusters", nil)
			req.Host = "api.coopr.example.com"
			res.gets.Add(1)
			resp, err := client.Do(req)
			if err != nil {
				res.getFails.Add(1)
				res.fail("GET: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				res.getFails.Add(1)
				res.fail("GET: %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	return res
}

// checkNoDuplicatePOSTs asserts that no POST id reached two backends.
func checkNoDuplicatePOSTs(t *testing.T, fleet *simulator.Fleet) {
	t.Helper()
	seen := map[string]string{}
	for _, dc := range fleet.Datacenters() {
		for _, s := range dc.Servers() {
			for _, id := range s.RequestIDs() {
				if other, dup := seen[id]; dup {
					t.Errorf("POST %s reached two backends: %s and %s", id, other, s.Addr())
				}
				seen[id] = s.Addr()
			}
		}
	}
}

// TestProxyFailoverUnderLoad kills east mid-run (connections refused), then
// in a second run makes it hang: no GET fails, every POST gets an answer, and
// no POST reaches two backends. Then east comes back and takes traffic.
func TestProxyFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	g := startGSLB(t, proxyConfig(t, fleet, admin, httpAddr, ""), admin)
	east := fleet.Datacenter("east")

	for _, mode := range []simulator.FaultMode{simulator.Refuse, simulator.Hang} {
		t.Run(mode.String(), func(t *testing.T) {
			res := runLoad(t, httpAddr, 4*time.Second, func() { east.SetFault(simulator.Fault{Mode: mode}) })
			t.Logf("%s: %d GETs (%d failed), %d POSTs (%d ok, %d answered with an error)", mode, res.gets.Load(), res.getFails.Load(), res.posts.Load(), res.postOK.Load(), res.postErr.Load())
			if res.getFails.Load() != 0 {
				t.Errorf("%d GETs failed: %v", res.getFails.Load(), res.failures)
			}
			if n := res.postOK.Load() + res.postErr.Load(); n != res.posts.Load() {
				t.Errorf("only %d of %d POSTs were answered", n, res.posts.Load())
			}
			for _, f := range res.failures {
				if strings.HasPrefix(f, "POST") {
					t.Errorf("POST without a clear answer: %s", f)
				}
			}
			checkNoDuplicatePOSTs(t, fleet)

			eventually(t, 10*time.Second, "east drained", func() bool { return g.status().dcState("api", "east") == "down" })
			east.SetFault(simulator.Fault{})
			eventually(t, 10*time.Second, "east back after rise probes", func() bool { return g.status().dcState("api", "east") == "up" })
			before := east.Servers()[0].Requests() + east.Servers()[1].Requests()
			for range 10 {
				req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
				req.Host = "api.coopr.example.com"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if dc := resp.Header.Get("X-Coopr-GSLB-DC"); dc != "east" {
					t.Errorf("after recovery a GET was served by %q, want east", dc)
				}
			}
			if after := east.Servers()[0].Requests() + east.Servers()[1].Requests(); after < before+10 {
				t.Errorf("east took %d of 10 requests after recovery", after-before)
			}
		})
	}
}

// browser keeps the affinity cookie as a browser would.
type browser struct{ cookie string }

func uiClient(t *testing.T) *browser { return &browser{} }

func uiGet(t *testing.T, b *browser, proxy string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
	req.Host = "coopr.example.com"
	if b.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "coopr_gslb_dc", Value: b.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("UI GET: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "coopr_gslb_dc" {
			b.cookie = c.Value
		}
	}
	return resp.Header.Get("X-Coopr-GSLB-DC")
}

// TestAffinity pins a browser to west and moves it when west dies or is
// drained, hard at once and soft at the deadline; a forged cookie is ignored.
func TestAffinity(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	g := startGSLB(t, proxyConfig(t, fleet, admin, httpAddr, ""), admin)
	east, west := fleet.Datacenter("east"), fleet.Datacenter("west")
	cookieOf := func(b *browser) string { return b.cookie }

	// Pin to west: while east is out, the first response pins the session there.
	east.SetFault(simulator.Fault{Mode: simulator.Refuse})
	eventually(t, 10*time.Second, "east down", func() bool { return g.status().dcState("ui", "east") == "down" })
	pinned := uiClient(t)
	if dc := uiGet(t, pinned, httpAddr); dc != "west" {
		t.Fatalf("first UI request served by %q, want west", dc)
	}
	pinWest := cookieOf(pinned)
	if pinWest == "" {
		t.Fatal("no affinity cookie set")
	}
	east.SetFault(simulator.Fault{})
	eventually(t, 10*time.Second, "east up", func() bool { return g.status().dcState("ui", "east") == "up" })
	for range 5 {
		if dc := uiGet(t, pinned, httpAddr); dc != "west" {
			t.Fatalf("pinned session served by %q, want west", dc)
		}
	}
	// A fresh client goes to east (policy), and a forged cookie is ignored.
	fresh := uiClient(t)
	if dc := uiGet(t, fresh, httpAddr); dc != "east" {
		t.Errorf("fresh session served by %q, want east", dc)
	}
	forged := uiClient(t)
	forged.cookie = "west." + strings.Repeat("A", 43) // right shape, wrong signature
	if dc := uiGet(t, forged, httpAddr); dc != "east" {
		t.Errorf("forged cookie was believed: served by %q", dc)
	}

	// Killing west moves the pinned client at once, and the cookie follows.
	west.SetFault(simulator.Fault{Mode: simulator.Refuse})
	if dc := uiGet(t, pinned, httpAddr); dc != "east" {
		t.Errorf("after killing west the pinned session was served by %q", dc)
	}
	if c := cookieOf(pinned); c == pinWest || c == "" {
		t.Errorf("cookie not rewritten after moving: %q", c)
	}
	west.SetFault(simulator.Fault{})
	eventually(t, 10*time.Second, "west up", func() bool { return g.status().dcState("ui", "west") == "up" })

	// Pin a new browser to west again (drain east briefly), then drain west hard.
	pinToWest := func() *browser {
		if code, _, e := cli(t, admin, "drain", "east", "-token", testToken); code != 0 {
			t.Fatal(e)
		}
		b := uiClient(t)
		if dc := uiGet(t, b, httpAddr); dc != "west" {
			t.Fatalf("pinning to west: served by %q", dc)
		}
		if code, _, e := cli(t, admin, "undrain", "east", "-token", testToken); code != 0 {
			t.Fatal(e)
		}
		return b
	}
	b := pinToWest()
	if code, _, e := cli(t, admin, "drain", "west", "-mode", "hard", "-token", testToken); code != 0 {
		t.Fatal(e)
	}
	if dc := uiGet(t, b, httpAddr); dc != "east" {
		t.Errorf("hard drain: pinned session served by %q, want east at once", dc)
	}
	cli(t, admin, "undrain", "west", "-token", testToken)

	// A soft drain keeps the pinned session until the deadline, then moves it.
	b = pinToWest()
	if code, _, e := cli(t, admin, "drain", "west", "-mode", "soft", "-deadline", "5s", "-token", testToken); code != 0 {
		t.Fatal(e)
	}
	drainedAt := time.Now()
	if dc := uiGet(t, b, httpAddr); dc != "west" {
		t.Errorf("soft drain: pinned session moved before the deadline to %q", dc)
	}
	if dc := uiGet(t, uiClient(t), httpAddr); dc != "east" {
		t.Errorf("soft drain: a new session went to %q, want east", dc)
	}
	time.Sleep(time.Until(drainedAt.Add(5500 * time.Millisecond)))
	if dc := uiGet(t, b, httpAddr); dc != "east" {
		t.Errorf("soft drain: after the deadline the pinned session is still on %q", dc)
	}
}

// TestFaithfulProxy checks WebSocket, SSE, big bodies, header pass-through,
// unknown hosts and X-Forwarded-For trust.
func TestFaithfulProxy(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	startGSLB(t, proxyConfig(t, fleet, admin, httpAddr, ""), admin)
	base := "http://" + httpAddr

	t.Run("websocket echo", func(t *testing.T) {
		ctx := t.Context()
		c, _, err := websocket.Dial(ctx, "ws://"+httpAddr+"/ws", &websocket.DialOptions{Host: "api.coopr.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != msg {
				t.Fatalf("echo: %v, %d bytes", err, len(got))
			}
		}
	})
	t.Run("sse flushes each event", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/sse?n=3", nil)
		req.Host = "api.coopr.example.com"
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 256)
		n, err := resp.Body.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), "tick 1") {
			t.Fatalf("first event: %q %v", buf[:n], err)
		}
		if first := time.Since(start); first > 2*time.Second {
			t.Errorf("first event took %s: not flushed", first)
		}
	})
	t.Run("10 MiB upload and download", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
		sum := sha256.Sum256(body)
		req, _ := http.NewRequest("POST", base+"/upload", bytes.NewReader(body))
		req.Host = "api.coopr.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var up map[string]any
		json.NewDecoder(resp.Body).Decode(&up)
		resp.Body.Close()
		if resp.StatusCode != 200 || fmt.Sprint(up["sha256"]) != hex.EncodeToString(sum[:]) {
			t.Errorf("upload: %d %v", resp.StatusCode, up)
		}
		req, _ = http.NewRequest("GET", base+"/download?bytes=10485760", nil)
		req.Host = "api.coopr.example.com"
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, simulator.DownloadBody(10<<20)) {
			t.Errorf("download: %d bytes, content differs", len(got))
		}
	})
	t.Run("headers pass through", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/echo", nil)
		req.Host = "api.coopr.example.com"
		req.Header.Set("Coopr-UserID", "admin")
		req.Header.Set("Coopr-TenantID", "superadmin")
		req.Header.Set("Coopr-ApiKey", "k3y")
		req.Header.Set("X-Forwarded-For", "10.2.3.4") // spoofed by an untrusted peer
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var echo struct {
			Host    string              `json:"host"`
			Headers map[string][]string `json:"headers"`
		}
		json.NewDecoder(resp.Body).Decode(&echo)
		resp.Body.Close()
		h := http.Header(echo.Headers)
		for k, v := range map[string]string{"Coopr-Userid": "admin", "Coopr-Tenantid": "superadmin", "Coopr-Apikey": "k3y", "X-Forwarded-Host": "api.coopr.example.com", "X-Forwarded-Proto": "http"} {
			if h.Get(k) != v {
				t.Errorf("%s = %q, want %q (all: %v)", k, h.Get(k), v, h)
			}
		}
		if echo.Host != "api.coopr.example.com" {
			t.Errorf("Host %q not kept", echo.Host)
		}
		if xff := h.Get("X-Forwarded-For"); !strings.HasSuffix(xff, "127.0.0.1") {
			t.Errorf("X-Forwarded-For %q should end with the real peer", xff)
		}
		if resp.Header.Get("X-Coopr-GSLB-DC") == "" {
			t.Errorf("no X-Coopr-GSLB-DC on the response")
		}
	})
	t.Run("unknown host is not proxied", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/v2/clusters", nil)
		req.Host = "evil.example.org"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 421 && resp.StatusCode != 404 {
			t.Errorf("unknown host: %d, want 421 or 404", resp.StatusCode)
		}
		if resp.Header.Get("X-Coopr-DC") != "" {
			t.Errorf("unknown host reached a backend")
		}
	})
}

// TestXFFTrust routes by client network: a spoofed X-Forwarded-For from an
// untrusted peer is not believed; from a trusted proxy it is.
func TestXFFTrust(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"untrusted peer", "", "east"},
		{"trusted proxy", "  trusted_proxies: [\"127.0.0.0/8\"]\n", "west"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fleet := startFleet(t)
			admin, httpAddr := freePort(t), freePort(t)
			cfg := strings.Replace(proxyConfig(t, fleet, admin, httpAddr, tc.extra), "policy: failover", "policy: nearest", 1)
			startGSLB(t, cfg, admin)
			req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
			req.Host = "api.coopr.example.com"
			req.Header.Set("X-Forwarded-For", "10.2.3.4")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if dc := resp.Header.Get("X-Coopr-GSLB-DC"); dc != tc.want {
				t.Errorf("X-Forwarded-For 10.2.3.4 (west's network) from %s: served by %q, want %q", tc.name, dc, tc.want)
			}
		})
	}
}
