package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// twoDCConfig renders a config for the fleet's east and west DCs.
func twoDCConfig(fleet *simulator.Fleet, httpAddr, dnsAddr, adminAddr, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  http: %q\n  dns: %q\n  admin: %q\n", httpAddr, dnsAddr, adminAddr)
	b.WriteString("health:\n  interval: 500ms\n  timeout: 400ms\n  rise: 2\n  fall: 3\ndatacenters:\n")
	for i, dc := range fleet.Datacenters() {
		fmt.Fprintf(&b, "  - name: %s\n    priority: %d\n    client_networks: [\"10.%d.0.0/16\"]\n", dc.Name(), i+1, i+1)
		fmt.Fprintf(&b, "    coopr_ids: {start: %d, increment: %d}\n    services:\n", dc.IDStart(), dc.IDIncrement())
		fmt.Fprintf(&b, "      api:\n        endpoints: [%s]\n        addresses: [\"192.0.2.%d\"]\n", addrs(dc.Servers()), 10*(i+1))
		fmt.Fprintf(&b, "      ui:\n        endpoints: [%s]\n        addresses: [\"192.0.2.%d\"]\n", addrs(dc.UIs()), 10*(i+1)+1)
	}
	b.WriteString(`services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
    policy: failover
    dns_ttl: 5
  ui:
    hostnames: ["coopr.example.com"]
    check: {type: http, path: /status}
dns:
  zone: "coopr.example.com."
`)
	b.WriteString(extra)
	return b.String()
}

func addrs(ss []*simulator.Server) string {
	var q []string
	for _, s := range ss {
		q = append(q, fmt.Sprintf("%q", s.Addr()))
	}
	return strings.Join(q, ", ")
}

func startFleet(t *testing.T) *simulator.Fleet {
	t.Helper()
	fleet, err := simulator.StartFleet(
		simulator.DCOptions{Name: "east", IDStart: 1, IDIncrement: 10},
		simulator.DCOptions{Name: "west", IDStart: 2, IDIncrement: 10},
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	return fleet
}

// TestCoreFailAndRecover fails a DC in the simulator and watches the engine
// drain it and bring it back, through the status API and the state log.
func TestCoreFailAndRecover(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, twoDCConfig(fleet, "", "", admin, ""), admin)

	st := g.status()
	if st.dcState("api", "east") != "up" || st.dcState("api", "west") != "up" {
		t.Fatalf("both DCs should be up at start: %+v", st)
	}
	if st.Services[0].ProxyTarget != "east" {
		t.Errorf("proxy target %q, want east (priority 1)", st.Services[0].ProxyTarget)
	}

	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	failed := time.Now()
	// fall 3 at 500 ms: down after about 1.5 s; allow generously for a noisy machine.
	eventually(t, 5*time.Second, "east drains", func() bool { return g.status().dcState("api", "east") == "down" })
	t.Logf("east drained %s after the fault", time.Since(failed).Round(10*time.Millisecond))
	st = g.status()
	if st.Services[0].ProxyTarget != "west" || len(st.Services[0].DNSAnswer) != 1 || st.Services[0].DNSAnswer[0] != "192.0.2.20" {
		t.Errorf("after east fails: target %q answer %v, want west 192.0.2.20", st.Services[0].ProxyTarget, st.Services[0].DNSAnswer)
	}
	if r := st.Services[0].Datacenters[0].Reason; !strings.Contains(r, "connection refused") {
		t.Errorf("reason %q should say connection refused", r)
	}

	fleet.Datacenter("east").SetFault(simulator.Fault{})
	eventually(t, 5*time.Second, "east comes back", func() bool { return g.status().dcState("api", "east") == "up" })

	// The state log holds the whole story, in order. It is written off the
	// engine's lock from a queue, so it may trail the API by a moment.
	eventually(t, 5*time.Second, "the state log to read dc_up,dc_down,dc_up for east/api", func() bool {
		var story []string
		for _, ev := range g.stateEvents() {
			if ev["dc"] == "east" && ev["service"] == "api" && (ev["kind"] == "dc_down" || ev["kind"] == "dc_up") {
				story = append(story, ev["kind"].(string))
			}
		}
		return strings.Join(story, ",") == "dc_up,dc_down,dc_up"
	})
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`datacenters:
  - name: east
    services:
      api:
        endpoints: ["127.0.0.1:1", "nope"]
services:
  api:
    hostnames: ["api.example.com"]
    polcy: failover
listen: {dns: ""}
`), 0o644)
	code, _, stderr := runBinary(t, 30*time.Second, "check", "-config", bad)
	if code != 1 {
		t.Errorf("check of a bad file exited %d, want 1", code)
	}
	if !contains(stderr, "bad.yaml:9: services.api.polcy: unknown field \"polcy\"") {
		t.Errorf("check output lacks the unknown field with line and path:\n%s", stderr)
	}

	code, stdout, stderr := runBinary(t, 30*time.Second, "check", "-config", "../config.example.yaml")
	if code != 0 {
		t.Errorf("config.example.yaml fails check (%d):\n%s%s", code, stdout, stderr)
	}
	os.WriteFile(bad, []byte(strings.Replace(`datacenters:
  - name: east
    services:
      api:
        endpoints: ["127.0.0.1:1", "127.0.0.1:55054"]
services:
  api:
    hostnames: ["api.example.com"]
listen: {dns: ""}
`, "nope", "127.0.0.1:2", 1)), 0o644)
	if code, _, stderr := runBinary(t, 30*time.Second, "check", "-config", bad); code != 0 {
		t.Errorf("a valid file exited %d:\n%s", code, stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	if code, out, _ := runBinary(t, 30*time.Second, "version"); code != 0 || !contains(out, "coopr-gslb") {
		t.Errorf("version: %d %q", code, out)
	}
	for _, cmd := range []string{"run", "check", "demo"} {
		code, _, stderr := runBinary(t, 30*time.Second, cmd, "-h")
		if code != 0 && code != 2 || !contains(stderr, "Usage: coopr-gslb "+cmd) {
			t.Errorf("%s -h: %d %q", cmd, code, stderr)
		}
	}
}
