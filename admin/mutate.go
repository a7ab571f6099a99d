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

// DrainRequest is the body of POST /api/v1/datacenters/{dc}/drain.
type DrainRequest struct {
	Reason string `json:"reason"`
	// Mode is "hard" (default: everything leaves at once) or "soft" (DNS and
	// new sessions leave at once, pinned sessions at the deadline).
	Mode string `json:"mode"`
	// Deadline is how long pinned sessions may stay under a soft drain, as a
	// duration ("10m"). Zero means DefaultSoftDeadline.
	Deadline string `json:"deadline"`
}

// DefaultSoftDeadline is how long pinned sessions stay under a soft drain
// that names no deadline.
const DefaultSoftDeadline = 10 * time.Minute

func (s *Server) drain(w http.ResponseWriter, r *http.Request, who string) {
	dc := r.PathValue("dc")
	var req DrainRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if len(body) > 0 {
		dec := json.NewDecoder(bytesReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, `body: want JSON like {"reason": "kernel upgrade", "mode": "soft", "deadline": "10m"}: `+err.Error())
			return
		}
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
	if err := s.opts.Drain(dc, d); err != nil {
		s.mutationError(w, dc, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"datacenter": dc, "drained": true, "drain": d})
}

func (s *Server) undrain(w http.ResponseWriter, r *http.Request, who string) {
	dc := r.PathValue("dc")
	if s.opts.Undrain == nil {
		writeError(w, http.StatusNotImplemented, "undraining is not available")
		return
	}
	if err := s.opts.Undrain(dc, who); err != nil {
		s.mutationError(w, dc, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"datacenter": dc, "drained": false})
}

func (s *Server) mutationError(w http.ResponseWriter, dc string, err error) {
	if errors.Is(err, routing.ErrUnknownDC) {
		var names []string
		if snap := s.opts.Snapshot(); snap != nil {
			for _, d := range snap.Config.Datacenters {
				names = append(names, d.Name)
			}
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no datacenter %q; the configured ones are %v", dc, names))
		return
	}
	if errors.Is(err, ErrNotDrained) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("datacenter %q is not drained; nothing was written", dc))
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
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
