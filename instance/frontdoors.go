package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/dnsserver"
	"github.com/coopr-gslb/coopr-gslb/internal/logging"
	"github.com/coopr-gslb/coopr-gslb/proxy"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// frontDoors are the bound HTTP proxy and DNS responder. bindFrontDoors
// opens every socket; serve runs the HTTP serve loops until shutdown.
type frontDoors struct {
	http, https, dns string

	dnsServer *dnsserver.Server // nil without listen.dns
	// dnssecMetrics and onExpiring go to every signer a reload builds.
	dnssecMetrics *dnssec.Metrics
	onExpiring    func(time.Time)
	tls           *proxy.TLS    // nil without listen.https
	px            *proxy.Proxy  // nil without listen.http and listen.https
	logs          *logging.Logs // holds the access log's file

	// loops are the HTTP servers' serve loops, started by serve; servers
	// are what shutdown stops; lns are the bound listeners.
	loops   []func() error
	servers []proxy.GracefulServer
	lns     []net.Listener

	mu      sync.Mutex // orders serve and shutdown
	stopped bool
	wg      sync.WaitGroup // the serve loops

	shutdownOnce sync.Once
}

// prepareReload applies what of next the front doors hold themselves rather
// than read from the routing snapshot: the TLS listener's certificates. On
// error nothing changed. It is a reload's prepare step.
func (f *frontDoors) prepareReload(next *config.Config) error {
	// The DNSSEC keys are read again: a bad key file fails the reload
	// before anything changed.
	var sg *dnssec.Signer
	if f.dnsServer != nil {
		var err error
		if sg, err = LoadSigner(next, f.dnssecMetrics, f.onExpiring); err != nil {
			return err
		}
	}
	commit, cancel := func() {}, func() {}
	if f.px != nil {
		var err error
		if commit, cancel, err = f.logs.PrepareAccessFile(next.Proxy.AccessLogFile); err != nil {
			return err
		}
	}
	if f.tls != nil {
		if err := f.tls.Reload(next); err != nil {
			cancel()
			return err
		}
	}
	commit()
	if f.dnsServer != nil {
		f.dnsServer.SetSigner(sg)
	}
	return nil
}

// frontDoorDeps are what the front doors read and report to.
type frontDoorDeps struct {
	cfg      *config.Config
	snapshot func() *routing.Snapshot
	// dnsSnapshot is what DNS answers from: nil (SERVFAIL) until serving.
	dnsSnapshot func() *routing.Snapshot
	reg         prometheus.Registerer
	log         *slog.Logger
	// affinityKey, if set, signs affinity cookies (the cluster's shared
	// key); else proxy.affinity_key_file or admin.state_dir decide.
	affinityKey []byte
	// dnsCookieSecret, if set, is the DNS server-cookie secret (the
	// cluster's shared one), so a resolver's cookies verify on every member.
	dnsCookieSecret []byte
	// logs gives the access log (see logging.Logs.AccessLogger).
	logs *logging.Logs
	// passive receives the proxy's passive health signals.
	passive func(dc, service, endpoint string, failure bool, reason string)
	// sockets opens the listening sockets.
	sockets sockets
	// deferDNS leaves the DNS sockets unread until startDNS: in an
	// upgrade, the old process answers on them until this one serves.
	deferDNS bool
	// onExpiring is called when the earliest DNSSEC signature expires
	// soon (dnssec.Options.OnExpiryClose). May be nil.
	onExpiring func(time.Time)
}

// startDNS starts the DNS responder: from then on it reads its sockets.
func (f *frontDoors) startDNS(cfg *config.Config) error {
	if err := f.dnsServer.Start(); err != nil {
		return fmt.Errorf("listen.dns %s: %w", cfg.Listen.DNS, err)
	}
	f.dns = f.dnsServer.Addr()
	return nil
}

