package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
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
					ID: dc.Name + "/" + name + "/" + ep, DC: dc.Name, Service: name, Endpoint: ep,
					Check: ds.EffectiveCheck,
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

type readyFlag struct {
	mu sync.Mutex
	v  bool
}

func (r *readyFlag) set()      { r.mu.Lock(); r.v = true; r.mu.Unlock() }
func (r *readyFlag) get() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.v }

// eventSink logs routing events and appends them to the state log. It is
// called with the engine's lock held, so it only formats and writes.
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
		s.log.Info("event", "kind", ev.Kind, "dc", ev.DC, "service", ev.Service, "reason", ev.Reason)
	}
	if s.enc == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.enc.Encode(ev)
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "coopr_gslb", Name: "build_info", Help: "Always 1; labels name the build.",
		ConstLabels: buildVersion().labels(),
	})
	g.Set(1)
	return g
}

// managedServer is a listening HTTP server with its name, for shutdown.
type managedServer struct {
	name     string
	addr     string
	shutdown func(ctx context.Context) error
}

func listenHTTP(name, addr string, h http.Handler, cfg *config.Config) (*managedServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen.%s %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: cfg.Proxy.ReadHeaderTimeout.D(), MaxHeaderBytes: cfg.Proxy.MaxHeaderBytes}
	go func() { _ = srv.Serve(ln) }()
	return &managedServer{name: name, addr: ln.Addr().String(), shutdown: srv.Shutdown}, nil
}

func shutdownAll(servers []*managedServer, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.shutdown(ctx); err != nil {
				log.Warn("shutdown", "server", s.name, "error", err)
			}
		})
	}
	wg.Wait()
}
