package routing

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// Errors a scoped drain returns for a service or endpoint the datacenter
// does not have.
var (
	ErrUnknownService  = errors.New("unknown service")
	ErrUnknownEndpoint = errors.New("unknown endpoint")
)

// DrainScope names what a drain takes out: a whole datacenter (Service and
// Endpoint empty), one service in a datacenter (Service set), or one
// endpoint (Endpoint set: of Service, or of every service of the
// datacenter that lists it when Service is empty), like HAProxy's
// "set server ... state drain".
type DrainScope struct {
	DC       string `json:"dc"`
	Service  string `json:"service,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
}

// IsDC reports whether the scope is a whole datacenter.
func (s DrainScope) IsDC() bool { return s.Service == "" && s.Endpoint == "" }

// String renders the scope as "east", "east/api" or "east/api/10.0.0.1:80"
// ("east/*/10.0.0.1:80" for an endpoint of every service).
func (s DrainScope) String() string {
	switch {
	case s.IsDC():
		return s.DC
	case s.Endpoint == "":
		return s.DC + "/" + s.Service
	case s.Service == "":
		return s.DC + "/*/" + s.Endpoint
	}
	return s.DC + "/" + s.Service + "/" + s.Endpoint
}

// ScopedDrain is a drain of a service in a datacenter or of an endpoint.
type ScopedDrain struct {
	DrainScope
	Drain
}

// covers reports whether the scoped drain takes endpoint ep of service svc
// in its datacenter out.
func (s DrainScope) coversEndpoint(svc, ep string) bool {
	return s.Endpoint == ep && (s.Service == "" || s.Service == svc)
}

// checkScope verifies that cfg has what scope names.
func checkScope(cfg *config.Config, scope DrainScope) error {
	var dc *config.Datacenter
	for _, d := range cfg.Datacenters {
		if d.Name == scope.DC {
			dc = d
		}
	}
	if dc == nil {
		return fmt.Errorf("%w %q", ErrUnknownDC, scope.DC)
	}
	if scope.Service != "" && dc.Services[scope.Service] == nil {
		return fmt.Errorf("%w %q in datacenter %q (it runs %v)", ErrUnknownService, scope.Service, scope.DC, serviceNames(dc))
	}
	if scope.Endpoint == "" {
		return nil
	}
	for name, ds := range dc.Services {
		if scope.Service != "" && name != scope.Service {
			continue
		}
		if slices.Contains(ds.Endpoints, scope.Endpoint) {
			return nil
		}
	}
	where := fmt.Sprintf("datacenter %q", scope.DC)
	if scope.Service != "" {
		where = fmt.Sprintf("service %q in datacenter %q", scope.Service, scope.DC)
	}
	return fmt.Errorf("%w %q in %s", ErrUnknownEndpoint, scope.Endpoint, where)
}

func serviceNames(dc *config.Datacenter) []string {
	var out []string
	for name := range dc.Services {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// sortedScoped lists the scoped drains in a stable order.
func sortedScoped(m map[DrainScope]Drain) []ScopedDrain {
	out := make([]ScopedDrain, 0, len(m))
	for k, d := range m {
		out = append(out, ScopedDrain{DrainScope: k, Drain: d})
	}
	slices.SortFunc(out, func(a, b ScopedDrain) int {
		return cmp.Or(cmp.Compare(a.DC, b.DC), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	return out
}

// DrainScoped drains a service in a datacenter or an endpoint; a DC scope is
// Drain. The service and endpoint must exist in the datacenter. Repeating
// the drain in effect is one drain and one event; only a new deadline is
// taken.
func (e *Engine) DrainScoped(scope DrainScope, d Drain) error {
	if scope.IsDC() {
		return e.Drain(scope.DC, d)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkScope(e.cfg, scope); err != nil {
		return err
	}
	putDrainLocked(e, e.scoped, scope, scope, d)
	return nil
}

// putDrainLocked puts drain d of scope under key in m (the DC drains or the
// scoped ones), filling its mode and time. The same drain again (a retry) is
// one drain and one event: only a new deadline is taken. e.mu is held.
func putDrainLocked[K comparable](e *Engine, m map[K]Drain, key K, scope DrainScope, d Drain) {
	if d.Mode == "" {
		d.Mode = "hard"
	}
	if d.Since.IsZero() {
		d.Since = e.opts.Now()
	}
	if old, ok := m[key]; ok && old.Reason == d.Reason && old.Mode == d.Mode && old.By == d.By {
		if !old.Deadline.Equal(d.Deadline) {
			old.Deadline = d.Deadline
			m[key] = old
			e.publishLocked()
		}
		return
	}
	m[key] = d
	e.emitLocked(Event{Time: d.Since, Kind: EventDrained, DC: scope.DC, Service: scope.Service, Endpoint: scope.Endpoint, Reason: d.Reason, By: d.By, Mode: d.Mode})
	e.publishLocked()
}

// UndrainScoped ends a scoped drain (a DC scope is Undrain). Undraining
// what is not drained is not an error; naming what does not exist is.
func (e *Engine) UndrainScoped(scope DrainScope, by string) error {
	if scope.IsDC() {
		return e.Undrain(scope.DC, by)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.scoped[scope]; !ok {
		return checkScope(e.cfg, scope)
	}
	delete(e.scoped, scope)
	e.emitLocked(Event{Time: e.opts.Now(), Kind: EventUndrained, DC: scope.DC, Service: scope.Service, Endpoint: scope.Endpoint, By: by})
	e.publishLocked()
	return nil
}

// RestoreScopedDrains installs scoped drains saved before a restart,
// without events; those whose service or endpoint is gone are dropped.
func (e *Engine) RestoreScopedDrains(drains []ScopedDrain) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sd := range drains {
		if !sd.IsDC() && checkScope(e.cfg, sd.DrainScope) == nil {
			e.scoped[sd.DrainScope] = sd.Drain
		}
	}
	e.publishLocked()
}
