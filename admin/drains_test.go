package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestScopedDrainAPI drives the service and endpoint drains through both
// forms of the API, step by step, and checks the engine after each step.
func TestScopedDrainAPI(t *testing.T) {
	srv, e := newTestServer(t, false)
	ep := "/api/v1/datacenters/east/services/api/endpoints/" + url.PathEscape("127.0.0.1:1001") + "/drain"
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		errPart                  string
		// after the step: the scoped drains, east's state and healthy count
		scoped      []string
		dcDrained   bool
		eastState   string
		eastHealthy int
	}{
		{name: "service in the body", method: "POST", path: "/api/v1/datacenters/east/drain", body: `{"reason":"deploy","service":"api"}`,
			code: 200, scoped: []string{"east/api"}, eastState: "drained", eastHealthy: 2},
		{name: "service undrained by query", method: "DELETE", path: "/api/v1/datacenters/east/drain?service=api",
			code: 200, eastState: "up", eastHealthy: 2},
		{name: "endpoint by query", method: "POST", path: "/api/v1/datacenters/east/drain?service=api&endpoint=127.0.0.1:1002", body: `{"reason":"disk","mode":"soft","deadline":"5m"}`,
			code: 200, scoped: []string{"east/api/127.0.0.1:1002"}, eastState: "up", eastHealthy: 1},
		{name: "endpoint of every service, in the body", method: "POST", path: "/api/v1/datacenters/east/drain", body: `{"endpoint":"127.0.0.1:1001"}`,
			code: 200, scoped: []string{"east/*/127.0.0.1:1001", "east/api/127.0.0.1:1002"}, eastState: "down", eastHealthy: 0},
		{name: "undrain both endpoints by body", method: "DELETE", path: "/api/v1/datacenters/east/drain", body: `{"endpoint":"127.0.0.1:1001"}`,
			code: 200, scoped: []string{"east/api/127.0.0.1:1002"}, eastState: "up", eastHealthy: 1},
		{name: "undrain the other", method: "DELETE", path: "/api/v1/datacenters/east/drain?service=api&endpoint=127.0.0.1:1002",
			code: 200, eastState: "up", eastHealthy: 2},
		{name: "service path", method: "POST", path: "/api/v1/datacenters/east/services/api/drain", body: `{"reason":"deploy"}`,
			code: 200, scoped: []string{"east/api"}, eastState: "drained", eastHealthy: 2},
		{name: "service path undrain", method: "DELETE", path: "/api/v1/datacenters/east/services/api/drain",
			code: 200, eastState: "up", eastHealthy: 2},
		{name: "endpoint path", method: "POST", path: ep, body: `{"reason":"nic"}`,
			code: 200, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "path and body disagree", method: "POST", path: "/api/v1/datacenters/east/services/api/drain", body: `{"service":"ui"}`,
			code: 400, errPart: `service: "api" and "ui" disagree`, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "unknown service", method: "POST", path: "/api/v1/datacenters/east/services/db/drain",
			code: 404, errPart: `unknown service "db" in datacenter "east"`, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "unknown endpoint", method: "POST", path: "/api/v1/datacenters/west/drain?endpoint=127.0.0.1:1001",
			code: 404, errPart: `unknown endpoint "127.0.0.1:1001" in datacenter "west"`, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "unknown dc", method: "POST", path: "/api/v1/datacenters/mars/services/api/drain",
			code: 404, errPart: `no datacenter "mars"`, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "a DC drain beside an endpoint drain", method: "POST", path: "/api/v1/datacenters/east/drain", body: `{"reason":"all"}`,
			code: 200, scoped: []string{"east/api/127.0.0.1:1001"}, dcDrained: true, eastState: "drained", eastHealthy: 1},
		{name: "DC undrain leaves the endpoint drain", method: "DELETE", path: "/api/v1/datacenters/east/drain",
			code: 200, scoped: []string{"east/api/127.0.0.1:1001"}, eastState: "up", eastHealthy: 1},
		{name: "endpoint path undrain", method: "DELETE", path: ep,
			code: 200, eastState: "up", eastHealthy: 2},
	} {
		code, body := do(t, tc.method, srv.URL+tc.path, "tok-a", tc.body)
		if code != tc.code {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, code, tc.code, body)
		}
		if tc.errPart != "" {
			if msg, _ := body["error"].(string); !strings.Contains(msg, tc.errPart) {
				t.Errorf("%s: error %q lacks %q", tc.name, msg, tc.errPart)
			}
		}
		snap := e.Snapshot()
		var scoped []string
		for _, sd := range snap.ScopedDrains {
			scoped = append(scoped, sd.String())
		}
		if !slices.Equal(scoped, tc.scoped) {
			t.Errorf("%s: scoped drains %v, want %v", tc.name, scoped, tc.scoped)
		}
		if _, ok := snap.Drains["east"]; ok != tc.dcDrained {
			t.Errorf("%s: east DC drained %v, want %v", tc.name, ok, tc.dcDrained)
		}
		east := snap.Service("api").DC("east")
		if east.State.String() != tc.eastState || east.Healthy != tc.eastHealthy {
			t.Errorf("%s: east %s with %d healthy, want %s with %d", tc.name, east.State, east.Healthy, tc.eastState, tc.eastHealthy)
		}
	}
}

// TestStatusShowsScopedDrains: /api/v1/status lists the scoped drains, says
// whether a DC's drain is its own or the service's, and marks the drained
// endpoint.
func TestStatusShowsScopedDrains(t *testing.T) {
	srv, e := newTestServer(t, false)
	if err := e.DrainScoped(routing.DrainScope{DC: "east", Service: "api"}, routing.Drain{Reason: "deploy", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := e.DrainScoped(routing.DrainScope{DC: "west", Service: "api", Endpoint: "127.0.0.1:2001"}, routing.Drain{Reason: "disk", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	var st Status
	getStatus(t, srv.URL, &st)
	if len(st.ScopedDrains) != 2 || st.ScopedDrains[0].Reason != "deploy" || st.ScopedDrains[1].Endpoint != "127.0.0.1:2001" {
		t.Errorf("scoped_drains %+v", st.ScopedDrains)
	}
	dcs := st.Services[0].Datacenters
	if dcs[0].Name != "east" || dcs[0].DrainScope != "service" || dcs[0].Drain == nil || dcs[0].Drain.By != "alice" {
		t.Errorf("east %+v", dcs[0])
	}
	if dcs[1].DrainScope != "" || dcs[1].Endpoints[0].Drain == nil || dcs[1].Endpoints[0].Drain.Reason != "disk" || dcs[1].Healthy != 0 {
		t.Errorf("west %+v", dcs[1])
	}
	e.Drain("east", routing.Drain{Reason: "all"})
	getStatus(t, srv.URL, &st)
	if d := st.Services[0].Datacenters[0]; d.DrainScope != "datacenter" || d.Drain.Reason != "all" {
		t.Errorf("east under a DC drain: %+v", d)
	}
}

func getStatus(t *testing.T, base string, st *Status) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	*st = Status{}
	if err := json.NewDecoder(resp.Body).Decode(st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
}
