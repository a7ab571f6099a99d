package admin

import (
	"errors"
	"net/http"
)

// ErrNotDrained is what Options.Undrain wraps for a datacenter that is not
// drained where that is an error (a cluster's replicated drains: nothing is
// written). The API answers 404.
var ErrNotDrained = errors.New("not drained")

// cluster serves GET /api/v1/cluster: the members of the gossip cluster and
// each one's view, as Options.Cluster renders them. Without a cluster it
// answers 404.
func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotFound, "this instance runs alone: its configuration has no cluster: block")
		return
	}
	writeJSON(w, http.StatusOK, s.opts.Cluster())
}
