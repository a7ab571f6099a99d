// Package instance owns one running coopr-gslb: it wires config, health,
// routing, the front doors (proxy, DNS, admin) and notifications together,
// and owns their lifetime. New builds everything from a configuration without
// starting anything; Run binds every listener first (so a bind error stops the
// start before any probe or notification), then runs each component in one
// run group: every goroutine has an owner, a stop and a join, and the first
// component to fail stops the others and is Run's error.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/internal/logging"
	"github.com/coopr-gslb/coopr-gslb/notify"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/state"
)

// Options are what an Instance needs besides its configuration. The zero
// value is usable.
type Options struct {
	// ConfigPath is the file Reload reads. If empty, Reload fails with
	// ErrNoConfigFile.
	ConfigPath string
	// Logger receives the main log. If nil, Logs' logger, else slog.Default().
	Logger *slog.Logger
	// Logs, if set, is the process's logging: a reload applies the log
	// block to it, and the proxy's access log is its access logger (its own
	// file under proxy.access_log: PATH). If nil, the access log goes to
	// Logger and a reload leaves the log as it is.
	Logs *logging.Logs
	// StateLog, if set, receives every routing event as a JSON line, with
	// the sequence numbers of /api/v1/events. It is written outside the
	// routing engine's lock: a stalled writer delays only itself.
	StateLog io.Writer
	// Version is shown on the page, in the API and in build_info.
	Version string
	// Upgrader, if set, enables zero-downtime upgrades on SIGUSR2: the
	// sockets are bound through it (or taken over from the process being
	// upgraded), the instance tells it when it serves, and Run returns,
	// gracefully, once a new process serves. Nil binds sockets directly.
	Upgrader *Upgrader
}

// Addrs are the addresses the front doors actually listen on; empty for a
// front door the configuration does not enable.
type Addrs struct {
	HTTP, HTTPS, DNS, Admin string
}

// Instance is one coopr-gslb. Create it with New and run it once with Run.
type Instance struct {
	opts Options
	log  *slog.Logger
	cfg  *config.Config // as started; the reloader holds the current one

	reg          *prometheus.Registry
	tokens       admin.Tokens
	engine       *routing.Engine
	notifier     *notify.Notifier
	checker      *health.Checker
	reloads      *reloader
	drains       *drainer
	stateMetrics *admin.StateCollector
	sink         *eventSink
	cw           *clusterWire // nil without a cluster: block
	certs        *certExpiry

	ready   atomic.Bool
	serving chan struct{} // closed once every front door serves
	addrs   Addrs         // set before serving is closed
	ran     atomic.Bool
}

