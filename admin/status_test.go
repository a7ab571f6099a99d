package admin

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestStatusAndExplainAgree: with east first but without DNS addresses, the
// status page, explain and routing's answer all say proxy east, DNS west's
// address; and a weighted service's page answer does not change between
// loads (the page uses a fixed random source).
func TestStatusAndExplainAgree(t *testing.T) {
	for _, policy := range []string{"failover", "weighted", "nearest", "all"} {
		t.Run(policy, func(t *testing.T) {
			y := strings.Replace(strings.Replace(twoDCs, `, addresses: ["192.0.2.10"]`, "", 1), "policy: nearest", "policy: "+policy, 1)
			cfg, _, err := config.Parse([]byte(y))
			if err != nil {
				t.Fatal(err)
			}
			e := routing.New(cfg, routing.Options{Rand: func(uint64) uint64 { return 0 }})
			defer e.Close()
			for _, ep := range []struct{ dc, addr string }{{"east", "127.0.0.1:1001"}, {"east", "127.0.0.1:1002"}, {"west", "127.0.0.1:2001"}} {
				e.UpdateEndpoint(routing.EndpointUpdate{DC: ep.dc, Service: "api", Endpoint: ep.addr, Up: true})
			}
			s := New(Options{Snapshot: e.Snapshot})
			st := s.buildStatus().Services[0]
			client := netip.IPv4Unspecified()
			ex := explainDecision(e.Snapshot().Service("api"), routing.Request{Client: client})
			ans := e.Snapshot().Service("api").Route(routing.Request{Client: client}, nil)
			if st.ProxyTarget != ex.Chosen || ex.Chosen != ans.Proxy[0].DC || ex.Chosen != "east" {
				t.Errorf("proxy target: page %q, explain %q, routing %q", st.ProxyTarget, ex.Chosen, ans.Proxy[0].DC)
			}
			if !slices.Equal(st.DNSAnswer, ex.DNSAnswer) || !slices.Equal(ex.DNSAnswer, []string{"192.0.2.20"}) {
				t.Errorf("dns answer: page %q, explain %q", st.DNSAnswer, ex.DNSAnswer)
			}
			if !slices.Contains(ex.Steps, "dns: skips east (no addresses)") {
				t.Errorf("explain's steps do not say east is skipped: %q", ex.Steps)
			}
			for range 20 {
				if again := s.buildStatus().Services[0]; again.ProxyTarget != st.ProxyTarget {
					t.Fatalf("the page's proxy target changed between loads: %q then %q", st.ProxyTarget, again.ProxyTarget)
				}
			}
		})
	}
}

// TestStatusPageIsStable: under weighted, with the engine's real random
// source, the page shows the same proxy target on every load.
func TestStatusPageIsStable(t *testing.T) {
	cfg, _, err := config.Parse([]byte(strings.Replace(twoDCs, "policy: nearest", "policy: weighted", 1)))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	defer e.Close()
	for _, ep := range []struct{ dc, addr string }{{"east", "127.0.0.1:1001"}, {"east", "127.0.0.1:1002"}, {"west", "127.0.0.1:2001"}} {
		e.UpdateEndpoint(routing.EndpointUpdate{DC: ep.dc, Service: "api", Endpoint: ep.addr, Up: true})
	}
	s := New(Options{Snapshot: e.Snapshot})
	first := s.buildStatus().Services[0].ProxyTarget
	for range 100 {
		if got := s.buildStatus().Services[0].ProxyTarget; got != first {
			t.Fatalf("the page's proxy target changed between loads: %q then %q", first, got)
		}
	}
}
