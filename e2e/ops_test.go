package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

const testToken = "s3cret-token"

// opsConfig is the two-DC config with a state dir and a token file.
func opsConfig(t *testing.T, fleet *simulator.Fleet, admin, httpAddr, dnsAddr, extra string) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	os.WriteFile(tokenFile, []byte("# operators\nalice "+testToken+"\n"), 0o600)
	return twoDCConfig(fleet, httpAddr, dnsAddr, admin, fmt.Sprintf("admin:\n  state_dir: %q\n  token_file: %q\n%s", filepath.Join(dir, "state"), tokenFile, extra))
}

func cli(t *testing.T, admin string, args ...string) (int, string, string) {
	t.Helper()
	return runBinary(t, 60*time.Second, append(args, "-admin", admin)...)
}

// TestDrainPersistsAcrossRestart drains east with the CLI, restarts the
// process, and finds east still drained, then undrains it.
func TestDrainPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)

	code, out, errOut := cli(t, admin, "drain", "east", "-reason", "kernel upgrade", "-token", testToken)
	if code != 0 {
		t.Fatalf("drain: %d %s %s", code, out, errOut)
	}
	st := g.status()
	if st.dcState("api", "east") != "drained" || st.Services[0].ProxyTarget != "west" {
		t.Fatalf("after drain: east %s, target %s", st.dcState("api", "east"), st.Services[0].ProxyTarget)
	}

	g.stop()
	g2 := startGSLBFile(t, g.cfgPath, admin)
	if s := g2.status().dcState("api", "east"); s != "drained" {
		t.Fatalf("after restart east is %q, want drained", s)
	}
	var evs struct {
		Events []map[string]any `json:"events"`
	}
	getJSON(t, "http://"+admin+"/api/v1/status", &map[string]any{})
	code, out, _ = cli(t, admin, "status")
	if code != 0 || !strings.Contains(out, "drained: kernel upgrade") {
		t.Errorf("status after restart: %d\n%s", code, out)
	}

	if code, out, errOut := runBinaryEnv(t, time.Minute, []string{"COOPR_GSLB_ADMIN_TOKEN=" + testToken}, "undrain", "east", "-admin", admin); code != 0 {
		t.Fatalf("undrain with the token from the environment: %d %s %s", code, out, errOut)
	}
	if s := g2.status().dcState("api", "east"); s != "up" {
		t.Errorf("after undrain east is %q", s)
	}
	getJSON(t, "http://"+admin+"/api/v1/events?since=1h", &evs)
	var kinds []string
	for _, ev := range evs.Events {
		if ev["kind"] == "undrained" && ev["by"] == "alice" {
			kinds = append(kinds, "undrained")
		}
	}
	if len(kinds) != 1 {
		t.Errorf("events lack an undrained by alice (the env token is alice's): %v", evs.Events)
	}
}

func TestMutationsNeedToken(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)
	for _, tc := range []struct{ name, auth string }{{"none", ""}, {"wrong", "Bearer nope"}, {"not bearer", "Basic " + testToken}} {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/v1/datacenters/east/drain", `{"reason":"x"}`},
			{"DELETE", "/api/v1/datacenters/east/drain", ""},
			{"POST", "/api/v1/reload", ""},
		} {
			r, _ := http.NewRequest(req.method, "http://"+admin+req.path, strings.NewReader(req.body))
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e map[string]string
			if resp.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e["error"] == "" {
				t.Errorf("%s %s with %s token: %d %s, want 401 with a JSON error", req.method, req.path, tc.name, resp.StatusCode, body)
			}
		}
	}
	if s := g.status().dcState("api", "east"); s != "up" {
		t.Errorf("east is %q after refused mutations", s)
	}
	code, _, errOut := cli(t, admin, "drain", "east", "-reason", "x", "-token", "wrong")
	if code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("CLI with a wrong token: %d %s", code, errOut)
	}
	code, _, errOut = cli(t, admin, "drain", "mars", "-token", testToken)
	if code == 0 || !strings.Contains(errOut, `no datacenter "mars"`) {
		t.Errorf("draining an unknown DC: %d %s", code, errOut)
	}
}