// bindFrontDoors binds the proxy's listeners (plain and TLS) and the DNS
// responder the config enables. The listen addresses come from the filled
// configuration; nothing here repeats a default. On error, what was bound
// is closed again.
func bindFrontDoors(d frontDoorDeps) (f *frontDoors, err error) {
	f = &frontDoors{}
	defer func() {
		if err != nil {
			f.shutdown(d.cfg.Proxy.ShutdownTimeout.D(), d.log)
		}
	}()
	cfg := d.cfg
	if cfg.Listen.DNS != "" {
		dns, err := dnsserver.New(dnsserver.Options{Addr: cfg.Listen.DNS, Snapshot: d.dnsSnapshot, Registerer: d.reg, Logger: d.log, Sockets: dnsSockets{d.sockets}})
		if err != nil {
			return f, err
		}
		f.dnsServer = dns
		if f.dnssecMetrics, err = dnssec.NewMetrics(d.reg); err != nil {
			return f, err
		}
		f.onExpiring = d.onExpiring
		sg, err := LoadSigner(cfg, f.dnssecMetrics, f.onExpiring)
		if err != nil {
			return f, err
		}
		dns.SetSigner(sg)
		if d.dnsCookieSecret != nil {
			dns.SetCookieSecret(d.dnsCookieSecret)
		}
		if !d.deferDNS {
			if err := f.startDNS(cfg); err != nil {
				return f, err
			}
		}
	}
	if cfg.Listen.HTTP == "" && cfg.Listen.HTTPS == "" {
		return f, nil
	}
	var httpLn, httpsLn net.Listener
	if cfg.Listen.HTTP != "" {
		if httpLn, err = d.sockets.listen("http", cfg.Listen.HTTP); err != nil {
			return f, fmt.Errorf("listen.http %s: %w", cfg.Listen.HTTP, err)
		}
		f.lns = append(f.lns, httpLn)
		f.http = httpLn.Addr().String()
	}
	if cfg.Listen.HTTPS != "" {
		if httpsLn, err = d.sockets.listen("https", cfg.Listen.HTTPS); err != nil {
			return f, fmt.Errorf("listen.https %s: %w", cfg.Listen.HTTPS, err)
		}
		f.lns = append(f.lns, httpsLn)
		f.https = httpsLn.Addr().String()
	}

	key := d.affinityKey
	if key == nil {
		if key, err = proxy.LoadAffinityKey(cfg.Proxy.AffinityKeyFile, cfg.Admin.StateDir); err != nil {
			return f, err
		}
	}
	// The proxy checks proxy.access_log per request, so a reload can turn it
	// on or off; it always gets the access logger, which a reload points at
	// another file or back at the main log.
	commit, _, err := d.logs.PrepareAccessFile(cfg.Proxy.AccessLogFile)
	if err != nil {
		return f, err
	}
	commit()
	f.logs = d.logs
	px, err := proxy.New(proxy.Options{Snapshot: d.snapshot, Registerer: d.reg, Logger: d.logs.AccessLogger(), ReportPassive: d.passive, AffinityKey: key, Events: d.log})
	if err != nil {
		return f, err
	}
	f.px = px
	// The proxy counts and caps client connections per listener
	// (proxy.max_connections).
	if httpLn != nil {
		httpLn = px.Listener(httpLn, "http")
	}
	if httpsLn != nil {
		httpsLn = px.Listener(httpsLn, "https")
	}
	errorLog := slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
	if httpsLn != nil {
		tlsCfg, err := proxy.NewTLS(cfg, proxy.TLSOptions{HTTPAddr: f.http, HTTPSAddr: f.https, Snapshot: d.snapshot, Logger: d.log})
		if err != nil {
			return f, err
		}
		f.tls = tlsCfg
		srv := px.TLSServer(f.https, tlsCfg)
		srv.ErrorLog = errorLog
		f.servers = append(f.servers, srv)
		f.loops = append(f.loops, named("https", func() error { return srv.ServeTLS(httpsLn, "", "") }))
		if httpLn != nil {
			plain := px.PlainServer()
			plain.Handler = tlsCfg.HTTPHandler(px)
			plain.ErrorLog = errorLog
			f.servers = append(f.servers, plain)
			f.loops = append(f.loops, named("http", func() error { return plain.Serve(httpLn) }))
		}
	} else {
		plain := px.PlainServer()
		plain.ErrorLog = errorLog
		f.servers = append(f.servers, plain)
		f.loops = append(f.loops, named("http", func() error { return plain.Serve(httpLn) }))
	}
	return f, nil
}

// named wraps a serve loop so that its error names the server, and a
// graceful close is no error.
func named(name string, serve func() error) func() error {
	return func() error {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s server: %w", name, err)
		}
		return nil
	}
}

// serve runs every HTTP serve loop until shutdown, calling started once
// they run. It returns when ctx is done and every loop has ended, or at once
// with the first loop's error (the caller then calls shutdown, which joins
// the other loops). After shutdown it starts nothing.
func (f *frontDoors) serve(ctx context.Context, started func()) error {
	errs := make(chan error, len(f.loops))
	f.mu.Lock()
	if !f.stopped {
		for _, loop := range f.loops {
			f.wg.Go(func() { errs <- loop() })
		}
	}
	f.mu.Unlock()
	started()
	for {
		select {
		case err := <-errs:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// shutdown stops every front door gracefully within timeout. It is safe to
// call more than once and before serve.
func (f *frontDoors) shutdown(timeout time.Duration, log *slog.Logger) {
	f.shutdownOnce.Do(func() {
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var wg sync.WaitGroup
		if f.dnsServer != nil {
			wg.Go(func() {
				if err := f.dnsServer.Shutdown(ctx); err != nil {
					log.Warn("shutdown", "server", "dns", "error", err)
				}
			})
		}
		if f.px != nil {
			wg.Go(func() {
				if err := f.px.Shutdown(ctx, f.servers...); err != nil {
					log.Warn("shutdown", "server", "proxy", "error", err)
				}
				f.px.Close()
			})
		}
		wg.Wait()
		f.wg.Wait()
		// Listeners never served are still open.
		for _, ln := range f.lns {
			ln.Close()
		}
		if f.tls != nil {
			f.tls.Close()
		}
		if f.logs != nil {
			f.logs.Close()
		}
	})
}
