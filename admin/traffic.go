package admin

import (
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Traffic is the page's traffic counters per DC, read from the metrics
// registry: the page fetches it every second (GET /?traffic=1) and draws
// rates and a one-minute sparkline from the differences.
type Traffic struct {
	Time        time.Time             `json:"time"`
	Datacenters map[string]DCCounters `json:"datacenters"`
}

// DCCounters are cumulative counts for one DC, all services together.
type DCCounters struct {
	// Requests are proxy answers the DC served; Errors those with a 5xx.
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// DNSAnswers are GSLB DNS answers that named the DC.
	DNSAnswers float64 `json:"dns_answers"`
}

func (s *Server) traffic() Traffic {
	t := Traffic{Time: time.Now(), Datacenters: map[string]DCCounters{}}
	if snap := s.opts.Snapshot(); snap != nil {
		for _, dc := range snap.Config.Datacenters {
			t.Datacenters[dc.Name] = DCCounters{}
		}
	}
	if s.opts.Gatherer == nil {
		return t
	}
	families, _ := s.opts.Gatherer.Gather() // a partial result is still worth drawing
	for _, f := range families {
		switch f.GetName() {
		case "coopr_gslb_proxy_requests_total":
			for _, m := range f.GetMetric() {
				dc, code := label(m, "dc"), label(m, "code")
				c, ok := t.Datacenters[dc]
				if !ok {
					continue // "-": no DC could serve
				}
				c.Requests += m.GetCounter().GetValue()
				if strings.HasPrefix(code, "5") {
					c.Errors += m.GetCounter().GetValue()
				}
				t.Datacenters[dc] = c
			}
		case "coopr_gslb_dns_gslb_answers_total":
			for _, m := range f.GetMetric() {
				dc := label(m, "dc")
				if c, ok := t.Datacenters[dc]; ok {
					c.DNSAnswers += m.GetCounter().GetValue()
					t.Datacenters[dc] = c
				}
			}
		}
	}
	return t
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