func TestBrokenReloadKeepsServing(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)
	good, _ := os.ReadFile(g.cfgPath)
	os.WriteFile(g.cfgPath, []byte(strings.Replace(string(good), "policy: failover", "policy: sideways", 1)), 0o644)

	code, _, errOut := cli(t, admin, "reload", "-token", testToken)
	if code == 0 || !strings.Contains(errOut, "sideways") {
		t.Errorf("reload of a broken file: %d %s", code, errOut)
	}
	var st struct {
		Reload struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"reload"`
		Services []struct {
			Policy string `json:"policy"`
		} `json:"services"`
	}
	getJSON(t, "http://"+admin+"/api/v1/status", &st)
	if st.Reload.OK || !strings.Contains(st.Reload.Error, "services.api.policy") || st.Services[0].Policy != "failover" {
		t.Errorf("status after a failed reload: %+v", st)
	}
	if s := g.status().dcState("api", "east"); s != "up" {
		t.Errorf("east %q after failed reload", s)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "coopr_gslb_config_last_reload_successful 0") {
		t.Errorf("metrics do not show the failed reload")
	}

	// A good file reloads, also through SIGHUP, keeping health (no flap).
	os.WriteFile(g.cfgPath, []byte(strings.Replace(string(good), "policy: failover", "policy: weighted", 1)), 0o644)
	g.cmd.Process.Signal(sighup)
	eventually(t, 10*time.Second, "SIGHUP reload applies", func() bool {
		getJSON(t, "http://"+admin+"/api/v1/status", &st)
		return st.Reload.OK && st.Services[0].Policy == "weighted"
	})
	for _, ev := range g.stateEvents() {
		if ev["kind"] == "dc_down" {
			t.Errorf("reload flapped a DC: %v", ev)
		}
	}
}

func TestWebhooksOnFailAndRecover(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusBadGateway) // fails its first two calls
			return
		}
		var p map[string]any
		json.NewDecoder(r.Body).Decode(&p)
		if p["service"] == "api" {
			mu.Lock()
			got = append(got, p["event"].(string)+":"+p["dc"].(string))
			mu.Unlock()
		}
	}))
	defer hook.Close()
	fleet := startFleet(t)
	admin := freePort(t)
	extra := fmt.Sprintf("notify:\n  - url: %q\n    events: [dc_down, dc_up]\n", hook.URL)
	startGSLB(t, opsConfig(t, fleet, admin, "", "", extra), admin)

	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	eventually(t, 20*time.Second, "dc_down delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 1
	})
	fleet.Datacenter("east").SetFault(simulator.Fault{})
	eventually(t, 20*time.Second, "dc_up delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "dc_down:east,dc_up:east" {
		t.Errorf("webhook got %v, want dc_down then dc_up for east", got)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	cfg := strings.Replace(opsConfig(t, fleet, admin, "", "", ""), "policy: failover", "policy: nearest", 1)
	startGSLB(t, cfg, admin)
	code, out, errOut := cli(t, admin, "explain", "-name", "api.coopr.example.com", "-client", "10.2.3.4")
	if code != 0 {
		t.Fatalf("explain: %d %s", code, errOut)
	}
	for _, want := range []string{"policy: nearest", "10.2.3.4 is in west's client network 10.2.0.0/16", "proxy sends:  west -> east", "DNS answers:  192.0.2.20"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	fleet.Datacenter("west").SetFault(simulator.Fault{Mode: simulator.Refuse})
	eventually(t, 10*time.Second, "west down", func() bool {
		_, out, _ := cli(t, admin, "explain", "-name", "api.coopr.example.com", "-client", "10.2.3.4")
		return strings.Contains(out, "west: down") && strings.Contains(out, "passed over: 2/2 endpoints failing (connection refused)") && strings.Contains(out, "proxy sends:  east")
	})
}
