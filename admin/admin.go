// Package admin serves the operator's view of coopr-gslb on listen.admin: the
// status page, the JSON API under /api/v1/, /metrics, /healthz and /readyz.
// It only reads routing snapshots and probe results; changes go through the
// functions it is handed.
package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// Options are what the admin server reads. Snapshot is required; the rest may be nil.
type Options struct {
	Snapshot func() *routing.Snapshot
	// Events returns the routing history at or after since.
	Events func(since time.Time) []routing.Event
	// Probes returns the latest probe result of every endpoint.
	Probes func() []health.Status
	// Ready reports whether the first probe round is done.
	Ready func() bool
	// Gatherer serves /metrics. If nil, /metrics answers 404.
	Gatherer prometheus.Gatherer
	Version  string

	// Drain and Undrain change a drain of a DC, of a service in a DC or of
	// an endpoint; they return an error wrapping routing.ErrUnknownDC,
	// ErrUnknownService or ErrUnknownEndpoint for what the config lacks.
	Drain   func(scope routing.DrainScope, d routing.Drain) error
	Undrain func(scope routing.DrainScope, by string) error
	// Reload loads the configuration file again.
	Reload func() error
	// LastReload says how the last reload went.
	LastReload func() ReloadStatus
	// Cluster returns GET /api/v1/cluster and the page's cluster section
	// (nil while the cluster is not running). If nil, the instance runs
	// alone and the endpoint answers 404.
	Cluster func() *ClusterStatus
	// DNSSEC returns the status line of DNSSEC signing (nil when the zone
	// is not signed). If nil, the zone is not signed.
	DNSSEC func() *DNSSECStatus
	// Tokens may change things; reads need one only if ReadRequiresToken.
	Tokens            Tokens
	ReadRequiresToken bool
}

// DNSSECStatus is the state of the zone's online signing.
type DNSSECStatus struct {
	// KeyTags are the published keys' tags, the signing key first.
	KeyTags []uint16 `json:"key_tags"`
	// EarliestExpiry is the earliest expiration of any signature held
	// for serving.
	EarliestExpiry time.Time `json:"earliest_signature_expiry,omitzero"`
	// Expiring is true when EarliestExpiry is close (refresh is failing).
	Expiring bool `json:"expiring"`
}

// ReloadStatus is the outcome of the last configuration reload.
type ReloadStatus struct {
	Time  time.Time `json:"time,omitzero"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	// NeedsRestart lists changed keys that take effect only after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// Server is the admin HTTP handler. It is safe for concurrent use.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns the admin handler.
func New(opts Options) *Server {
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.page) // the page itself asks for a token when reads need one
	s.mux.HandleFunc("GET /api/v1/status", s.requireRead(s.status))
	s.mux.HandleFunc("GET /api/v1/cluster", s.requireRead(s.cluster))
	s.mux.HandleFunc("GET /api/v1/events", s.requireRead(s.events))
	s.mux.HandleFunc("GET /api/v1/explain", s.requireRead(s.explain))
	s.mux.HandleFunc("POST /api/v1/datacenters/{dc}/drain", s.requireToken(s.drain))
	s.mux.HandleFunc("DELETE /api/v1/datacenters/{dc}/drain", s.requireToken(s.undrain))
	s.mux.HandleFunc("POST /api/v1/datacenters/{dc}/services/{svc}/drain", s.requireToken(s.drain))
	s.mux.HandleFunc("DELETE /api/v1/datacenters/{dc}/services/{svc}/drain", s.requireToken(s.undrain))
	s.mux.HandleFunc("POST /api/v1/datacenters/{dc}/services/{svc}/endpoints/{addr}/drain", s.requireToken(s.drain))
	s.mux.HandleFunc("DELETE /api/v1/datacenters/{dc}/services/{svc}/endpoints/{addr}/drain", s.requireToken(s.undrain))
	s.mux.HandleFunc("POST /api/v1/reload", s.requireToken(s.reload))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Gatherer != nil {
		s.mux.Handle("GET /metrics", s.requireRead(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}).ServeHTTP))
	}
	return s
}

// ServeHTTP answers r with the security headers every admin answer carries
// (Content-Security-Policy, X-Frame-Options: DENY, X-Content-Type-Options:
// nosniff). The Host check is NewServer's (HostGuard).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	s.mux.ServeHTTP(w, r)
}

func (s *Server) ready() bool { return s.opts.Ready == nil || s.opts.Ready() }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready() {
		writeText(w, http.StatusServiceUnavailable, "waiting for the first probe round\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.buildStatus())
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := parseSince(v, time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want an RFC 3339 time (2026-11-26T10:00:00Z) or a duration ago (5m)")
			return
		}
		since = t
	}
	evs := []routing.Event{}
	if s.opts.Events != nil {
		evs = append(evs, s.opts.Events(since)...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339Nano, v)
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	client, err := netip.ParseAddr(q.Get("client"))
	if q.Get("client") == "" {
		client, err = netip.IPv4Unspecified(), nil
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "client: want an IP address such as 10.2.3.4")
		return
	}
	// Optional: what the proxy would do for one request (path, method and
	// affinity pin), not only for the name.
	path := q.Get("path")
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		writeError(w, http.StatusBadRequest, "path: want an absolute path such as /v2/clusters/00000012")
		return
	}
	req := routing.Request{Client: client, Pin: q.Get("pin")}
	switch m := strings.ToUpper(q.Get("method")); m {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		req.Write = true
	}
	req.ClusterID, req.HasClusterID = routing.ClusterID(path)
	snap := s.opts.Snapshot()
	svc := snap.Match(normalizeHost(name), path)
	if svc == nil {
		writeError(w, http.StatusNotFound, "no service has the hostname "+name+"; check services.*.hostnames")
		return
	}
	writeJSON(w, http.StatusOK, explainDecision(svc, req))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
