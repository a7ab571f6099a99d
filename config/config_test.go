package config

import (
	"strings"
	"testing"
	"time"
)

const minimal = `
listen:
  http: "127.0.0.1:8080"
  dns: "127.0.0.1:8053"
  admin: "127.0.0.1:9090"
health:
  interval: 2s
  timeout: 500ms
datacenters:
  - name: east
    priority: 1
    client_networks: ["10.1.0.0/16"]
    services:
      api:
        endpoints: ["127.0.0.1:55054", "127.0.0.1:55064"]
        addresses: ["192.0.2.10"]
  - name: west
    priority: 2
    services:
      api:
        endpoints: ["127.0.0.1:55074"]
        addresses: ["192.0.2.20", "2001:db8::20"]
services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
    min_healthy: "50%"
dns:
  zone: coopr.example.com
`

func TestLoadFillsDefaults(t *testing.T) {
	cfg, ps, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, p := range ps {
		if !p.Warning {
			t.Errorf("unexpected error %s", p)
		}
	}
	api := cfg.Services["api"]
	if api.Policy != "failover" || api.WhenAllDown != "serve_all" || api.DNSTTL != 20 {
		t.Errorf("service defaults: %+v", api)
	}
	if !api.MinHealthy.IsPercent || api.MinHealthy.Required(2) != 1 || api.MinHealthy.Required(3) != 2 {
		t.Errorf("min_healthy 50%%: %+v", api.MinHealthy)
	}
	if got := api.Check; got.Interval.D() != 2*time.Second || got.Timeout.D() != 500*time.Millisecond || got.Rise != 2 || got.Fall != 3 || got.ExpectBody != "OK" {
		t.Errorf("check inherits health defaults: %+v", got)
	}
	east := cfg.Datacenters[0]
	if east.Weight != 100 || len(east.Networks) != 1 || east.Networks[0].String() != "10.1.0.0/16" {
		t.Errorf("east: %+v", east)
	}
	if ec := east.Services["api"].EffectiveCheck; ec.Path != "/status" || ec.Interval.D() != 2*time.Second {
		t.Errorf("effective check: %+v", ec)
	}
	if got := cfg.Datacenters[1].Services["api"].ParsedAddresses; len(got) != 2 || !got[1].Is6() {
		t.Errorf("addresses: %v", got)
	}
	if cfg.DNS.Zone != "coopr.example.com." || cfg.DNS.UDPSize != 1232 {
		t.Errorf("dns: %+v", cfg.DNS)
	}
	if cfg.Proxy.DCHeader != "X-Coopr-GSLB-DC" || api.Retry.Attempts != 3 {
		t.Errorf("proxy defaults: %+v %+v", cfg.Proxy, api.Retry)
	}
}

func TestMinHealthyRequired(t *testing.T) {
	for _, tc := range []struct {
		m     MinHealthy
		total int
		want  int
	}{
		{MinHealthy{Count: 1}, 2, 1},
		{MinHealthy{Count: 2}, 3, 2},
		{MinHealthy{Count: 0}, 3, 1},
		{MinHealthy{Percent: 50, IsPercent: true}, 2, 1},
		{MinHealthy{Percent: 50, IsPercent: true}, 3, 2},
		{MinHealthy{Percent: 100, IsPercent: true}, 4, 4},
		{MinHealthy{Percent: 1, IsPercent: true}, 4, 1},
	} {
		if got := tc.m.Required(tc.total); got != tc.want {
			t.Errorf("%s of %d: got %d, want %d", tc.m, tc.total, got, tc.want)
		}
	}
}

