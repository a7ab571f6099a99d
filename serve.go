package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/notify"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/state"
)

// serve runs coopr-gslb until ctx is done: saved drains and probes first,
// front doors once the first probe round is in, reload on SIGHUP or the API,
// graceful shutdown at the end.
func serve(ctx context.Context, cfg *config.Config, opts runOptions) error {
	log := opts.logger
	tuneGC()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)

	tokens, err := admin.LoadTokens(cfg.Admin.TokenFile, os.Getenv(admin.TokenEnv))
	if err != nil {
		return err
	}
	store, err := state.Open(cfg.Admin.StateDir)
	if err != nil {
		return err
	}
	saved, err := store.LoadDrains()
	if err != nil {
		return fmt.Errorf("restoring drains: %w", err)
	}

	notifier := notify.New(cfg.Notify, notify.Options{Registerer: reg, Logger: log})
	var stateMetrics *admin.StateCollector
	events := newEventSink(opts.stateLog, log, func(ev routing.Event) {
		notifier.Notify(ev)
		if stateMetrics != nil {
			stateMetrics.RecordEvent(ev)
		}
	})
	engine := routing.New(cfg, routing.Options{OnEvent: events.write})
	defer engine.Close()
	stateMetrics = admin.NewStateCollector(engine.Snapshot)
	reg.MustRegister(stateMetrics)
	// Drains are back before the first answer is served.
	engine.RestoreDrains(saved)

	checker := health.New(probeTargets(cfg), health.Options{
		Prober: health.InstrumentProber(&health.NetProber{}, reg),
		OnChange: func(tr health.Transition) {
			t := tr.Status.Target
			engine.UpdateEndpoint(routing.EndpointUpdate{
				DC: t.DC, Service: t.Service, Endpoint: t.Endpoint,
				Up: tr.Status.Up, Reason: tr.Status.Reason, At: tr.Status.Since,
			})
		},
	})

	var wg sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer func() {
		stopBackground()
		wg.Wait()
	}()
	wg.Go(func() { checker.Run(bgCtx) })
	wg.Go(func() { notifier.Run(bgCtx) })

	// The front doors read their configuration from each routing snapshot,
	// so swapping it in the engine reloads them too.
	reloads := newReloader(opts.configPath, cfg, func(next *config.Config) {
		engine.SetConfig(next)
		checker.SetTargets(probeTargets(next))
		notifier.SetHooks(next.Notify)
	}, log, reg)

	drains := &drainer{engine: engine, store: store}
	var ready readyFlag
	adminSrv := admin.New(admin.Options{
		Snapshot:          engine.Snapshot,
		Events:            engine.Events,
		Probes:            checker.Statuses,
		Ready:             ready.get,
		Gatherer:          reg,
		Version:           version,
		Drain:             drains.drain,
		Undrain:           drains.undrain,
		Reload:            reloads.Reload,
		LastReload:        reloads.Last,
		Tokens:            tokens,
		ReadRequiresToken: readsNeedToken(cfg),
	})

	var servers []*managedServer
	defer func() {
		shutdownAll(servers, cfg.Proxy.ShutdownTimeout.D(), log)
	}()
	var bound boundAddrs
	if cfg.Listen.Admin != "" {
		s, err := listenAdmin(cfg, adminSrv)
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

	// The front doors start from the configuration in effect (a reload may
	// have come during the first round) and are reloaded with it from then
	// on: what they hold themselves, such as certificates, is re-read before
	// a new configuration is applied.
	var fronts *frontDoors
	err = reloads.attach(func(current *config.Config) (func(*config.Config) error, error) {
		var err error
		fronts, err = startFrontDoors(frontDoorDeps{
			cfg: current, snapshot: engine.Snapshot, reg: reg, log: log,
			// What the proxy learns from failed requests reaches the shared health
			// view, so DNS moves as fast as the proxy; active probes confirm it.
			passive: func(dc, service, endpoint string, failure bool, reason string) {
				checker.ReportPassive(dc+"/"+service+"/"+endpoint, failure, reason)
			},
		})
		if err != nil {
			return nil, err
		}
		return fronts.reload, nil
	})
	if err != nil {
		return err
	}
	servers = append(servers, fronts.servers...)
	// Ready only once the front doors listen: a load balancer or a test
	// that waits for /readyz may send traffic at once.
	ready.set()
	bound.HTTP, bound.HTTPS, bound.DNS = fronts.http, fronts.https, fronts.dns
	log.Info("serving", "http", bound.HTTP, "https", bound.HTTPS, "dns", bound.DNS, "admin", bound.Admin)
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
			_ = reloads.Reload()
		}
	}
}

// readsNeedToken applies admin.read_requires_token, whose default is no on a
// loopback admin listener and yes elsewhere.
func readsNeedToken(cfg *config.Config) bool {
	if v := cfg.Admin.ReadRequiresToken; v != nil {
		return *v
	}
	host, _, _ := net.SplitHostPort(cfg.Listen.Admin)
	if host == "localhost" {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// drainer applies drains and keeps them in the state directory, so a restart
// forgets nothing. The mutex keeps the saved file in step with the engine.
type drainer struct {
	mu     sync.Mutex
	engine *routing.Engine
	store  *state.Store
}

func (d *drainer) drain(dc string, dr routing.Drain) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.engine.Drain(dc, dr); err != nil {
		return err
	}
	return d.save()
}

func (d *drainer) undrain(dc, by string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.engine.Undrain(dc, by); err != nil {
		return err
	}
	return d.save()
}

func (d *drainer) save() error {
	if err := d.store.SaveDrains(d.engine.Snapshot().Drains); err != nil {
		return fmt.Errorf("the drain is in effect but could not be saved for a restart: %w", err)
	}
	return nil
}

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The live heap of a GSLB is a few MiB, so with Go's default of 100 the
// collector runs many times a second under load and took ~5% of the proxy's
// CPU; 400 trades a few MiB of memory for most of that.
const defaultGCPercent = 400

// tuneGC sets the collector's target, leaving an operator's GOGC alone.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
