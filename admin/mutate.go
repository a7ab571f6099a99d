package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// DrainRequest is the body of POST /api/v1/datacenters/{dc}/drain (and of
// the service and endpoint drain paths).
type DrainRequest struct {
	Reason string `json:"reason"`
	// Mode is "hard" (default: everything leaves at once) or "soft" (DNS and
	// new sessions leave at once, pinned sessions at the deadline).
	Mode string `json:"mode"`
	// Deadline is how long pinned sessions may stay under a soft drain, as a
	// duration ("10m"). Zero means DefaultSoftDeadline.
	Deadline string `json:"deadline"`
	// Service, if set, drains only this service in the DC; Endpoint, if
	// set, only this endpoint (of Service, or of every service of the DC
	// that lists it). The query parameters service and endpoint, and the
	// paths .../services/{svc}/drain and
	// .../services/{svc}/endpoints/{addr}/drain, say the same.
	Service  string `json:"service,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
}

// DefaultSoftDeadline is how long pinned sessions stay under a soft drain
// that names no deadline.
const DefaultSoftDeadline = 10 * time.Minute

const drainBodyExample = `{"reason": "kernel upgrade", "mode": "soft", "deadline": "10m", "service": "api", "endpoint": "10.0.0.1:8080"}`

// readDrainRequest decodes the optional JSON body.
func readDrainRequest(r *http.Request) (DrainRequest, error) {
	var req DrainRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return req, fmt.Errorf("reading the body: %w", err)
	}
	if len(body) > 0 {
		dec := json.NewDecoder(bytesReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, fmt.Errorf("body: want JSON like %s: %w", drainBodyExample, err)
		}
	}
	return req, nil
}

// drainScope is what a drain request names: the DC from the path, the
// service and endpoint from the path, the query or the body, which must
// agree where more than one says.
func drainScope(r *http.Request, req DrainRequest) (routing.DrainScope, error) {
	scope := routing.DrainScope{DC: r.PathValue("dc")}
	for _, f := range []struct {
		name string
		dst  *string
		from []string
	}{
		{"service", &scope.Service, []string{r.PathValue("svc"), r.URL.Query().Get("service"), req.Service}},
		{"endpoint", &scope.Endpoint, []string{r.PathValue("addr"), r.URL.Query().Get("endpoint"), req.Endpoint}},
	} {
		for _, v := range f.from {
			switch {
			case v == "":
			case *f.dst == "":
				*f.dst = v
			case *f.dst != v:
				return scope, fmt.Errorf("%s: %q and %q disagree (path, query and body name one)", f.name, *f.dst, v)
			}
		}
	}
	return scope, nil
}

// scopeJSON is how a response names what was drained.
func scopeJSON(scope routing.DrainScope, drained bool) map[string]any {
	out := map[string]any{"datacenter": scope.DC, "drained": drained}
	if scope.Service != "" {
		out["service"] = scope.Service
	}
	if scope.Endpoint != "" {
		out["endpoint"] = scope.Endpoint
	}
	return out
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request, who string) {
	req, err := readDrainRequest(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	scope, err := drainScope(r, req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now()
	d := routing.Drain{Reason: req.Reason, Mode: req.Mode, By: who, Since: now}
	switch req.Mode {
	case "", "hard":
		d.Mode = "hard"
		if req.Deadline != "" {
			writeError(w, http.StatusBadRequest, "deadline applies only to mode \"soft\"")
			return
		}
	case "soft":
		dl := DefaultSoftDeadline
		if req.Deadline != "" {
			dl, err = time.ParseDuration(req.Deadline)
			if err != nil || dl < 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("deadline %q: want a duration such as \"10m\"", req.Deadline))
				return
			}
		}
		d.Deadline = now.Add(dl)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("mode %q: want \"soft\" or \"hard\"", req.Mode))
		return
	}
	if s.opts.Drain == nil {
		writeError(w, http.StatusNotImplemented, "draining is not available")
		return
	}
	if err := s.opts.Drain(scope, d); err != nil {
		s.mutationError(w, scope, err)
		return
	}
	out := scopeJSON(scope, true)
	out["drain"] = d
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) undrain(w http.ResponseWriter, r *http.Request, who string) {
	req, err := readDrainRequest(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	scope, err := drainScope(r, req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.opts.Undrain == nil {
		writeError(w, http.StatusNotImplemented, "undraining is not available")
		return
	}
	if err := s.opts.Undrain(scope, who); err != nil {
		s.mutationError(w, scope, err)
		return
	}
	writeJSON(w, http.StatusOK, scopeJSON(scope, false))
}

func (s *Server) mutationError(w http.ResponseWriter, scope routing.DrainScope, err error) {
	switch {
	case errors.Is(err, routing.ErrUnknownDC):
		var names []string
		if snap := s.opts.Snapshot(); snap != nil {
			for _, d := range snap.Config.Datacenters {
				names = append(names, d.Name)
			}
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no datacenter %q; the configured ones are %v", scope.DC, names))
	case errors.Is(err, routing.ErrUnknownService), errors.Is(err, routing.ErrUnknownEndpoint):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrNotSupported):
		writeError(w, http.StatusNotImplemented, err.Error())
	case errors.Is(err, ErrNotDrained):
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s is not drained; nothing was written", scope))
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, who string) {
	if s.opts.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available")
		return
	}
	if err := s.opts.Reload(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "reload failed; the previous configuration keeps serving: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
}