// New builds an instance for cfg: the engine with the saved drains, the
// checker, the notifier and the reloader. It starts no goroutine and opens
// no socket.
func New(cfg *config.Config, opts Options) (*Instance, error) {
	switch {
	case opts.Logger == nil && opts.Logs != nil:
		opts.Logger = opts.Logs.Logger()
	case opts.Logger == nil:
		opts.Logger = slog.Default()
	}
	if opts.Logs == nil {
		opts.Logs = logging.Wrap(opts.Logger)
	}
	i := &Instance{opts: opts, log: opts.Logger, cfg: cfg, serving: make(chan struct{})}
	i.reg = prometheus.NewRegistry()
	i.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(opts.Version),
	)
	tokens, err := admin.LoadTokens(cfg.Admin.TokenFile, os.Getenv(admin.TokenEnv))
	if err != nil {
		return nil, err
	}
	i.tokens = tokens
	store, err := state.Open(cfg.Admin.StateDir)
	if err != nil {
		return nil, err
	}
	saved, savedScoped, err := store.LoadDrains()
	if err != nil {
		return nil, fmt.Errorf("restoring drains: %w", err)
	}

	i.notifier = notify.New(cfg.Notify, notify.Options{Registerer: i.reg, Logger: i.log})
	i.sink = newEventSink(opts.StateLog, i.log, func(ev routing.Event) {
		i.notifier.Notify(ev)
		i.stateMetrics.RecordEvent(ev)
	})
	i.engine = routing.New(cfg, routing.Options{OnEvent: i.sink.write})
	i.stateMetrics = admin.NewStateCollector(i.engine.Snapshot)
	i.reg.MustRegister(i.stateMetrics, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "coopr_gslb", Name: "events_dropped_total",
		Help: "Routing events not logged, written to the state log or notified because the event queue was full.",
	}, func() float64 { return float64(i.engine.DroppedEvents()) }))
	// Drains are back before the first answer is served. In a cluster they
	// are the cluster's replicated drains instead (see clusterWire).
	if cfg.Cluster == nil {
		i.engine.RestoreDrains(saved)
		i.engine.RestoreScopedDrains(savedScoped)
	} else if i.cw, err = newClusterWire(cfg, i.engine, store, saved, i.log); err != nil {
		return nil, err
	}

	i.checker = health.New(probeTargets(cfg), health.Options{
		Prober: health.InstrumentProber(&health.NetProber{}, i.reg),
		OnChange: func(tr health.Transition) {
			t := tr.Status.Target
			i.engine.UpdateEndpoint(routing.EndpointUpdate{
				DC: t.DC, Service: t.Service, Endpoint: t.Endpoint,
				Up: tr.Status.Up, Reason: tr.Status.Reason, At: tr.Status.Since,
			})
			i.cw.report(tr.Status)
		},
	})
	i.drains = &drainer{engine: i.engine, store: store, log: i.log}
	certs := newCertExpiry()
	certs.load(cfg, i.log)
	i.reg.MustRegister(certs)
	i.certs = certs
	i.reloads = newReloader(opts.ConfigPath, cfg, i.log, i.reg, []applyStep{
		// The front doors read their configuration from each routing
		// snapshot, so swapping it in the engine reloads them too.
		{"routing", func(next *config.Config) { i.engine.SetConfig(next) }},
		{"log", func(next *config.Config) { i.opts.Logs.Apply(next.Log) }},
		{"certificate metrics", func(next *config.Config) { certs.load(next, i.log) }},
		{"probes", func(next *config.Config) { i.checker.SetTargets(probeTargets(next)) }},
		{"notify", func(next *config.Config) { i.notifier.SetHooks(next.Notify) }},
		{"cluster", func(next *config.Config) { i.cw.reload(next, i.checker.Statuses()) }},
	})
	return i, nil
}

// Reload reads the configuration file again and applies it; on error
// nothing changed. It is safe to call at any time, also before Run.
func (i *Instance) Reload() error { return i.reloads.Reload() }

// Serving is closed once every front door serves (after the first probe
// round); Addrs is valid from then on.
func (i *Instance) Serving() <-chan struct{} { return i.serving }

// Addrs returns the bound addresses. Call it after Serving is closed.
func (i *Instance) Addrs() Addrs {
	<-i.serving
	return i.addrs
}

// Engine returns the routing engine, for tests and embedding.
func (i *Instance) Engine() *routing.Engine { return i.engine }

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("instance: Run called twice")

