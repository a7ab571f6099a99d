package health

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// InstrumentProber wraps p so every probe is measured: a duration histogram
// by service and DC, and failures by kind of reason. The metrics are
// registered on reg.
func InstrumentProber(p Prober, reg prometheus.Registerer) Prober {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "coopr_gslb", Subsystem: "probe", Name: "duration_seconds",
		Help:    "Duration of health probes, successful or not.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"service", "dc"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "coopr_gslb", Subsystem: "probe", Name: "failures_total",
		Help: "Failed health probes by reason: refused, timeout, reset, status, body, tls, dns, unreachable, other.",
	}, []string{"service", "dc", "reason"})
	reg.MustRegister(duration, failures)
	return ProberFunc(func(ctx context.Context, t Target) Result {
		r := p.Probe(ctx, t)
		duration.WithLabelValues(t.Service, t.DC).Observe(r.Latency.Seconds())
		if !r.OK {
			failures.WithLabelValues(t.Service, t.DC, ReasonKind(r.Err)).Inc()
		}
		return r
	})
}

// ReasonKind sorts a probe's error into a few kinds, for metric labels.
func ReasonKind(err string) string {
	switch {
	case err == "connection refused":
		return "refused"
	case strings.HasPrefix(err, "timeout"):
		return "timeout"
	case err == "connection reset", err == "connection closed without a response":
		return "reset"
	case strings.HasPrefix(err, "status "):
		return "status"
	case strings.HasPrefix(err, "body lacks"):
		return "body"
	case err == "no such host":
		return "dns"
	case strings.HasSuffix(err, "unreachable"):
		return "unreachable"
	case strings.Contains(err, "certificate"), strings.Contains(err, "TLS"), strings.Contains(err, "tls"):
		return "tls"
	default:
		return "other"
	}
}
