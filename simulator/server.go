package simulator

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint roles.
const (
	RoleServer = "server" // coopr-server: REST API, /status
	RoleUI     = "ui"     // coopr-ui: web pages
)

// How long SetFault keeps trying to listen again on the same port after a
// Refuse fault clears. Go listeners set SO_REUSEADDR, so the port is normally
// free at once; the retry covers a brief race with another bind.
const (
	rebindTimeout = 3 * time.Second
	rebindBackoff = 20 * time.Millisecond
)

// Options configures one simulated endpoint.
type Options struct {
	// DC names the datacenter; it is sent in the X-Coopr-DC header.
	DC string
	// Role is RoleServer (the default) or RoleUI.
	Role string
	// Addr is the listen address; default "127.0.0.1:0" (any free port).
	Addr string
	// IDStart and IDIncrement partition cluster IDs as Coopr's
	// server.ids.start.num and server.ids.increment.by do; zero means 1.
	IDStart, IDIncrement int
	// Name labels the endpoint in fleet listings; default "<dc>-<role>".
	Name string
	// TLS, if not nil, makes the endpoint serve HTTPS (HTTP/1.1) with it:
	// its Certificates, and with ClientAuth and ClientCAs a client
	// certificate required (mTLS). A client whose handshake fails gets no
	// answer. The simulator keeps it and must not have it changed.
	TLS *tls.Config

	// store is shared by the servers of one Datacenter, since they share
	// one database and one ID sequence; nil gives the server its own.
	store *clusterStore
}

// Server is one simulated Coopr endpoint listening on loopback. Its address
// stays the same across Refuse faults. All methods are safe for concurrent
// use.
type Server struct {
	dc, role, name string
	addr           string
	idStart, idInc int
	store          *clusterStore
	handler        http.Handler
	tls            *tls.Config // nil for plain HTTP

	// ctx is the base of every request context; Close cancels it to release
	// hung, slow and streaming handlers.
	ctx    context.Context
	cancel context.CancelFunc

	state     atomic.Pointer[faultState]
	failNext  atomic.Int64
	requests  atomic.Int64
	conflicts atomic.Int64

	// refuseFrom holds the source addresses RefuseFrom hangs up on.
	refuseFrom atomic.Pointer[map[netip.Addr]bool]

	ownedMu sync.RWMutex
	owned   []int

	idsMu      sync.Mutex
	requestIDs []string

	// mu serializes SetFault and Close and guards the listener below.
	mu        sync.Mutex
	hs        *http.Server
	ln        *trackingListener
	serveDone chan struct{}
	listenErr error
	closing   bool

	inflight  handlerTracker
	closeOnce sync.Once

	bh *blackhole // the Blackhole fault's sockets; guarded by mu
}

// faultState is swapped whole on every SetFault so that handlers read a
// consistent fault without locking.
type faultState struct {
	fault   Fault
	since   time.Time
	changed chan struct{} // closed when this state is replaced
}

// failing reports whether a Flap fault is in its failing phase at now.
func (st *faultState) failing(now time.Time) bool {
	return (now.Sub(st.since)/st.fault.FlapPeriod)%2 == 0
}

// Start starts an endpoint and returns once it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.DC == "" {
		opts.DC = "dc1"
	}
	if opts.Role == "" {
		opts.Role = RoleServer
	}
	if opts.Role != RoleServer && opts.Role != RoleUI {
		return nil, fmt.Errorf("simulator: unknown role %q (want %q or %q)", opts.Role, RoleServer, RoleUI)
	}
	if opts.IDStart == 0 {
		opts.IDStart = 1
	}
	if opts.IDIncrement == 0 {
		opts.IDIncrement = 1
	}
	if opts.IDStart < 0 || opts.IDIncrement < 0 {
		return nil, fmt.Errorf("simulator: negative ID partition start %d increment %d", opts.IDStart, opts.IDIncrement)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Name == "" {
		opts.Name = opts.DC + "-" + opts.Role
	}
	if opts.store == nil {
		opts.store = newClusterStore(opts.DC, opts.IDStart, opts.IDIncrement)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: %s: %w", opts.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		dc:      opts.DC,
		role:    opts.Role,
		name:    opts.Name,
		addr:    ln.Addr().String(),
		idStart: opts.IDStart,
		idInc:   opts.IDIncrement,
		store:   opts.store,
		tls:     opts.TLS,
		ctx:     ctx,
		cancel:  cancel,
	}
	s.state.Store(&faultState{since: time.Now(), changed: make(chan struct{})})
	s.handler = s.refusing(s.routes())
	s.mu.Lock()
	s.serve(ln)
	s.mu.Unlock()
	return s, nil
}

// DC returns the datacenter name.
func (s *Server) DC() string { return s.dc }

// Role returns RoleServer or RoleUI.
func (s *Server) Role() string { return s.role }

// Name returns the endpoint's label.
func (s *Server) Name() string { return s.name }

// Addr returns the host:port the endpoint listens on, which survives faults.
func (s *Server) Addr() string { return s.addr }