// Run serves until ctx is done or a component fails: it binds every
// listener (returning the bind error before anything was announced), starts
// probing, event delivery and notifications, serves the front doors once the
// first probe round is in, reloads on SIGHUP, and shuts everything down
// gracefully at the end. Every goroutine it starts has ended when it returns.
func (i *Instance) Run(ctx context.Context) error {
	if i.ran.Swap(true) {
		return ErrRunTwice
	}
	defer i.engine.Close()
	cfg := i.reloads.currentConfig()
	timeout := cfg.Proxy.ShutdownTimeout.D()
	tuneGC()
	if i.cw != nil {
		// The gossip port is bound with the others, before anything runs.
		if err := i.cw.bind(cfg, i.reg); err != nil {
			return err
		}
		defer i.cw.close()
	}

	drain, undrain := i.drains.drain, i.drains.undrain
	if i.cw != nil {
		// Drains are replicated: given to the cluster, saved before the
		// API answers.
		drain, undrain = i.cw.drainScoped, i.cw.undrainScoped
	}
	// DNSSEC: the signer lives in the DNS server (set at bind and by each
	// reload); its close expiry is a routing event.
	alert := &expiryAlert{engine: i.engine, log: i.log}
	var dnsSrv dnsRef
	// Bind first: a busy port fails the start here, before any probe, event
	// or webhook.
	adminSrv := admin.New(admin.Options{
		DNSSEC:            func() *admin.DNSSECStatus { return dnssecStatus(dnsSrv.Load(), alert) },
		Snapshot:          i.engine.Snapshot,
		Events:            i.engine.Events,
		Probes:            i.checker.Statuses,
		Ready:             i.ready.Load,
		Gatherer:          i.reg,
		Version:           i.opts.Version,
		Drain:             drain,
		Undrain:           undrain,
		Cluster:           i.cw.statusFunc(),
		Reload:            i.reloads.Reload,
		LastReload:        i.reloads.Last,
		Tokens:            i.tokens,
		ReadRequiresToken: readsNeedToken(cfg),
	})
	var socks sockets = netSockets{}
	upgrading := false
	if u := i.opts.Upgrader; u != nil {
		socks, upgrading = upgradeSockets{u}, u.upgrading()
	}
	var (
		adminLn  net.Listener
		adminWeb *http.Server
	)
	if cfg.Listen.Admin != "" {
		ln, err := socks.listen("admin", cfg.Listen.Admin)
		if err != nil {
			return fmt.Errorf("listen.admin %s: %w", cfg.Listen.Admin, err)
		}
		srv, ln := admin.ServerOn(ln, cfg.Listen.Admin, adminSrv, admin.ListenOptionsFrom(cfg))
		srv.ErrorLog = slog.NewLogLogger(i.log.Handler(), slog.LevelWarn)
		adminLn, adminWeb = ln, srv
		i.addrs.Admin = ln.Addr().String()
	}
	// The front doors start from the configuration in effect and are
	// reloaded with it from then on: what they hold themselves, such as
	// certificates, is re-read in the reload's prepare phase.
	var fronts *frontDoors
	err := i.reloads.attach(func(current *config.Config) (func(*config.Config) error, error) {
		var err error
		fronts, err = bindFrontDoors(frontDoorDeps{
			cfg: current, snapshot: i.engine.Snapshot, reg: i.reg, log: i.log, logs: i.opts.Logs,
			// DNS answers nothing (SERVFAIL) until the first probe round is
			// in, so its first answers are already health-aware; in a
			// cluster, also once the peers' view decides every endpoint.
			dnsSnapshot: func() *routing.Snapshot {
				if !i.ready.Load() && !i.cw.dnsOpen() {
					return nil
				}
				return i.dnsEngine().Snapshot()
			},
			affinityKey:     i.cw.affinityKey(current),
			dnsCookieSecret: i.cw.dnsCookieSecret(),
			// What the proxy learns from failed requests reaches the shared
			// health view, so DNS moves as fast as the proxy; active probes
			// confirm it.
			passive: func(dc, service, endpoint string, failure bool, reason string) {
				i.checker.ReportPassive(routing.EndpointID{DC: dc, Service: service, Endpoint: endpoint}.String(), failure, reason)
			},
			sockets:    socks,
			deferDNS:   upgrading,
			onExpiring: alert.fire,
		})
		if err != nil {
			return nil, err
		}
		return fronts.prepareReload, nil
	})
	if err != nil {
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	i.addrs.HTTP, i.addrs.HTTPS, i.addrs.DNS = fronts.http, fronts.https, fronts.dns
	if fronts.tls != nil {
		i.certs.watchACME(i.cfg.TLS.ACME, fronts.tls.Names)
	}
	dnsSrv.Store(fronts.dnsServer)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	// The context: Run's caller stops everything by cancelling it.
	g.Add(func() error { <-rctx.Done(); return nil }, func(error) {
		cancel()
		if u := i.opts.Upgrader; u != nil {
			// First of all: tableflip holds a copy of every socket, for
			// the next upgrade. Unless one has taken them over already,
			// they must close with ours, or a closed listener would
			// still accept connections that nobody serves.
			u.Stop()
		}
	})
	// Events leave the engine's lock through its queue: logging, the state
	// log, metrics and notifications consume them here.
	g.Add(func() error { return i.engine.Deliver(rctx) }, func(error) { cancel() })
	// DNS builds its view of each snapshot as it is published, off the
	// query path.
	if fronts.dnsServer != nil {
		g.Add(func() error {
			i.dnsEngine().Watch(rctx, func(s *routing.Snapshot) {
				if i.ready.Load() || i.cw.dnsOpen() {
					fronts.dnsServer.Prepare(s)
				}
			})
			return nil
		}, func(error) { cancel() })
	}
	// The proxy too builds its view of each snapshot as it is published.
	if fronts.px != nil {
		g.Add(func() error {
			i.engine.Watch(rctx, fronts.px.Prepare)
			return nil
		}, func(error) { cancel() })
	}
	if fronts.dnsServer != nil {
		// DNSSEC signatures are refreshed well before they expire.
		g.Add(func() error { maintainSigner(rctx, fronts.dnsServer, alert, signerRefresh, i.log); return nil }, func(error) { cancel() })
	}
	g.Add(func() error { i.checker.Run(rctx); return nil }, func(error) { cancel() })
	if i.cw != nil {
		g.Add(func() error { return i.cw.run(rctx) }, func(error) { cancel() })
	}
	g.Add(func() error { i.notifier.Run(rctx); return nil }, func(error) { cancel() })
	if adminLn != nil {
		srv := adminWeb
		g.Add(func() error {
			if upgrading {
				// The old process answers the admin API (and takes its
				// drains) until this one serves.
				select {
				case <-i.serving:
				case <-rctx.Done():
					adminLn.Close()
					return nil
				}
			}
			if err := srv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin server: %w", err)
			}
			return nil
		}, func(error) {
			sctx, scancel := context.WithTimeout(context.Background(), timeout)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil {
				i.log.Warn("shutdown", "server", "admin", "error", err)
			}
		})
	}
	if fronts.tls != nil {
		g.Add(func() error {
			// Certificates for configured names are obtained (and renewed)
			// in the background; the listeners are already up for the ACME
			// challenges. A failure is logged, not fatal: certificates
			// already held keep serving.
			if err := fronts.tls.Manage(rctx, false); err != nil {
				i.log.Error("TLS certificates", "error", err)
			}
			<-rctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	// The front doors answer only once every endpoint has its first result.
	g.Add(func() error {
		select {
		case <-i.checker.Ready():
		case <-time.After(firstRoundLimit(cfg)):
			i.log.Warn("first probe round did not finish in time; serving with what is known")
		case <-rctx.Done():
			return nil
		}
		i.ready.Store(true)
		if fronts.dnsServer != nil {
			fronts.dnsServer.Prepare(i.dnsEngine().Snapshot())
			if upgrading {
				if err := fronts.startDNS(cfg); err != nil {
					return err
				}
				i.addrs.DNS = fronts.dns
			}
		}
		i.log.Info("serving", "http", i.addrs.HTTP, "https", i.addrs.HTTPS, "dns", i.addrs.DNS, "admin", i.addrs.Admin, "pid", os.Getpid())
		close(i.serving)
		return fronts.serve(rctx, func() {
			if u := i.opts.Upgrader; u != nil {
				// Only now may the old process stop: this one answers.
				if err := u.ready(); err != nil {
					i.log.Error("upgrade: telling the old process", "error", err)
				}
			}
		})
	}, func(error) {
		cancel()
		fronts.shutdown(timeout, i.log)
	})
	// SIGHUP reloads.
	g.Add(func() error {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-rctx.Done():
				return nil
			case <-hup:
				_ = i.Reload()
			}
		}
	}, func(error) { cancel() })

	if u := i.opts.Upgrader; u != nil {
		// SIGUSR2 upgrades; once the new process serves, this one stops
		// accepting, finishes its in-flight requests and returns.
		g.Add(func() error {
			usr2 := make(chan os.Signal, 1)
			signal.Notify(usr2, syscall.SIGUSR2)
			defer signal.Stop(usr2)
			for {
				select {
				case <-rctx.Done():
					return nil
				case <-u.exit():
					i.log.Info("upgrade: the new process serves; finishing in-flight requests")
					return nil
				case <-usr2:
					i.log.Info("upgrade: starting the new process")
					if err := u.upgrade(); err != nil {
						i.log.Error("upgrade failed; this process keeps serving", "error", err)
					}
				}
			}
		}, func(error) {
			// The context's interrupt has stopped the upgrader: no upgrade
			// starts, and one under way is abandoned (its new process
			// killed), so that this returns.
			cancel()
		})
	}

	err = g.Run()
	i.log.Info("shut down")
	return err
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
	log    *slog.Logger
}

func (d *drainer) drain(scope routing.DrainScope, dr routing.Drain) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.engine.DrainScoped(scope, dr); err != nil {
		return err
	}
	return d.save("drain", scope)
}

func (d *drainer) undrain(scope routing.DrainScope, by string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.engine.UndrainScoped(scope, by); err != nil {
		return err
	}
	return d.save("undrain", scope)
}

// save writes the drains in effect. Its error is logged and returned at
// once; the change itself stays in effect (and is one event) either way.
func (d *drainer) save(what string, scope routing.DrainScope) error {
	snap := d.engine.Snapshot()
	if err := d.store.SaveDrains(snap.Drains, snap.ScopedDrains); err != nil {
		d.log.Error("the "+what+" is in effect but could not be saved for a restart", "dc", scope.DC, "service", scope.Service, "endpoint", scope.Endpoint, "error", err)
		return fmt.Errorf("the %s of %s is in effect but could not be saved for a restart: %w", what, scope, err)
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
