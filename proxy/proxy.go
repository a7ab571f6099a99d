// Package proxy is the HTTP front door: a health-aware reverse proxy for the
// Coopr UI and API that sends each request to a datacenter the routing
// snapshot allows, fails over between endpoints and DCs without errors where
// that is safe, pins UI sessions to a DC, and reports endpoints that fail
// requests.
//
// The proxy only reads routing snapshots. Everything it derives from a
// snapshot (parsed settings, per-endpoint state, metric children) is built
// once per snapshot, so the request path takes no lock.
package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/upstreamtls"
)

// Options configure a Proxy. Only Snapshot is required.
type Options struct {
	// Snapshot returns the current routing snapshot, typically
	// routing.Engine.Snapshot. It is called on every request, so it must be
	// cheap and must not block. The proxy's settings come from the
	// snapshot's Config.Proxy and take effect with the next snapshot,
	// except the upstream Transport's settings (idle_timeout,
	// max_response_header_bytes), read by New, and the server settings of
	// Server and PlainServer, read when they are called (a reload reports
	// them as needing a restart).
	Snapshot func() *routing.Snapshot
	// Registerer receives the proxy's metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// Logger receives the access log, one record per request, when
	// proxy.access_log is on. If nil, there is no access log.
	Logger *slog.Logger
	// ReportPassive is told about passive health: it is called with failure
	// set once each time an endpoint is ejected after
	// proxy.outlier.consecutive_failures failed requests, and with failure
	// clear once when an ejected endpoint serves again. It is called on the
	// request path and must not block. If nil, nothing is reported.
	ReportPassive func(dc, service, endpoint string, failure bool, reason string)
	// AffinityKey signs affinity cookies (HMAC-SHA256). If empty, a random
	// key is generated, and pins do not survive a restart. See LoadAffinityKey.
	AffinityKey []byte
	// Now returns the current time, for drain deadlines and ejections. If
	// nil, time.Now.
	Now func() time.Time
	// Dial, if set, connects to endpoints instead of a net.Dialer, with the
	// dial timeout in ctx; tests use it to run the proxy over an in-memory
	// network under a fake clock.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Events receives the proxy's operational warnings, such as a listener
	// reaching proxy.max_connections (at most once per
	// connLimitLogInterval). If nil, slog.Default().
	Events *slog.Logger
}

// Proxy is the reverse proxy. It is an http.Handler; all its methods are safe
// for concurrent use. Close releases it.
type Proxy struct {
	opts      Options
	key       []byte
	upstreams upstreams
	rp        *httputil.ReverseProxy
	metrics   *metrics
	unknown   *dcMetrics // requests for hosts no service names

	view   atomic.Pointer[view]
	viewMu sync.Mutex // serializes view builds and guards store, tlsCfg and tlsSet
	tlsCfg *config.Config
	tlsSet *upstreamtls.Set
	store  store
	// flushIdle asks the watcher to close idle upstream connections: a
	// reload removed an endpoint, whose pooled connections must go.
	flushIdle atomic.Bool
	// buffered counts the bytes of request-body buffers held (readUpTo).
	buffered atomic.Int64
	// connectLat is the recent connect latency of each address dialled.
	connectLat connectLatency

	streams streamSet

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Proxy and starts its stream watcher, which closes WebSocket
// and SSE streams to a DC that goes down. Call Close to stop it.
func New(opts Options) (*Proxy, error) {
	if opts.Snapshot == nil {
		return nil, errors.New("proxy: Options.Snapshot is required")
	}
	snap := opts.Snapshot()
	if snap == nil || snap.Config == nil {
		return nil, errors.New("proxy: the snapshot has no configuration")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Events == nil {
		opts.Events = slog.Default()
	}
	key := opts.AffinityKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	p := &Proxy{opts: opts, key: key, metrics: newMetrics(opts.Registerer)}
	p.unknown = p.metrics.dc(noLabel, noLabel)
	p.streams.m = map[*stream]struct{}{}
	p.upstreams.init(p, &snap.Config.Proxy)
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    roundTripper{p},
		ErrorHandler: p.errorHandler,
		BufferPool:   copyBuffers{},
		// A negative FlushInterval is only needed for unknown-length bodies
		// and event streams, which ReverseProxy already flushes at once.
		FlushInterval: 0,
		// ReverseProxy logs aborted copies; the access log already says.
		ErrorLog: discardLog,
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.watchStreams(ctx, streamCheckInterval)
	}()
	return p, nil
}

// Close stops the stream watcher, closes every WebSocket and SSE stream and
// the idle upstream connections. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		p.wg.Wait()
		p.streams.closeAll()
		p.upstreams.closeIdle()
	})
	return nil
}

// Shutdown stops servers gracefully: they stop accepting at once, WebSocket
// and SSE streams are closed so their clients reconnect elsewhere, and other
// requests in flight may finish until proxy.shutdown_timeout or ctx ends,
// after which their connections are cut. It returns the first error, or
// context.DeadlineExceeded when requests had to be cut.
func (p *Proxy) Shutdown(ctx context.Context, servers ...GracefulServer) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Snapshot().Config.Proxy.ShutdownTimeout.D())
	defer cancel()
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- s.Shutdown(ctx) }()
	}
	// Shutdown does not wait for hijacked connections (WebSockets), and SSE
	// streams would hold it until the timeout: close both now.
	p.streams.closeAll()
	var first error
	for range servers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	return first
}