// URL returns the endpoint's base URL, e.g. "http://127.0.0.1:40123", or
// "https://..." when it serves TLS.
func (s *Server) URL() string {
	if s.tls != nil {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// TLS reports whether the endpoint serves HTTPS.
func (s *Server) TLS() bool { return s.tls != nil }

// IDStart returns the first cluster ID of the endpoint's partition.
func (s *Server) IDStart() int { return s.idStart }

// IDIncrement returns the step between the endpoint's cluster IDs.
func (s *Server) IDIncrement() int { return s.idInc }

// Fault returns the current fault; FailNext is the number of probes still to
// fail.
func (s *Server) Fault() Fault {
	f := s.state.Load().fault
	f.FailNext = int(s.failNext.Load())
	return f
}

// SetFault changes how the endpoint behaves, effective for requests that
// arrive from now on. Requests held by a previous Hang are dropped. Clearing
// Refuse listens again on the same port; if that fails, ListenErr says why.
func (s *Server) SetFault(f Fault) {
	f = f.withDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext.Store(int64(f.FailNext))
	old := s.state.Swap(&faultState{fault: f, since: time.Now(), changed: make(chan struct{})})
	close(old.changed)
	if s.closing {
		return
	}
	if f.Mode != Blackhole {
		s.endBlackhole()
	}
	switch {
	case f.Mode == Refuse:
		s.stopListening()
	case f.Mode == Blackhole:
		s.listenErr = s.startBlackhole()
	case s.ln == nil:
		s.listenErr = s.relisten()
	}
}

// ListenErr reports why the endpoint failed to listen again after a Refuse
// fault cleared, or nil.
func (s *Server) ListenErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenErr
}

// Listening reports whether the endpoint currently accepts connections.
func (s *Server) Listening() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln != nil
}

// SetOwnedStarts sets the extra ID partitions (given by their start) whose
// clusters this server accepts writes for, modelling a takeover of a failed
// DC's shards. Calling it with no arguments ends the takeover.
func (s *Server) SetOwnedStarts(starts ...int) {
	s.ownedMu.Lock()
	s.owned = slices.Clone(starts)
	s.ownedMu.Unlock()
}

// OwnedStarts returns the takeover partitions set by SetOwnedStarts.
func (s *Server) OwnedStarts() []int {
	s.ownedMu.RLock()
	defer s.ownedMu.RUnlock()
	return slices.Clone(s.owned)
}

// Requests counts requests that reached the endpoint's handlers, faulty
// answers included.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Conflicts counts writes refused with 409 because another partition owns
// the cluster.
func (s *Server) Conflicts() int64 { return s.conflicts.Load() }

// RequestIDs returns, in arrival order, the X-Request-Id of every non-GET,
// non-HEAD request that reached the endpoint, whatever its fault, so a test
// can prove that a write never reached two backends.
func (s *Server) RequestIDs() []string {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	return slices.Clone(s.requestIDs)
}

// ResetCounters zeroes Requests and Conflicts and empties RequestIDs.
func (s *Server) ResetCounters() {
	s.requests.Store(0)
	s.conflicts.Store(0)
	s.idsMu.Lock()
	s.requestIDs = nil
	s.idsMu.Unlock()
}

func (s *Server) recordRequestID(id string) {
	s.idsMu.Lock()
	s.requestIDs = append(s.requestIDs, id)
	s.idsMu.Unlock()
}

// Close stops the endpoint, cuts its connections and waits for its
// handlers to return. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.cancel()
		s.endBlackhole()
		s.stopListening()
		s.mu.Unlock()
		s.inflight.closeAndWait()
	})
	return nil
}

// serve starts serving ln; s.mu must be held.
func (s *Server) serve(ln net.Listener) {
	tl := newTrackingListener(ln)
	hs := &http.Server{
		Handler:     s.handler,
		BaseContext: func(net.Listener) context.Context { return s.ctx },
	}
	done := make(chan struct{})
	s.hs, s.ln, s.serveDone = hs, tl, done
	var serving net.Listener = tl
	if s.tls != nil {
		// Wrapping the tracking listener keeps Refuse cutting every raw
		// connection, handshaking or not.
		serving = tls.NewListener(tl, s.tls)
	}
	go func() {
		defer close(done)
		_ = hs.Serve(serving)
	}()
}

// stopListening closes the listener and every connection; s.mu must be held.
func (s *Server) stopListening() {
	if s.ln == nil {
		return
	}
	_ = s.hs.Close()
	s.ln.closeAll()
	<-s.serveDone
	s.hs, s.ln, s.serveDone = nil, nil, nil
}

// relisten binds the endpoint's fixed address again; s.mu must be held.
func (s *Server) relisten() error {
	deadline := time.Now().Add(rebindTimeout)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("simulator: %s: listen again on %s: %w", s.name, s.addr, err)
		}
		time.Sleep(rebindBackoff)
	}
}

// handlerTracker lets Close wait for running handlers without racing a
// handler that starts while Close is waiting.
type handlerTracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (t *handlerTracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *handlerTracker) exit() { t.wg.Done() }

func (t *handlerTracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
