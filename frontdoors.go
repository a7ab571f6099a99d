package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnsserver"
	"github.com/coopr-gslb/coopr-gslb/proxy"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// frontDoors are the running HTTP proxy and DNS responder.
type frontDoors struct {
	servers          []*managedServer
	http, https, dns string
	tls              *proxy.TLS // nil without listen.https
}

// reload applies what of next the front doors hold themselves rather than
// read from the routing snapshot: the TLS listener's certificates. On error
// nothing changed. It is a reloader's prepare step.
func (f *frontDoors) reload(next *config.Config) error {
	if f.tls == nil {
		return nil
	}
	return f.tls.Reload(next)
}

// frontDoorDeps are what the front doors read and report to.
type frontDoorDeps struct {
	cfg      *config.Config
	snapshot func() *routing.Snapshot
	reg      prometheus.Registerer
	log      *slog.Logger
	// passive receives the proxy's passive health signals.
	passive func(dc, service, endpoint string, failure bool, reason string)
}

// startFrontDoors starts the proxy (plain and TLS) and the DNS responder the
// config enables. On error, what was started is stopped again.
func startFrontDoors(d frontDoorDeps) (f *frontDoors, err error) {
	f = &frontDoors{}
	defer func() {
		if err != nil {
			shutdownAll(f.servers, d.cfg.Proxy.ShutdownTimeout.D(), d.log)
		}
	}()
	cfg := d.cfg
	if cfg.Listen.DNS != "" {
		dns, err := dnsserver.New(dnsserver.Options{Addr: cfg.Listen.DNS, Snapshot: d.snapshot, Registerer: d.reg, Logger: d.log})
		if err != nil {
			return f, err
		}
		if err := dns.Start(); err != nil {
			return f, fmt.Errorf("listen.dns %s: %w", cfg.Listen.DNS, err)
		}
		f.dns = dns.Addr()
		f.servers = append(f.servers, &managedServer{name: "dns", addr: f.dns, shutdown: dns.Shutdown})
	}
	if cfg.Listen.HTTP == "" && cfg.Listen.HTTPS == "" {
		return f, nil
	}

	key, err := proxy.LoadAffinityKey(cfg.Proxy.AffinityKeyFile, cfg.Admin.StateDir)
	if err != nil {
		return f, err
	}
	// The proxy checks proxy.access_log per request, so a reload can turn it
	// on or off; it always gets the logger.
	accessLog := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	px, err := proxy.New(proxy.Options{Snapshot: d.snapshot, Registerer: d.reg, Logger: accessLog, ReportPassive: d.passive, AffinityKey: key, Events: d.log})
	if err != nil {
		return f, err
	}
	var httpLn, httpsLn net.Listener
	if cfg.Listen.HTTP != "" {
		if httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			px.Close()
			return f, fmt.Errorf("listen.http %s: %w", cfg.Listen.HTTP, err)
		}
		f.http = httpLn.Addr().String()
		httpLn = px.Listener(httpLn, "http")
	}
	if cfg.Listen.HTTPS != "" {
		if httpsLn, err = net.Listen("tcp", cfg.Listen.HTTPS); err != nil {
			if httpLn != nil {
				httpLn.Close()
			}
			px.Close()
			return f, fmt.Errorf("listen.https %s: %w", cfg.Listen.HTTPS, err)
		}
		f.https = httpsLn.Addr().String()
		httpsLn = px.Listener(httpsLn, "https")
	}

	var servers []proxy.GracefulServer
	if httpsLn != nil {
		tlsCfg, err := proxy.NewTLS(cfg, proxy.TLSOptions{HTTPAddr: f.http, HTTPSAddr: f.https, Snapshot: d.snapshot, Logger: d.log})
		if err != nil {
			httpsLn.Close()
			if httpLn != nil {
				httpLn.Close()
			}
			px.Close()
			return f, err
		}
		f.tls = tlsCfg
		srv := px.TLSServer(f.https, tlsCfg)
		srv.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
		servers = append(servers, srv)
		// Certificates for configured names are obtained (and renewed) in the
		// background; the listeners are already up for the ACME challenges.
		manageCtx, stopManaging := context.WithCancel(context.Background())
		go func() {
			if err := tlsCfg.Manage(manageCtx, false); err != nil {
				d.log.Error("TLS certificates", "error", err)
			}
		}()
		f.servers = append(f.servers, &managedServer{name: "tls", addr: f.https, shutdown: func(context.Context) error {
			stopManaging()
			tlsCfg.Close()
			return nil
		}})
		go serveLogged(d.log, "https", func() error { return srv.ServeTLS(httpsLn, "", "") })
		if httpLn != nil {
			plain := px.PlainServer()
			plain.Handler = tlsCfg.HTTPHandler(px)
			plain.ErrorLog = srv.ErrorLog
			servers = append(servers, plain)
			go serveLogged(d.log, "http", func() error { return plain.Serve(httpLn) })
		}
	} else {
		plain := px.PlainServer()
		plain.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
		servers = append(servers, plain)
		go serveLogged(d.log, "http", func() error { return plain.Serve(httpLn) })
	}
	f.servers = append(f.servers, &managedServer{name: "proxy", addr: f.http, shutdown: func(ctx context.Context) error {
		err := px.Shutdown(ctx, servers...)
		px.Close()
		return err
	}})
	return f, nil
}

func serveLogged(log *slog.Logger, name string, serve func() error) {
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("server stopped", "server", name, "error", err)
	}
}
