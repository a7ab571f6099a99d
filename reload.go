package main

import (
	"errors"
	"log/slog"
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
	st := admin.ReloadStatus{Time: time.Now(), OK: err == nil}
	if err != nil {
		st.Error = err.Error()
		r.last = st
		r.total.WithLabelValues("failed").Inc()
		r.success.Set(0)
		r.log.Error("reload failed; the previous configuration keeps serving", "error", err)
		return err
	}
	st.NeedsRestart = restartOnly(r.current, next)
	if len(st.NeedsRestart) > 0 {
		r.log.Warn("changed keys take effect only after a restart", "keys", st.NeedsRestart)
		next.Listen = r.current.Listen
	}
	r.apply(next)
	r.current = next
	r.last = st
	r.total.WithLabelValues("ok").Inc()
	r.success.Set(1)
	r.log.Info("configuration reloaded", "path", r.path)
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
	} {
		if f.old != f.next {
			keys = append(keys, f.key)
		}
	}
	return keys
}
