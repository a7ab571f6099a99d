package config

import (
	"strings"
	"testing"
	"time"
)

// TestProxyHardeningKeys: the hostile-client and hostile-backend bounds
// have their defaults, and bad values are refused naming the key.
func TestProxyHardeningKeys(t *testing.T) {
	cfg, _, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Proxy
	if p.BodyTimeout.D() != 10*time.Second || p.MaxConnections != 10000 || p.MaxResponseHeaderBytes != 1<<20 {
		t.Fatalf("defaults: body_timeout %s, max_connections %d, max_response_header_bytes %d", p.BodyTimeout, p.MaxConnections, p.MaxResponseHeaderBytes)
	}
	cfg, _, err = Parse([]byte(minimal + "proxy: {body_timeout: 2s, max_connections: 50, max_response_header_bytes: 65536}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Proxy; p.BodyTimeout.D() != 2*time.Second || p.MaxConnections != 50 || p.MaxResponseHeaderBytes != 65536 {
		t.Fatalf("set: %+v", p)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"proxy: {body_timeout: -1s}\n", "proxy.body_timeout: must be positive"},
		{"proxy: {max_connections: -5}\n", "proxy.max_connections: must be at least 1"},
		{"proxy: {max_response_header_bytes: 100}\n", "proxy.max_response_header_bytes: 100 is too small"},
	} {
		_, ps, err := Parse([]byte(minimal + tc.yaml))
		found := err != nil && strings.Contains(err.Error(), tc.want)
		for _, p := range ps {
			found = found || (!p.Warning && strings.Contains(p.String(), tc.want))
		}
		if !found {
			t.Errorf("%q: no error %q (got %v, %v)", tc.yaml, tc.want, err, ps)
		}
	}
}

// TestRetryHedgeKeys: hedging is on by default with the adaptive timeout's
// multiple and floor, a service inherits proxy.retry's values, and bad
// values are refused naming the key.
func TestRetryHedgeKeys(t *testing.T) {
	cfg, _, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Proxy.Retry; !r.Hedges() || r.TimeoutMultiplier != 4 || r.TimeoutFloor.D() != 150*time.Millisecond {
		t.Fatalf("defaults: hedge %v, timeout_multiplier %d, timeout_floor %s", r.Hedges(), r.TimeoutMultiplier, r.TimeoutFloor)
	}
	cfg, _, err = Parse([]byte(minimal + "proxy: {retry: {hedge: false, timeout_multiplier: 3, timeout_floor: 80ms}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range cfg.Services {
		if r := s.Retry; r.Hedges() || r.TimeoutMultiplier != 3 || r.TimeoutFloor.D() != 80*time.Millisecond {
			t.Fatalf("service %s did not inherit proxy.retry: %+v", name, r)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"proxy: {retry: {timeout_multiplier: 500}}\n", "proxy.retry.timeout_multiplier: 500 is out of range 1..100"},
		{"proxy: {retry: {timeout_floor: -1s}}\n", "proxy.retry.timeout_floor: must not be negative"},
	} {
		_, ps, err := Parse([]byte(minimal + tc.yaml))
		found := err != nil && strings.Contains(err.Error(), tc.want)
		for _, p := range ps {
			found = found || (!p.Warning && strings.Contains(p.String(), tc.want))
		}
		if !found {
			t.Errorf("%q: no error %q (got %v, %v)", tc.yaml, tc.want, err, ps)
		}
	}
}
