package main

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
)

// reloader loads the configuration file again on SIGHUP or POST
// /api/v1/reload. A bad file changes nothing: the old configuration keeps
// serving and the error shows in the API, the page and a metric.
type reloader struct {
	path  string
	apply func(*config.Config)
	log   *slog.Logger

	mu      sync.Mutex
	current *config.Config
	last    admin.ReloadStatus
	// prepare, if set (see attach), runs on a valid new configuration before
	// apply; its error fails the reload like a bad file. It must either
	// complete or change nothing: reading certificate files, which can fail,
	// belongs here, while apply cannot fail.
	prepare func(*config.Config) error

	total   *prometheus.CounterVec
	success prometheus.Gauge
}

func newReloader(path string, current *config.Config, apply func(*config.Config), log *slog.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{
		path: path, current: current, apply: apply, log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Name: "config_reloads_total", Help: "Configuration reloads by result (ok, failed).",
		}, []string{"result"}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coopr_gslb", Name: "config_last_reload_successful", Help: "1 if the last configuration reload succeeded (or none happened), else 0.",
		}),
	}
	r.success.Set(1)
	r.total.WithLabelValues("ok")
	r.total.WithLabelValues("failed")
	reg.MustRegister(r.total, r.success)
	return r
}

var errNoConfigFile = errors.New("no configuration file to reload")

// Reload validates the file and, if it is good, swaps it in.
func (r *reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.path == "" {
		return errNoConfigFile
	}
	next, _, err := config.LoadFile(r.path)
	if err != nil {
		return r.fail(err)
	}
	needsRestart := restartOnly(r.current, next)
	if len(needsRestart) > 0 {
		r.log.Warn("changed keys take effect only after a restart", "keys", needsRestart)
		keepRunning(r.current, next)
	}
	if r.prepare != nil {
		if err := r.prepare(next); err != nil {
			return r.fail(err)
		}
	}
	r.apply(next)
	r.current = next
	r.last = admin.ReloadStatus{Time: time.Now(), OK: true, NeedsRestart: needsRestart}
	r.total.WithLabelValues("ok").Inc()
	r.success.Set(1)
	r.log.Info("configuration reloaded", "path", r.path)
	return nil
}

// fail records a reload that changed nothing. The caller holds r.mu.
func (r *reloader) fail(err error) error {
	r.last = admin.ReloadStatus{Time: time.Now(), Error: err.Error()}
	r.total.WithLabelValues("failed").Inc()
	r.success.Set(0)
	r.log.Error("reload failed; the previous configuration keeps serving", "error", err)
	return err
}

// attach calls start with the current configuration while no reload can run,
// and makes the step start returns the prepare step of every later reload.
// Holding the lock across both closes the gap in which a reload could land
// after start read the configuration but before its step was in place.
func (r *reloader) attach(start func(current *config.Config) (prepare func(*config.Config) error, err error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prepare, err := start(r.current)
	if err != nil {
		return err
	}
	r.prepare = prepare
	return nil
}

// Last returns the outcome of the last reload.
func (r *reloader) Last() admin.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// restartOnly lists the keys whose change a reload cannot apply.
func restartOnly(old, next *config.Config) []string {
	var keys []string
	for _, f := range []struct {
		key       string
		old, next string
	}{
		{"listen.http", old.Listen.HTTP, next.Listen.HTTP},
		{"listen.https", old.Listen.HTTPS, next.Listen.HTTPS},
		{"listen.dns", old.Listen.DNS, next.Listen.DNS},
		{"listen.admin", old.Listen.Admin, next.Listen.Admin},
		{"admin.state_dir", old.Admin.StateDir, next.Admin.StateDir},
		{"admin.token_file", old.Admin.TokenFile, next.Admin.TokenFile},
		// The proxy's listeners and upstream pools take these at start.
		{"proxy.idle_timeout", old.Proxy.IdleTimeout.String(), next.Proxy.IdleTimeout.String()},
		{"proxy.read_header_timeout", old.Proxy.ReadHeaderTimeout.String(), next.Proxy.ReadHeaderTimeout.String()},
		{"proxy.max_header_bytes", strconv.Itoa(old.Proxy.MaxHeaderBytes), strconv.Itoa(next.Proxy.MaxHeaderBytes)},
		{"proxy.shutdown_timeout", old.Proxy.ShutdownTimeout.String(), next.Proxy.ShutdownTimeout.String()},
		{"proxy.max_response_header_bytes", strconv.FormatInt(old.Proxy.MaxResponseHeaderBytes, 10), strconv.FormatInt(next.Proxy.MaxResponseHeaderBytes, 10)},
	} {
		if f.old != f.next {
			keys = append(keys, f.key)
		}
	}
	// The ACME client (its account, CA and storage) is built once, at start.
	oa, na := old.TLS.ACME, next.TLS.ACME
	switch {
	case (oa == nil) != (na == nil):
		keys = append(keys, "tls.acme")
	case oa != nil:
		for _, f := range []struct {
			key     string
			changed bool
		}{
			{"tls.acme.ca", oa.CA != na.CA},
			{"tls.acme.ca_root", oa.CARoot != na.CARoot},
			{"tls.acme.email", oa.Email != na.Email},
			{"tls.acme.storage", oa.Storage != na.Storage},
			{"tls.acme.on_demand", oa.OnDemand != na.OnDemand},
		} {
			if f.changed {
				keys = append(keys, f.key)
			}
		}
	}
	return keys
}

// keepRunning puts back into next what keeps running until a restart, so
// that the configuration in effect says what actually serves, and the next
// reload reports the keys again until the restart.
func keepRunning(old, next *config.Config) {
	if old.Listen.HTTPS != "" && next.Listen.HTTPS == "" {
		// The file turns TLS off; until a restart the TLS listener keeps
		// the certificates it has, which the file may no longer list.
		next.TLS = old.TLS
	}
	next.Listen = old.Listen
	next.TLS.ACME = old.TLS.ACME
	next.Proxy.IdleTimeout = old.Proxy.IdleTimeout
	next.Proxy.ReadHeaderTimeout = old.Proxy.ReadHeaderTimeout
	next.Proxy.MaxHeaderBytes = old.Proxy.MaxHeaderBytes
	next.Proxy.ShutdownTimeout = old.Proxy.ShutdownTimeout
}
