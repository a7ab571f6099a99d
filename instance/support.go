package instance

import (
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/internal/buildinfo"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/prometheus/client_golang/prometheus"
)

// probeTargets lists one probe target per endpoint of every service in every DC.
func probeTargets(cfg *config.Config) []health.Target {
	var ts []health.Target
	for _, dc := range cfg.Datacenters {
		for _, name := range cfg.ServiceNames {
			ds := dc.Services[name]
			if ds == nil {
				continue
			}
			for _, ep := range ds.Endpoints {
				ts = append(ts, health.Target{
					ID: routing.EndpointID{DC: dc.Name, Service: name, Endpoint: ep}.String(), DC: dc.Name, Service: name, Endpoint: ep,
					Check: ds.EffectiveCheck, UpstreamTLS: ds.EffectiveUpstreamTLS,
				})
			}
		}
	}
	return ts
}

// firstRoundLimit bounds the wait for the first probe round: the longest
// probe timeout plus a margin for scheduling.
func firstRoundLimit(cfg *config.Config) time.Duration {
	longest := cfg.Health.Timeout.D()
	for _, dc := range cfg.Datacenters {
		for _, ds := range dc.Services {
			longest = max(longest, ds.EffectiveCheck.Timeout.D())
		}
	}
	return longest + 2*time.Second
}

// eventSink logs routing events, appends them to the state log and forwards
// them to notifications and metrics. The engine's Deliver calls it, outside
// the engine's lock: a state log that blocks delays only the events behind
// it (the engine's queue holds them, and counts what it must drop).
type eventSink struct {
	mu      sync.Mutex
	enc     *json.Encoder
	log     *slog.Logger
	forward func(routing.Event)
}

func newEventSink(w io.Writer, log *slog.Logger, forward func(routing.Event)) *eventSink {
	s := &eventSink{log: log, forward: forward}
	if w != nil {
		s.enc = json.NewEncoder(w)
	}
	return s
}

func (s *eventSink) write(ev routing.Event) {
	s.forward(ev)
	if ev.Kind != routing.EventEndpointUp && ev.Kind != routing.EventEndpointDown {
		attrs := []any{"kind", ev.Kind, "dc", ev.DC, "service", ev.Service, "reason", ev.Reason}
		if ev.Endpoint != "" { // a drain of one endpoint
			attrs = append(attrs, "endpoint", ev.Endpoint)
		}
		s.log.Info("event", attrs...)
	}
	if s.enc == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.enc.Encode(ev)
}

func buildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "coopr_gslb", Name: "build_info", Help: "Always 1; labels name the build.",
		ConstLabels: buildinfo.Read(version).Labels(),
	})
	g.Set(1)
	return g
}