// TestBadConfigs checks that each mistake is reported at its line and field path.
func TestBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		want    string // substring of one reported problem
		warning bool
	}{
		{"unknown top-level key", func(s string) string { return s + "bogus: 1\n" }, "config.yaml:30: bogus: unknown field \"bogus\"", false},
		{"unknown nested key", func(s string) string {
			return strings.Replace(s, "    priority: 2\n", "    priority: 2\n    prio: 3\n", 1)
		}, "config.yaml:19: datacenters[1].prio: unknown field", false},
		{"bad endpoint", func(s string) string { return strings.Replace(s, `"127.0.0.1:55074"`, `"nohostport"`, 1) }, "config.yaml:21: datacenters[1].services.api.endpoints[0]: \"nohostport\" is not host:port", false},
		{"bad address", func(s string) string { return strings.Replace(s, `"192.0.2.10"`, `"192.0.2.300"`, 1) }, "config.yaml:16: datacenters[0].services.api.addresses[0]: \"192.0.2.300\" is not an IP address", false},
		{"bad duration", func(s string) string { return strings.Replace(s, "interval: 2s", "interval: soon", 1) }, "config.yaml:7: health.interval: \"soon\" is not a duration", false},
		{"timeout over interval", func(s string) string { return strings.Replace(s, "timeout: 500ms", "timeout: 5s", 1) }, "config.yaml:8: health.timeout: timeout 5s is longer than interval 2s", false},
		{"flap threshold over window", func(s string) string {
			return strings.Replace(s, "timeout: 500ms\n", "timeout: 500ms\n  flap_window: 5\n  flap_threshold: 6\n", 1)
		}, "health.flap_threshold: 6 must be from 1 to flap_window 5", false},
		{"flap window too long", func(s string) string {
			return strings.Replace(s, "timeout: 500ms\n", "timeout: 500ms\n  flap_window: 100\n", 1)
		}, "health.flap_window: 100 is more than 64 results", false},
		{"flap hold negative", func(s string) string {
			return strings.Replace(s, "timeout: 500ms\n", "timeout: 500ms\n  flap_hold: -1s\n", 1)
		}, "config.yaml:9: health.flap_hold: must be positive while flap_changes is 6", false},
		{"unknown policy", func(s string) string { return strings.Replace(s, `min_healthy: "50%"`, "policy: random", 1) }, "config.yaml:27: services.api.policy: unknown policy \"random\"", false},
		{"bad percent", func(s string) string { return strings.Replace(s, `"50%"`, `"150%"`, 1) }, "config.yaml:27: services.api.min_healthy: percentage 150% must be from 1% to 100%", false},
		{"garbage min_healthy", func(s string) string { return strings.Replace(s, `"50%"`, `lots`, 1) }, "config.yaml:27: services.api.min_healthy: \"lots\" is neither a count", false},
		{"unknown service in dc", func(s string) string {
			return strings.Replace(s, "      api:\n        endpoints: [\"127.0.0.1:55074\"]", "      apu:\n        endpoints: [\"127.0.0.1:55074\"]", 1)
		}, "config.yaml:20: datacenters[1].services.apu: unknown service \"apu\"", false},
		{"duplicate dc", func(s string) string { return strings.Replace(s, "name: west", "name: east", 1) }, "config.yaml:17: datacenters[1].name: \"east\" is already the name of datacenters[0]", false},
		{"bad network", func(s string) string { return strings.Replace(s, "10.1.0.0/16", "10.1.0.0/33", 1) }, "config.yaml:12: datacenters[0].client_networks[0]: \"10.1.0.0/33\" is not a CIDR", false},
		{"unknown takeover", func(s string) string {
			return strings.Replace(s, "    priority: 1\n", "    priority: 1\n    takeover: [north]\n", 1)
		}, "config.yaml:12: datacenters[0].takeover[0]: unknown datacenter \"north\"", false},
		{"takeover self", func(s string) string {
			return strings.Replace(s, "    priority: 1\n", "    priority: 1\n    takeover: [east]\n", 1)
		}, "datacenters[0].takeover[0]: a datacenter cannot take over its own shards", false},
		{"no zone with dns", func(s string) string {
			return strings.Replace(s, "  zone: coopr.example.com\n", "  udp_size: 1232\n", 1)
		}, "dns.zone: a zone is required", false},
		{"bad static record", func(s string) string { return s + "  records: [\"www 300 IN CNAMEX x.\"]\n" }, "config.yaml:30: dns.records[0]: dns: unknown RR type: \"CNAMEX\"", false},
		{"wrong type", func(s string) string { return strings.Replace(s, "priority: 2", "priority: high", 1) }, "config.yaml:18: datacenters[1].priority: cannot unmarshal string `high` into int", false},
		{"yaml syntax", func(s string) string { return s + "services: [\n" }, "config.yaml:", false},
		{"hostname outside zone warns", func(s string) string { return strings.Replace(s, "api.coopr.example.com", "api.other.example.org", 1) }, "warning: services.api.hostnames[0]: \"api.other.example.org\" is outside dns.zone", true},
		{"mixed coopr_ids", func(s string) string {
			return strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 10}\n", 1)
		}, "datacenters[1]: coopr_ids is missing", false},
		{"same partition", func(s string) string {
			s = strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 10}\n", 1)
			return strings.Replace(s, "    priority: 2\n", "    priority: 2\n    coopr_ids: {start: 11, increment: 10}\n", 1)
		}, "datacenters[1].coopr_ids.start: 11 is the same partition as datacenter \"east\"", false},
		{"increment below number of DCs", func(s string) string {
			s = strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 1}\n", 1)
			return strings.Replace(s, "    priority: 2\n", "    priority: 2\n    coopr_ids: {start: 2, increment: 1}\n", 1)
		}, "increment 1 is smaller than the number of datacenters (2)", false},
		{"different increments", func(s string) string {
			s = strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 10}\n", 1)
			return strings.Replace(s, "    priority: 2\n", "    priority: 2\n    coopr_ids: {start: 2, increment: 20}\n", 1)
		}, "datacenters[1].coopr_ids.increment: 20 differs from 10", false},
		{"shard routing needs takeover", func(s string) string {
			s = strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 10}\n    takeover: [west]\n", 1)
			s = strings.Replace(s, "    priority: 2\n", "    priority: 2\n    coopr_ids: {start: 2, increment: 10}\n", 1)
			return strings.Replace(s, `min_healthy: "50%"`, "shard_routing: writes", 1)
		}, "datacenters[1].takeover: datacenter \"west\" needs a takeover list", false},
		{"shard routing needs coopr_ids", func(s string) string { return strings.Replace(s, `min_healthy: "50%"`, "shard_routing: all", 1) }, "datacenters[0]: coopr_ids is required: service \"api\" uses shard_routing", false},
		{"bad shard routing", func(s string) string { return strings.Replace(s, `min_healthy: "50%"`, "shard_routing: sometimes", 1) }, "services.api.shard_routing: unknown value \"sometimes\"", false},
		{"small increment warns", func(s string) string {
			s = strings.Replace(s, "    priority: 1\n", "    priority: 1\n    coopr_ids: {start: 1, increment: 3}\n", 1)
			return strings.Replace(s, "    priority: 2\n", "    priority: 2\n    coopr_ids: {start: 2, increment: 3}\n", 1)
		}, "warning: datacenters[0].coopr_ids.increment: increment 3 leaves little room", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps, err := Parse([]byte(tc.edit(minimal)))
			if !tc.warning && err == nil {
				t.Fatalf("want an error containing %q, got none (problems %v)", tc.want, ps)
			}
			if tc.warning && err != nil {
				t.Fatalf("want only a warning, got error %v", err)
			}
			var all []string
			for _, p := range ps {
				all = append(all, p.String())
				if strings.Contains(p.String(), tc.want) {
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%s", tc.want, strings.Join(all, "\n"))
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, ps, err := LoadFile("../config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if len(cfg.Datacenters) < 2 {
		t.Errorf("example should show at least two datacenters")
	}
	for _, p := range ps {
		t.Logf("%s", p)
	}
}

func TestTTLKeysTakeSecondsOrDurations(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		neg     time.Duration
		refresh time.Duration
		ttl     Seconds
		err     string
	}{
		{yaml: "  soa: {negative_ttl: 60, refresh: 14400}\n", neg: time.Minute, refresh: 4 * time.Hour, ttl: 20},
		{yaml: "  soa: {negative_ttl: 1m, refresh: 4h}\n", neg: time.Minute, refresh: 4 * time.Hour, ttl: 20},
		{yaml: "  soa: {negative_ttl: soon}\n", err: "is not a TTL"},
		{yaml: "  soa: {negative_ttl: -5}\n", err: "out of range"},
	} {
		cfg, _, err := Parse([]byte(minimal + tc.yaml))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "config.yaml:") {
				t.Errorf("%q: error %v, want %q with the line", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if cfg.DNS.SOA.NegativeTTL.D() != tc.neg || cfg.DNS.SOA.Refresh.D() != tc.refresh || cfg.Services["api"].DNSTTL != tc.ttl {
			t.Errorf("%q: negative_ttl %v refresh %v dns_ttl %d", tc.yaml, cfg.DNS.SOA.NegativeTTL, cfg.DNS.SOA.Refresh, cfg.Services["api"].DNSTTL)
		}
	}
	for _, v := range []string{"30", "30s"} {
		cfg, _, err := Parse([]byte(strings.Replace(minimal, `min_healthy: "50%"`, `min_healthy: "50%"`+"\n    dns_ttl: "+v, 1)))
		if err != nil || cfg.Services["api"].DNSTTL != 30 {
			t.Errorf("dns_ttl: %s: %v %v", v, err, cfg)
		}
	}
	cfg, _, _ := Parse([]byte(minimal))
	if s := cfg.DNS.SOA; s.Refresh.D() != 4*time.Hour || s.Retry.D() != time.Hour || s.Expire.D() != 14*24*time.Hour {
		t.Errorf("SOA timer defaults %+v", s)
	}
}

func TestRecordBelowDNAMEIsRejected(t *testing.T) {
	yaml := minimal + "  records:\n    - \"old 300 IN DNAME new.example.net.\"\n    - \"a.old 300 IN A 192.0.2.1\"\n"
	_, _, err := Parse([]byte(yaml))
	if err == nil || !strings.Contains(err.Error(), "dns.records[1]") || !strings.Contains(err.Error(), "below the DNAME") {
		t.Errorf("error %v, want dns.records[1] below the DNAME", err)
	}
	if _, _, err := Parse([]byte(minimal + "  records:\n    - \"old 300 IN DNAME new.example.net.\"\n")); err != nil {
		t.Errorf("a DNAME alone: %v", err)
	}
}
