package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// StateCollector exports the routing state of the current snapshot at scrape
// time, so the hot paths pay nothing for it.
type StateCollector struct {
	snapshot func() *routing.Snapshot

	dcUp, dcState, endpointUp, drained, allDown, generation, takeover *prometheus.Desc
	drainDeadline                                                     *prometheus.Desc
	events                                                            *prometheus.CounterVec
}

var _ prometheus.Collector = (*StateCollector)(nil)

// NewStateCollector returns a collector over the snapshots snapshot returns.
func NewStateCollector(snapshot func() *routing.Snapshot) *StateCollector {
	return &StateCollector{
		snapshot:   snapshot,
		dcUp:       prometheus.NewDesc("coopr_gslb_dc_healthy", "1 if the datacenter is healthy for the service (enough healthy endpoints), else 0.", []string{"service", "dc"}, nil),
		dcState:    prometheus.NewDesc("coopr_gslb_dc_state", "1 for the datacenter's current state for the service: up, down, drained or serving_all.", []string{"service", "dc", "state"}, nil),
		endpointUp: prometheus.NewDesc("coopr_gslb_endpoint_up", "1 if the endpoint passes its health check, else 0.", []string{"service", "dc", "endpoint"}, nil),
		drained:    prometheus.NewDesc("coopr_gslb_dc_drained", "1 if the datacenter is drained by hand, else 0.", []string{"dc"}, nil),
		allDown:    prometheus.NewDesc("coopr_gslb_all_down", "1 if no datacenter is healthy for the service (serving all or refusing), else 0.", []string{"service"}, nil),
		takeover:   prometheus.NewDesc("coopr_gslb_shard_takeover", "1 while a datacenter's cluster shards are owned by another (takeover in effect), else 0; owner is \"\" when nobody can write them.", []string{"service", "home", "owner"}, nil),
		drainDeadline: prometheus.NewDesc("coopr_gslb_dc_drain_deadline_timestamp_seconds",
			"When the datacenter's soft drain lets its pinned sessions go (Unix seconds); only for soft drains with a deadline.", []string{"dc"}, nil),
		generation: prometheus.NewDesc("coopr_gslb_routing_generation", "Generation of the routing snapshot; it increases on every change.", nil, nil),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Name: "transitions_total",
			Help: "Routing events by kind: endpoint_up/down, dc_up/down, drained, undrained, all_down, all_down_cleared, config_reloaded.",
		}, []string{"kind"}),
	}
}

// RecordEvent counts a routing event. It is cheap and never blocks.
func (c *StateCollector) RecordEvent(ev routing.Event) {
	c.events.WithLabelValues(string(ev.Kind)).Inc()
}

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dcUp, c.dcState, c.endpointUp, c.drained, c.allDown, c.generation, c.takeover, c.drainDeadline} {
		ch <- d
	}
	c.events.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snapshot()
	c.events.Collect(ch)
	if snap == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(snap.Generation))
	for _, dc := range snap.Config.Datacenters {
		d, ok := snap.Drains[dc.Name]
		ch <- prometheus.MustNewConstMetric(c.drained, prometheus.GaugeValue, b2f(ok), dc.Name)
		if ok && d.Mode == "soft" && !d.Deadline.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.drainDeadline, prometheus.GaugeValue, float64(d.Deadline.Unix()), dc.Name)
		}
	}
	for _, svc := range snap.Services {
		ch <- prometheus.MustNewConstMetric(c.allDown, prometheus.GaugeValue, b2f(svc.AllDown), svc.Name)
		if svc.ShardMode != routing.ShardOff {
			for _, sh := range svc.Shards() {
				ch <- prometheus.MustNewConstMetric(c.takeover, prometheus.GaugeValue, b2f(sh.Owner != sh.Home), svc.Name, sh.Home, sh.Owner)
			}
		}
		for _, dc := range svc.DCs {
			ch <- prometheus.MustNewConstMetric(c.dcUp, prometheus.GaugeValue, b2f(dc.State == routing.StateUp), svc.Name, dc.Name)
			state := dc.State.String()
			if svc.AllDown && dc.State == routing.StateDown && svc.Config.WhenAllDown == "serve_all" {
				state = "serving_all"
			}
			for _, s := range []string{"up", "down", "drained", "serving_all"} {
				ch <- prometheus.MustNewConstMetric(c.dcState, prometheus.GaugeValue, b2f(s == state), svc.Name, dc.Name, s)
			}
			for _, ep := range dc.Endpoints {
				ch <- prometheus.MustNewConstMetric(c.endpointUp, prometheus.GaugeValue, b2f(ep.Up), svc.Name, dc.Name, ep.Address)
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
