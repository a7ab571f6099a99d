package cluster

import "github.com/prometheus/client_golang/prometheus"

// metrics are the cluster's instruments, registered on the Registerer given
// in Options.
type metrics struct {
	members       *prometheus.GaugeVec
	messages      *prometheus.CounterVec
	propagation   prometheus.Histogram
	configDiffers prometheus.Gauge
	alone         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "coopr_gslb", Subsystem: "cluster", Name: "members",
			Help: "Cluster members by state (alive, suspect, dead), self included.",
		}, []string{"state"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "cluster", Name: "gossip_messages_total",
			Help: "Cluster state messages by direction (sent, received, dropped) and kind (state, drains, push_pull).",
		}, []string{"direction", "kind"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coopr_gslb", Subsystem: "cluster", Name: "drain_propagation_seconds",
			Help:    "Time from a drain or undrain given on another member to its arrival here, by the two members' clocks.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30},
		}),
		configDiffers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coopr_gslb", Subsystem: "cluster", Name: "config_differs_members",
			Help: "Alive members whose configuration hash differs from this member's.",
		}),
		alone: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coopr_gslb", Subsystem: "cluster", Name: "alone",
			Help: "1 when no peer is alive and this member decides from its own probes alone.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.members, m.messages, m.propagation, m.configDiffers, m.alone)
	}
	for _, s := range []string{StateAlive, StateSuspect, StateDead} {
		m.members.WithLabelValues(s)
	}
	return m
}
