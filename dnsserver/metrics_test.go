package dnsserver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// metricValue returns the value of the counter or the sample count of the
// histogram named name with the given labels, 0 when absent.
func metricValue(t testing.TB, f *fixture, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	metrics:
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	f := start(t, "")
	f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA))
	f.exchange(t, "tcp", query("api.gslb.example.com.", dns.TypeA))
	f.exchange(t, "udp", query("nope.gslb.example.com.", dns.TypeAAAA))
	f.exchange(t, "udp", query("all.gslb.example.com.", dns.TypeA))
	f.exchange(t, "udp", query("strict.gslb.example.com.", dns.TypeA))
	f.engine.Drain("dc1", routing.Drain{})
	f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA))
	f.rawExchange(t, []byte{1, 2, 3}, 100*time.Millisecond)

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"coopr_gslb_dns_queries_total", map[string]string{"qtype": "A", "transport": "udp", "rcode": "NOERROR"}, 4},
		{"coopr_gslb_dns_queries_total", map[string]string{"qtype": "A", "transport": "tcp", "rcode": "NOERROR"}, 1},
		{"coopr_gslb_dns_queries_total", map[string]string{"qtype": "AAAA", "transport": "udp", "rcode": "NXDOMAIN"}, 1},
		{"coopr_gslb_dns_queries_total", map[string]string{"qtype": "none", "transport": "udp", "rcode": "dropped"}, 1},
		{"coopr_gslb_dns_gslb_answers_total", map[string]string{"service": "api", "dc": "dc1"}, 2},
		{"coopr_gslb_dns_gslb_answers_total", map[string]string{"service": "api", "dc": "dc2"}, 1},
		{"coopr_gslb_dns_gslb_answers_total", map[string]string{"service": "every", "dc": "dc1"}, 1},
		{"coopr_gslb_dns_gslb_answers_total", map[string]string{"service": "every", "dc": "dc2"}, 1},
		{"coopr_gslb_dns_gslb_answers_total", map[string]string{"service": "strict", "dc": "none"}, 1},
		{"coopr_gslb_dns_query_duration_seconds", map[string]string{"transport": "udp"}, 5},
	} {
		if got := metricValue(t, f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMetricsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := start(t, "")
	for range 2 {
		if _, err := New(Options{Snapshot: f.engine.Snapshot, Registerer: reg}); err != nil {
			t.Fatalf("second server on one registry: %v", err)
		}
	}
}
