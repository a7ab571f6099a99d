package simulator

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// Headers that tell a test which endpoint answered.
const (
	HeaderDC       = "X-Coopr-DC"
	HeaderEndpoint = "X-Coopr-Endpoint"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("/echo", s.handleEcho)
	mux.HandleFunc("GET /sse", s.handleSSE)
	mux.HandleFunc("GET /ws", s.handleWS)
	var h http.Handler = mux
	switch s.role {
	case RoleServer:
		s.apiRoutes(mux)
		mux.HandleFunc("GET /download", s.handleDownload)
		mux.HandleFunc("POST /upload", s.handleUpload)
		h = s.enforceOwnership(mux)
	case RoleUI:
		mux.HandleFunc("GET /{$}", s.handleUIIndex)
	}
	return s.middleware(h)
}

// middleware does for every request what does not depend on the route:
// tracking for Close, counting, identity headers and the current fault.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.inflight.enter() {
			panic(http.ErrAbortHandler)
		}
		defer s.inflight.exit()
		s.requests.Add(1)
		w.Header().Set(HeaderDC, s.dc)
		w.Header().Set(HeaderEndpoint, s.addr)
		if id := r.Header.Get("X-Request-Id"); id != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.recordRequestID(id)
		}
		if s.applyFault(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// applyFault acts out the current fault and reports whether the request
// should go on to its handler. Dropped requests abort the handler, which
// closes the connection without an answer, as a dead process would.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request) bool {
	st := s.state.Load()
	switch st.fault.Mode {
	case Refuse:
		// The request slipped in while the listener was being closed.
		panic(http.ErrAbortHandler)
	case Hang, Blackhole:
		// Blackhole: a request on a connection opened before the fault
		// gets no answer, as no packet of it would arrive.
		select {
		case <-st.changed:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler)
	case Slow:
		t := time.NewTimer(st.fault.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler)
		}
	case Error500:
		writeFault(w)
		return false
	case Flap:
		if st.failing(time.Now()) {
			writeFault(w)
			return false
		}
	}
	return true
}

func writeFault(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	io.WriteString(w, "simulated fault: internal server error\n")
}

// handleStatus answers like coopr-server's documented health check.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if s.takeFailNext() {
		writeFault(w)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "OK\n")
}

// takeFailNext consumes one of the probes FailNext asked to fail.
func (s *Server) takeFailNext() bool {
	for {
		n := s.failNext.Load()
		if n <= 0 {
			return false
		}
		if s.failNext.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
