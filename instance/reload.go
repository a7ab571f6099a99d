package instance

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
)

// reloader loads the configuration file again on SIGHUP or POST
// /api/v1/reload. A reload is an ordered list of named steps: prepare steps,
// which may fail and then leave everything as it was (load and validate the
// file, keep what only a restart can change, read certificates), then apply
// steps, which cannot fail (swap the routing configuration, the probe
// targets, the webhooks). A bad file changes nothing: the old configuration
// keeps serving and the error shows in the API, the page and a metric.
type reloader struct {
	path  string
	log   *slog.Logger
	apply []applyStep

	mu      sync.Mutex
	current *config.Config // the running values, including restart-only keys
	last    admin.ReloadStatus
	// frontDoors, if set (see attach), is the front doors' prepare step:
	// reading certificate files, which can fail. It must either complete or
	// change nothing.
	frontDoors func(*config.Config) error

	total   *prometheus.CounterVec
	success prometheus.Gauge
}

// applyStep is one named step of a reload's apply phase. It cannot fail.
type applyStep struct {
	name string
	run  func(next *config.Config)
}

// prepareStep is one named step of a reload's prepare phase. It may fail;
// then nothing was applied.
type prepareStep struct {
	name string
	run  func(next *config.Config) error
}

func newReloader(path string, current *config.Config, log *slog.Logger, reg prometheus.Registerer, apply []applyStep) *reloader {
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

// ErrNoConfigFile is Reload's error for an instance without a file.
var ErrNoConfigFile = errors.New("no configuration file to reload")

// Reload runs the prepare steps on the file and, if they all succeed, the
// apply steps.
func (r *reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.path == "" {
		return ErrNoConfigFile
	}
	var next *config.Config
	var needsRestart []string
	prepare := []prepareStep{
		{"load", func(*config.Config) error {
			var err error
			next, _, err = config.LoadFile(r.path)
			return err
		}},
		{"restart-only keys", func(*config.Config) error {
			needsRestart = keepRestartOnly(r.current, next)
			return nil
		}},
		{"front doors", func(next *config.Config) error {
			if r.frontDoors == nil {
				return nil
			}
			return r.frontDoors(next)
		}},
	}
	for _, st := range prepare {
		if err := st.run(next); err != nil {
			return r.fail(st.name, err)
		}
	}
	if len(needsRestart) > 0 {
		r.log.Warn("changed keys take effect only after a restart", "keys", needsRestart)
	}
	for _, st := range r.apply {
		st.run(next)
		r.log.Debug("reload step applied", "step", st.name)
	}
	r.current = next
	r.last = admin.ReloadStatus{Time: time.Now(), OK: true, NeedsRestart: needsRestart}
	r.total.WithLabelValues("ok").Inc()
	r.success.Set(1)
	r.log.Info("configuration reloaded", "path", r.path)
	return nil
}

// fail records a reload that changed nothing. The caller holds r.mu.
func (r *reloader) fail(step string, err error) error {
	r.last = admin.ReloadStatus{Time: time.Now(), Error: err.Error()}
	r.total.WithLabelValues("failed").Inc()
	r.success.Set(0)
	r.log.Error("reload failed; the previous configuration keeps serving", "step", step, "error", err)
	return err
}

// attach calls start with the current configuration while no reload can run,
// and makes the step start returns the front doors' prepare step of every
// later reload. Holding the lock across both closes the gap in which a
// reload could land after start read the configuration but before its step
// was in place.
func (r *reloader) attach(start func(current *config.Config) (prepare func(*config.Config) error, err error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prepare, err := start(r.current)
	if err != nil {
		return err
	}
	r.frontDoors = prepare
	return nil
}

// Last returns the outcome of the last reload.
func (r *reloader) Last() admin.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *reloader) currentConfig() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// keepRestartOnly lists the keys tagged reload:"restart" in the config types
// whose value in next differs from the running one, and puts the running
// values back into next, so that the configuration in effect says what
// actually serves and every later reload reports the keys again until a
// restart. The tags are the one list of such keys: a new key is classified
// where it is declared.
func keepRestartOnly(running, next *config.Config) []string {
	var keys []string
	tlsOff := running.Listen.HTTPS != "" && next.Listen.HTTPS == ""
	walkRestart(reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem(), "", false, func(key string, run, nxt reflect.Value) {
		if !reflect.DeepEqual(run.Interface(), nxt.Interface()) {
			keys = append(keys, key)
			nxt.Set(run)
		}
	})
	if tlsOff {
		// The file turns TLS off; until a restart the TLS listener keeps the
		// certificates it has, which the file may no longer list.
		next.TLS = running.TLS
	}
	return keys
}

// RestartOnlyKeys lists every key tagged reload:"restart", in configuration
// order, for documentation and tests.
func RestartOnlyKeys() []string {
	var keys []string
	var c config.Config
	c.TLS.ACME = &config.ACME{}
	v := reflect.ValueOf(&c).Elem()
	walkRestart(v, v, "", false, func(key string, _, _ reflect.Value) { keys = append(keys, key) })
	return keys
}

// walkRestart calls visit for every restart-only leaf of the struct values
// run and next (of the same type), named by its YAML path. A field is
// restart-only when it or a struct around it is tagged reload:"restart". A
// pointer tagged reload:"presence" is one key when it is set in one value
// and nil in the other (the block is added or removed).
// A tagged pointer to a struct is one key while it is nil in either
// value, else each of its fields is.
func walkRestart(run, next reflect.Value, prefix string, restart bool, visit func(key string, run, next reflect.Value)) {
	t := run.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		r, n := run.Field(i), next.Field(i)
		tagged := restart || f.Tag.Get("reload") == "restart"
		switch {
		case f.Type.Kind() == reflect.Struct:
			walkRestart(r, n, key, tagged, visit)
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			switch {
			case !r.IsNil() && !n.IsNil():
				walkRestart(r.Elem(), n.Elem(), key, tagged, visit)
			case tagged:
				visit(key, r, n)
			case f.Tag.Get("reload") == "presence" && r.IsNil() != n.IsNil():
				// Adding or removing the block needs a restart; its
				// untagged fields reload while it stays.
				visit(key, r, n)
			}
		case tagged:
			visit(key, r, n)
		}
	}
}
