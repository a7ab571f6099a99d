package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

const twoDCs = `
datacenters:
  - name: east
    priority: 1
    client_networks: ["10.1.0.0/16"]
    services:
      api: {endpoints: ["127.0.0.1:1001", "127.0.0.1:1002"], addresses: ["192.0.2.10"]}
  - name: west
    priority: 2
    client_networks: ["10.2.0.0/16"]
    services:
      api: {endpoints: ["127.0.0.1:2001"], addresses: ["192.0.2.20"]}
services:
  api: {hostnames: ["api.coopr.example.com"], policy: nearest}
listen: {dns: ""}
`

func newTestServer(t *testing.T, readNeedsToken bool) (*httptest.Server, *routing.Engine) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(twoDCs))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	for _, ep := range []struct{ dc, addr string }{{"east", "127.0.0.1:1001"}, {"east", "127.0.0.1:1002"}, {"west", "127.0.0.1:2001"}} {
		e.UpdateEndpoint(routing.EndpointUpdate{DC: ep.dc, Service: "api", Endpoint: ep.addr, Up: true})
	}
	tokFile := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokFile, []byte("alice tok-a\n# comment\n\nbob tok-b\n"), 0o600)
	tokens, err := LoadTokens(tokFile, "")
	if err != nil {
		t.Fatal(err)
	}
	reloadErr := errors.New("config.yaml:3: services.api.policy: unknown policy")
	srv := httptest.NewServer(New(Options{
		Snapshot: e.Snapshot, Events: e.Events, Drain: e.DrainScoped, Undrain: e.UndrainScoped,
		Reload: func() error { return reloadErr }, Tokens: tokens, ReadRequiresToken: readNeedsToken,
	}))
	t.Cleanup(srv.Close)
	return srv, e
}

func do(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

func TestDrainAPI(t *testing.T) {
	srv, e := newTestServer(t, false)
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
		errPart                         string
		drained                         bool
	}{
		{"no token", "POST", "/api/v1/datacenters/east/drain", "", `{"reason":"x"}`, 401, "Authorization: Bearer", false},
		{"wrong token", "POST", "/api/v1/datacenters/east/drain", "nope", `{}`, 401, "wrong token", false},
		{"unknown dc", "POST", "/api/v1/datacenters/mars/drain", "tok-a", `{}`, 404, `no datacenter "mars"`, false},
		{"bad mode", "POST", "/api/v1/datacenters/east/drain", "tok-a", `{"mode":"gentle"}`, 400, `want "soft" or "hard"`, false},
		{"bad deadline", "POST", "/api/v1/datacenters/east/drain", "tok-a", `{"mode":"soft","deadline":"soon"}`, 400, "deadline", false},
		{"deadline on hard", "POST", "/api/v1/datacenters/east/drain", "tok-a", `{"mode":"hard","deadline":"1m"}`, 400, "only to mode", false},
		{"unknown field", "POST", "/api/v1/datacenters/east/drain", "tok-a", `{"reasn":"x"}`, 400, "body", false},
		{"soft drain", "POST", "/api/v1/datacenters/east/drain", "tok-b", `{"reason":"kernel","mode":"soft","deadline":"10m"}`, 200, "", true},
		{"undrain needs token", "DELETE", "/api/v1/datacenters/east/drain", "", ``, 401, "", true},
		{"undrain", "DELETE", "/api/v1/datacenters/east/drain", "tok-a", ``, 200, "", false},
		{"reload error is actionable", "POST", "/api/v1/reload", "tok-a", ``, 422, "previous configuration keeps serving", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.token, tc.body)
			if code != tc.code {
				t.Errorf("status %d, want %d (%v)", code, tc.code, body)
			}
			if tc.errPart != "" && !strings.Contains(body["error"].(string), tc.errPart) {
				t.Errorf("error %q lacks %q", body["error"], tc.errPart)
			}
			st := e.Snapshot().Service("api").DC("east")
			if (st.State == routing.StateDrained) != tc.drained {
				t.Errorf("east state %s, drained want %v", st.State, tc.drained)
			}
		})
	}
	var drainedBy string
	for _, ev := range e.Events(time.Time{}) {
		if ev.Kind == routing.EventDrained {
			drainedBy = ev.By + " " + ev.Mode + " " + ev.Reason
		}
	}
	if drainedBy != "bob soft kernel" {
		t.Errorf("drain event records %q, want who, mode and why", drainedBy)
	}
}

func TestReadsAndPage(t *testing.T) {
	srv, e := newTestServer(t, false)
	code, st := do(t, "GET", srv.URL+"/api/v1/status", "", "")
	if code != 200 || len(st["services"].([]any)) != 1 {
		t.Fatalf("status: %d %v", code, st)
	}
	code, ex := do(t, "GET", srv.URL+"/api/v1/explain?name=API.coopr.example.com.&client=10.2.3.4", "", "")
	if code != 200 || ex["chosen"] != "west" || !strings.Contains(strings.Join(toStrings(ex["steps"]), "\n"), "west's client network 10.2.0.0/16") {
		t.Errorf("explain: %d %v", code, ex)
	}
	// A request's pin reaches the decision explain renders (this service
	// has no affinity, so the pin is ignored, and explain says why).
	code, ex = do(t, "GET", srv.URL+"/api/v1/explain?name=api.coopr.example.com&client=10.2.3.4&pin=east&method=GET&path=/v2/clusters", "", "")
	if code != 200 || ex["chosen"] != "west" || !strings.Contains(strings.Join(toStrings(ex["steps"]), "\n"), "affinity pin east ignored: the service has no affinity") {
		t.Errorf("explain with pin=east: %d chosen %v, steps %v", code, ex["chosen"], ex["steps"])
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/explain?name=api.coopr.example.com&path=v2", "", ""); code != 400 {
		t.Errorf("explain with a relative path: %d, want 400", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/explain?name=nope.example.com", "", ""); code != 404 {
		t.Errorf("explain of an unknown name: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/events?since=yesterday", "", ""); code != 400 {
		t.Errorf("bad since: %d", code)
	}
	e.Drain("west", routing.Drain{Reason: "maint"})
	code, evs := do(t, "GET", srv.URL+"/api/v1/events?since=1m", "", "")
	if code != 200 || len(evs["events"].([]any)) == 0 {
		t.Errorf("events: %d %v", code, evs)
	}

	page := func(token string) string {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	anon := page("")
	if !strings.Contains(anon, "east") || !strings.Contains(anon, "drained") || strings.Contains(anon, `id="authorized"`) {
		t.Errorf("anonymous page: drain buttons shown or state missing")
	}
	if strings.Contains(anon, "http://") || strings.Contains(anon, "https://") {
		t.Errorf("the page must not load external assets")
	}
	if !strings.Contains(page("tok-a"), `id="authorized"`) {
		t.Errorf("drain buttons missing for a viewer with the token")
	}
}

func TestReadsCanNeedToken(t *testing.T) {
	srv, _ := newTestServer(t, true)
	if code, _ := do(t, "GET", srv.URL+"/api/v1/status", "", ""); code != 401 {
		t.Errorf("status without token: %d, want 401", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/status", "tok-a", ""); code != 200 {
		t.Errorf("status with token: %d", code)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
