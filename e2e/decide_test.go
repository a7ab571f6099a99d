package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// decideConfig renders east (priority 1) and west (priority 2) for the api
// service under policy; east gets DNS addresses only if eastAddrs.
func decideConfig(fleet *simulator.Fleet, httpAddr, dnsAddr, adminAddr, policy string, eastAddrs bool, eastWeight, westWeight int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  http: %q\n  dns: %q\n  admin: %q\n", httpAddr, dnsAddr, adminAddr)
	b.WriteString("health:\n  interval: 500ms\n  timeout: 400ms\n  rise: 1\n  fall: 1\ndatacenters:\n")
	weights := []int{eastWeight, westWeight}
	for i, dc := range fleet.Datacenters() {
		fmt.Fprintf(&b, "  - name: %s\n    priority: %d\n    weight: %d\n    client_networks: [\"10.%d.0.0/16\"]\n    services:\n", dc.Name(), i+1, weights[i], i+1)
		fmt.Fprintf(&b, "      api:\n        endpoints: [%s]\n", addrs(dc.Servers()))
		if i > 0 || eastAddrs {
			fmt.Fprintf(&b, "        addresses: [\"192.0.2.%d\"]\n", 10*(i+1))
		}
	}
	fmt.Fprintf(&b, `services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200]}
    policy: %s
    dns_ttl: 5
dns:
  zone: "coopr.example.com."
proxy:
  trusted_proxies: ["127.0.0.0/8"]
`, policy)
	return b.String()
}

// TestDecisionAgrees asks the DNS server (with dig), the proxy (a real
// request's X-Coopr-GSLB-DC) and /api/v1/explain the same question for each
// policy, and for a first DC without DNS addresses, and wants one answer.
func TestDecisionAgrees(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	for _, tc := range []struct {
		name       string
		policy     string
		eastAddrs  bool
		weights    [2]int
		client     string
		wantProxy  string
		wantDNS    []string
		wantDNSDCs []string
	}{
		{"failover", "failover", true, [2]int{100, 100}, "192.0.2.99", "east", []string{"192.0.2.10"}, []string{"east"}},
		{"failover, first DC without addresses", "failover", false, [2]int{100, 100}, "192.0.2.99", "east", []string{"192.0.2.20"}, []string{"west"}},
		// Weights so lopsided that the draw is west in all but one in a million.
		{"weighted", "weighted", true, [2]int{1, 1000000}, "192.0.2.99", "west", []string{"192.0.2.20"}, []string{"west"}},
		{"nearest", "nearest", true, [2]int{100, 100}, "10.2.3.4", "west", []string{"192.0.2.20"}, []string{"west"}},
		{"nearest, nearest DC without addresses", "nearest", false, [2]int{100, 100}, "10.1.3.4", "east", []string{"192.0.2.20"}, []string{"west"}},
		{"all", "all", true, [2]int{100, 100}, "192.0.2.99", "east", []string{"192.0.2.10", "192.0.2.20"}, []string{"east", "west"}},
		{"all, a DC without addresses", "all", false, [2]int{100, 100}, "192.0.2.99", "east", []string{"192.0.2.20"}, []string{"west"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fleet := startFleet(t)
			httpAddr, dnsAddr, admin := freePort(t), freePort(t), freePort(t)
			startGSLB(t, decideConfig(fleet, httpAddr, dnsAddr, admin, tc.policy, tc.eastAddrs, tc.weights[0], tc.weights[1]), admin)

			// DNS, with the client's network in ECS.
			out := dig(t, digTool, dnsAddr, "+short", "+subnet="+tc.client+"/32", "api.coopr.example.com", "A")
			gotDNS := slices.Sorted(slices.Values(strings.Fields(out)))

			// The proxy, with the client in X-Forwarded-For from a trusted peer.
			req, _ := http.NewRequest("GET", "http://"+httpAddr+"/status", nil)
			req.Host = "api.coopr.example.com"
			req.Header.Set("X-Forwarded-For", tc.client)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			gotProxy := resp.Header.Get("X-Coopr-GSLB-DC")

			// Explain.
			var ex struct {
				Chosen    string   `json:"chosen"`
				Order     []string `json:"order"`
				DNSAnswer []string `json:"dns_answer"`
				DNSDCs    []string `json:"dns_dcs"`
				Steps     []string `json:"steps"`
			}
			getJSON(t, "http://"+admin+"/api/v1/explain?name=api.coopr.example.com&client="+url.QueryEscape(tc.client), &ex)
			exDNS := slices.Sorted(slices.Values(ex.DNSAnswer))

			if gotProxy != tc.wantProxy || ex.Chosen != tc.wantProxy {
				t.Errorf("proxy served %q, explain chose %q, want %q (steps %q)", gotProxy, ex.Chosen, tc.wantProxy, ex.Steps)
			}
			if !slices.Equal(gotDNS, tc.wantDNS) || !slices.Equal(exDNS, tc.wantDNS) {
				t.Errorf("dig answered %q, explain says %q, want %q (steps %q)", gotDNS, exDNS, tc.wantDNS, ex.Steps)
			}
			if !slices.Equal(ex.DNSDCs, tc.wantDNSDCs) {
				t.Errorf("explain's DNS datacenters %q, want %q", ex.DNSDCs, tc.wantDNSDCs)
			}
		})
	}
}
