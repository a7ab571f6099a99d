package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb run -config FILE [-state-log FILE]\n\nRuns every front door the configuration enables. SIGHUP reloads the configuration;\nSIGTERM and SIGINT shut down gracefully.\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("config", "config.yaml", "configuration file")
	stateLog := fs.String("state-log", "", "append every routing event as a JSON line to this file (\"-\" for stdout)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, problems, err := config.LoadFile(*path)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if err != nil {
		if !errors.Is(err, config.ErrInvalid) {
			fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := runOptions{configPath: *path, logger: newLogger()}
	if *stateLog != "" {
		w, closeFn, err := openStateLog(*stateLog)
		if err != nil {
			fmt.Fprintf(os.Stderr, "coopr-gslb: state log: %v\n", err)
			return 1
		}
		defer closeFn()
		opts.stateLog = w
	}
	if err := serve(ctx, cfg, opts); err != nil {
		fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		return 1
	}
	return 0
}

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openStateLog(path string) (io.Writer, func(), error) {
	if path == "-" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

// runOptions are what serve needs besides the configuration.
type runOptions struct {
	configPath string
	logger     *slog.Logger
	// stateLog, if set, receives every routing event as a JSON line.
	stateLog io.Writer
	// onServing, if set, is called once every front door listens.
	onServing func(addrs boundAddrs)
}

// boundAddrs are the addresses the front doors actually listen on.
type boundAddrs struct {
	HTTP, DNS, Admin string
}

// serve runs coopr-gslb until ctx is done: probes first, front doors once the
// first probe round is in, reload on SIGHUP, graceful shutdown at the end.
func serve(ctx context.Context, cfg *config.Config, opts runOptions) error {
	log := opts.logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)

	events := newEventSink(opts.stateLog, log)
	engine := routing.New(cfg, routing.Options{OnEvent: events.write})
	checker := health.New(probeTargets(cfg), health.Options{
		OnChange: func(tr health.Transition) {
			t := tr.Status.Target
			engine.UpdateEndpoint(routing.EndpointUpdate{
				DC: t.DC, Service: t.Service, Endpoint: t.Endpoint,
				Up: tr.Status.Up, Reason: tr.Status.Reason, At: tr.Status.Since,
			})
		},
	})

	var wg sync.WaitGroup
	probeCtx, stopProbes := context.WithCancel(context.Background())
	defer func() {
		stopProbes()
		wg.Wait()
	}()
	wg.Go(func() { checker.Run(probeCtx) })

	var ready readyFlag
	adminSrv := admin.New(admin.Options{
		Snapshot: engine.Snapshot,
		Events:   engine.Events,
		Probes:   checker.Statuses,
		Ready:    ready.get,
		Gatherer: reg,
		Version:  version,
	})

	var servers []*managedServer
	defer func() {
		shutdownAll(servers, cfg.Proxy.ShutdownTimeout.D(), log)
	}()
	var bound boundAddrs
	if cfg.Listen.Admin != "" {
		s, err := listenHTTP("admin", cfg.Listen.Admin, adminSrv, cfg)
		if err != nil {
			return err
		}
		servers = append(servers, s)
		bound.Admin = s.addr
	}

	// The front doors answer only once every endpoint has its first result,
	// so the first answers are already health-aware.
	select {
	case <-checker.Ready():
	case <-time.After(firstRoundLimit(cfg)):
		log.Warn("first probe round did not finish in time; serving with what is known")
	case <-ctx.Done():
		return nil
	}
	ready.set()

	fronts, err := startFrontDoors(cfg, engine, reg, log)
	if err != nil {
		return err
	}
	servers = append(servers, fronts.servers...)
	bound.HTTP, bound.DNS = fronts.http, fronts.dns
	log.Info("serving", "http", bound.HTTP, "dns", bound.DNS, "admin", bound.Admin)
	if opts.onServing != nil {
		opts.onServing(bound)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case <-hup:
			if next := reload(opts.configPath, cfg, log); next != nil {
				engine.SetConfig(next)
				checker.SetTargets(probeTargets(next))
				cfg = next
			}
		}
	}
}

// reload loads the configuration again. A bad file keeps the old one serving.
func reload(path string, old *config.Config, log *slog.Logger) *config.Config {
	if path == "" {
		return nil
	}
	next, _, err := config.LoadFile(path)
	if err != nil {
		log.Error("reload failed; the previous configuration keeps serving", "error", err)
		return nil
	}
	if next.Listen != old.Listen {
		log.Warn("listen addresses changed; they take effect only after a restart")
		next.Listen = old.Listen
	}
	log.Info("configuration reloaded", "path", path)
	return next
}

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
	mu  sync.Mutex
	enc *json.Encoder
	log *slog.Logger
}

func newEventSink(w io.Writer, log *slog.Logger) *eventSink {
	s := &eventSink{log: log}
	if w != nil {
		s.enc = json.NewEncoder(w)
	}
	return s
}

func (s *eventSink) write(ev routing.Event) {
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
		ConstLabels: prometheus.Labels{"version": version},
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