// stateKey is the context key of a request's *reqState.
type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{p: p, in: r, start: time.Now()}
	st.rw.ResponseWriter = w
	// finish runs even when ReverseProxy aborts a broken stream by panicking
	// with http.ErrAbortHandler, so every request is counted and logged.
	defer p.finish(st)

	v := p.currentView()
	st.v = v
	if !p.admit(st) {
		return
	}
	sv := v.services[v.snap.Match(config.CanonicalHost(r.Host), r.URL.Path)]
	if sv == nil {
		// Never proxy a host no service names: this is not an open proxy.
		plainError(&st.rw, http.StatusMisdirectedRequest, "no service is configured for this host\n")
		return
	}
	st.sv = sv
	st.peerIP, st.client, st.trusted = clientAddr(r, v.trusted)
	st.secure = r.TLS != nil || (st.trusted && r.Header.Get("X-Forwarded-Proto") == "https")
	if ans, ok := st.routeRequest(); !ok {
		// Never a silent write to a DC that does not own the shard.
		p.refuseShardWrite(st, sv.shardViewOf(ans.Shard))
		return
	}
	if len(st.order) == 0 {
		p.unavailable(st)
		return
	}
	if err := st.prepareBody(); err != nil {
		st.bodyError(err)
		return
	}
	st.replayable = sv.replayable(r)
	st.deadline = st.start.Add(sv.retry.Deadline.D())
	sv.state.budget.request(st.start.Unix())

	st.rewindBody()
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	p.rp.ServeHTTP(&st.rw, r.WithContext(ctx))
}

// finish releases what a request held and records it.
func (p *Proxy) finish(st *reqState) {
	// A race's loser may still read the buffered body: join it first.
	st.race.abandon(st, false)
	st.race.join()
	if st.timed != nil {
		st.timed.end()
	}
	if st.reserved != 0 {
		p.buffered.Add(-st.reserved)
	}
	if st.cancel != nil {
		st.cancel()
	}
	if st.stream != nil {
		p.streams.remove(st.stream)
	}
	if st.ep != nil {
		st.ep.inflight.Add(-1)
	}
	code := st.rw.code
	if code == 0 {
		code = http.StatusOK // net/http answers 200 for a handler that wrote nothing
	}
	dur := time.Since(st.start)
	dm := p.unknown
	switch {
	case st.served != nil:
		dm = st.served.pool.m
	case st.sv != nil:
		dm = st.sv.none
	}
	dm.observe(code, dur.Seconds())
	if st.v != nil && st.v.accessLog && p.opts.Logger != nil {
		p.logAccess(st, code, dur)
	}
}

// unavailable answers that nothing can serve the request right now.
func (p *Proxy) unavailable(st *reqState) {
	st.rw.Header().Set("Retry-After", retryAfter)
	plainError(&st.rw, http.StatusServiceUnavailable, "no datacenter can serve "+st.sv.name+" right now; try again shortly\n")
}

// retryAfter is the Retry-After of a 503: about the time the active health
// checks need to bring an endpoint back.
const retryAfter = "5"

// plainError writes a short plain-text answer: no HTML, no stack trace, no
// detail an attacker could use.
func plainError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// errorHandler answers a request whose tries all failed without a response
// worth returning. It is the one place that maps upstream failures to statuses.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	p.answerError(w, stateOf(r), err)
}

// answerError is errorHandler for a request whose state is st, or nil.
func (p *Proxy) answerError(w http.ResponseWriter, st *reqState, err error) {
	var ue *upstreamError
	switch {
	case st != nil && st.in.Context().Err() != nil:
		// The client left; nobody reads this answer, but the log and the
		// metrics should say what happened (nginx's 499).
		w.WriteHeader(statusClientClosed)
	case errors.As(err, &ue) && !ue.kind.reachedBackend(), errors.Is(err, errNoEndpoint):
		w.Header().Set("Retry-After", retryAfter)
		name := "the service"
		if st != nil && st.sv != nil {
			name = st.sv.name
		}
		plainError(w, http.StatusServiceUnavailable, "no endpoint of "+name+" could be reached; try again shortly\n")
	case errors.As(err, &ue) && ue.kind == failHeaderTooLarge:
		plainError(w, http.StatusBadGateway, "the upstream server's answer headers are too large\n")
	case errors.As(err, &ue) && ue.kind == failTimeout:
		plainError(w, http.StatusGatewayTimeout, "the upstream server did not answer in time; the request may have been processed\n")
	case errors.As(err, &ue):
		plainError(w, http.StatusBadGateway, "the connection to the upstream server failed; the request may have been processed\n")
	default:
		plainError(w, http.StatusBadGateway, "bad gateway\n")
	}
}

// statusClientClosed records a request whose client left before the answer.
const statusClientClosed = 499

func (p *Proxy) now() time.Time { return p.opts.Now() }

// copyBuffers lends ReverseProxy its 32 KiB copy buffers, which it would
// otherwise allocate for every response.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		copyBufferPool.Put(&b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// discardLog swallows what ReverseProxy would log.
var discardLog = log.New(io.Discard, "", 0)
