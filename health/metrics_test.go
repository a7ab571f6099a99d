package health

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInstrumentProber(t *testing.T) {
	reg := prometheus.NewRegistry()
	results := []Result{{OK: true, Latency: time.Millisecond}, {Err: "connection refused", Hard: true}, {Err: "status 503, want 200"}}
	i := 0
	p := InstrumentProber(ProberFunc(func(context.Context, Target) Result { i++; return results[i-1] }), reg)
	for range results {
		p.Probe(context.Background(), Target{DC: "east", Service: "api"})
	}
	if n := testutil.CollectAndCount(reg, "coopr_gslb_probe_failures_total"); n != 2 {
		t.Errorf("failure series: %d, want 2 (refused, status)", n)
	}
	if n := testutil.CollectAndCount(reg, "coopr_gslb_probe_duration_seconds"); n != 1 {
		t.Errorf("duration series: %d", n)
	}
}

func TestReasonKind(t *testing.T) {
	for err, want := range map[string]string{
		"connection refused": "refused", "timeout after 800ms": "timeout", "status 503, want 200": "status",
		`body lacks "OK"`: "body", "connection reset": "reset", "no such host": "dns", "certificate signed by unknown authority": "tls",
		"host unreachable": "unreachable", "something odd": "other",
	} {
		if got := ReasonKind(err); got != want {
			t.Errorf("ReasonKind(%q) = %q, want %q", err, got, want)
		}
	}
}
