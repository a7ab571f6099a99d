package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// errNoEndpoint means no endpoint was left to try.
var errNoEndpoint = errors.New("proxy: no endpoint to try")

// upstreamError is the failure of the last try of a request.
type upstreamError struct {
	kind failKind
	err  error
}

func (e *upstreamError) Error() string { return "proxy: " + e.kind.String() + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// reqState is one request's journey through the proxy. It is owned by the
// request's goroutine, except the attempt flags that transport goroutines set.
type reqState struct {
	p     *Proxy
	v     *view
	sv    *serviceView
	in    *http.Request
	rw    recorder
	start time.Time
	// deadline ends the retries: no try starts after it.
	deadline time.Time

	peerIP  string     // the connection's address, for X-Forwarded-For
	client  netip.Addr // the client as routing sees it
	trusted bool       // the connection comes from a trusted proxy
	secure  bool       // the client used TLS, directly or through a trusted proxy

	// order lists the DCs to try, best first; orderBuf avoids allocating it.
	order     []orderEntry
	orderBuf  [4]orderEntry
	targetBuf [4]*routing.Target // backs routing's answer when it reorders
	pin       string             // the DC of a valid affinity cookie
	pinValid  bool
	// shard is the shard of the cluster the request addresses when it was
	// routed to the shard's owner; nil otherwise.
	shard *shardView

	// The cursor over order: target ti, its endpoint offset k from first.
	ti, k, first int
	entered      bool
	includeEject bool // second pass: ejected endpoints too, when nothing else is left
	skipped      bool // the first pass skipped an ejected endpoint
	tried        []*endpoint
	triedBuf     [4]*endpoint

	body       []byte        // the buffered request body, if any
	streamBody *countingBody // the body when it is too large to buffer
	replayable bool          // safe or declared idempotent: may be sent twice

	reached int // tries that may have reached a backend
	// lastTimedOut: the last failed try ran out of time (try or dial
	// timeout).
	lastTimedOut bool
	retries      int
	reasons      [6]failKind // the first retry reasons, for the access log

	firstTry attempt   // the first try's attempt, allocated with the state
	race     race      // the first try and its backup, when hedged
	fwd      [3]string // backs the X-Forwarded-* header values

	// timed bounds the pauses of the client's body (proxy.body_timeout);
	// nil without a body.
	timed *timedBody
	// reserved is the capacity of the body's buffer, counted in
	// Proxy.buffered until the request ends.
	reserved int64

	// The outcome.
	served *targetView
	ep     *endpoint // the endpoint that answered, held in flight until the end
	cancel context.CancelFunc
	stream *stream
}

// orderEntry is one DC to try and the endpoints to try in it.
type orderEntry struct {
	tv  *targetView
	eps []*endpoint
}

// attempt is one try's view of the connection, filled by httptrace hooks
// that may run on transport goroutines.
type attempt struct {
	gotConn, wroteHeaders atomic.Bool
	n1xx                  atomic.Int32 // informational answers so far
	too1xx                atomic.Bool  // more than max1xx: the try was cancelled
	// phase moves once from waiting to expired (the try timed out) or to
	// answered (headers arrived first), so a timeout racing an answer is
	// decided exactly once.
	phase  atomic.Int32
	cancel context.CancelFunc
	trace  httptrace.ClientTrace

	// The try itself: set by begin, and its outcome by run, which may run
	// on a race's goroutine (hedge.go); read by the request's goroutine only
	// after run has returned.
	req     *http.Request
	tv      *targetView
	ep      *endpoint
	timeout time.Duration
	took    time.Duration
	res     *http.Response
	err     error
	// received: the request's goroutine has the outcome (a race's try).
	received bool
}

// The phases of an attempt.
const (
	phaseWaiting int32 = iota
	phaseExpired
	phaseAnswered
)

func (a *attempt) timedOut() bool { return a.phase.Load() == phaseExpired }

// newAttempt sets a's trace hooks.
func newAttempt(a *attempt) {
	a.trace = httptrace.ClientTrace{
		// The transport may retry internally on a fresh connection when
		// nothing was written to a reused one; each GetConn starts over.
		GetConn: func(string) {
			a.gotConn.Store(false)
			a.wroteHeaders.Store(false)
		},
		GotConn:      func(httptrace.GotConnInfo) { a.gotConn.Store(true) },
		WroteHeaders: func() { a.wroteHeaders.Store(true) },
		// Composed with ReverseProxy's hook, which forwards them to the
		// client. httptrace ignores the error of the first of two composed
		// hooks, so going over the bound cancels the try instead.
		Got1xxResponse: func(int, textproto.MIMEHeader) error {
			if a.n1xx.Add(1) > max1xx {
				a.too1xx.Store(true)
				a.cancel()
			}
			return nil
		},
	}
}

// errTooMany1xx ends a try whose backend sent more than max1xx
// informational answers.
var errTooMany1xx = errors.New("proxy: too many 1xx informational answers from upstream")

func (a *attempt) expire() {
	if a.phase.CompareAndSwap(phaseWaiting, phaseExpired) {
		a.cancel()
	}
}

// roundTripper is ReverseProxy's transport: the retry loop over endpoints
// and DCs around the shared http.Transport.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(out *http.Request) (*http.Response, error) {
	st := stateOf(out)
	if st == nil {
		return nil, errors.New("proxy: request without routing state")
	}
	return st.roundTrip(out)
}

// roundTrip tries endpoints in order until one answers acceptably, the
// request may not be retried, or the candidates run out. out is the request
// ReverseProxy built. The first try of a replayable request may be raced by
// a backup try (hedge.go); every other try runs on this goroutine.
func (st *reqState) roundTrip(out *http.Request) (*http.Response, error) {
	tv, ep := st.next()
	if ep == nil {
		return nil, errNoEndpoint
	}
	// last is a 502/503/504 kept while retrying, returned if the retries
	// fail: the client learns more from it than from a blank 502.
	var last *http.Response
	var lastTV *targetView
	for {
		var a *attempt
		if st.race.running > 0 {
			// The other try of the race may still answer.
			a = st.race.wait()
		} else if delay, ok := st.hedgeDelay(out, ep); ok {
			a = st.hedged(out, tv, ep, delay)
		} else {
			a = st.begin(out, tv, ep, st.tryTimeout(ep))
			a.run()
		}
		tv, ep = a.tv, a.ep
		res, kind, err := st.settle(a)
		if err == nil && kind == failNone {
			st.race.won(st, a)
			return st.accept(res, tv, ep), nil
		}
		if st.in.Context().Err() != nil {
			// The client left: no retry, and the endpoint is not to blame.
			st.race.abandon(st, false)
			if res != nil {
				return st.accept(res, tv, ep), nil
			}
			return nil, err
		}
		if st.race.running > 0 {
			// The backup (or the first try) is still out: wait for it
			// rather than start a third, keeping this answer if the other
			// fails too.
			if res != nil {
				kept, ok := keepAnswer(res)
				if !ok {
					st.race.abandon(st, false)
					return st.accept(kept, tv, ep), nil
				}
				st.release(ep)
				st.decorate(kept, tv)
				last, lastTV = kept, tv
			}
			continue
		}
		if kind.reachedBackend() || st.lastTimedOut {
			// Failures that reached a backend (overload, a hang, a 503) and
			// timeouts (a black hole) tend to hit a whole DC: try the next
			// DC before this one's other endpoints. A connection that was
			// refused is more likely one dead endpoint, so that moves on
			// within the DC.
			st.leaveDC()
		}
		ntv, nep := st.next()
		if nep == nil || !st.mayRetry(kind, tv, ntv, nep) {
			switch {
			case res != nil:
				return st.accept(res, tv, ep), nil
			case last != nil:
				st.served = lastTV
				return last, nil
			}
			return nil, &upstreamError{kind: kind, err: err}
		}
		if res != nil {
			kept, ok := keepAnswer(res)
			if !ok {
				// Too large to keep for later: this answer is the last.
				return st.accept(kept, tv, ep), nil
			}
			st.release(ep)
			st.decorate(kept, tv)
			last, lastTV = kept, tv
		}
		st.noteRetry(kind)
		tv, ep = ntv, nep
	}
}

// begin prepares a try of ep that waits timeout for response headers; run
// sends it. From begin until settle (or a race's join), ep counts the try
// in flight.
func (st *reqState) begin(out *http.Request, tv *targetView, ep *endpoint, timeout time.Duration) *attempt {
	st.tried = append(st.tried, ep)
	a := &st.firstTry
	if len(st.tried) > 1 {
		// Earlier tries may still be referenced by transport goroutines:
		// each retry gets its own attempt, URL and body.
		a = &attempt{}
	}
	newAttempt(a)
	ctx, cancel := context.WithCancel(out.Context())
	a.cancel = cancel
	req := out.WithContext(httptrace.WithClientTrace(ctx, &a.trace))
	if len(st.tried) > 1 {
		u := *out.URL
		req.URL = &u
		req.Body = st.freshBody()
	}
	req.URL.Scheme = tv.scheme
	req.URL.Host = ep.addr
	a.req, a.tv, a.ep, a.timeout = req, tv, ep, timeout
	ep.inflight.Add(1)
	return a
}

// run sends the try and waits for its response headers, at most a.timeout.
// It touches only a, so a race may run it on another goroutine.
func (a *attempt) run() {
	began := time.Now()
	timer := time.AfterFunc(a.timeout, a.expire)
	a.res, a.err = a.tv.rt.RoundTrip(a.req)
	timer.Stop()
	a.took = time.Since(began)
	if !a.phase.CompareAndSwap(phaseWaiting, phaseAnswered) && a.err == nil {
		// The timeout fired as the answer arrived and cancelled the
		// context the body would be read under: the answer is lost.
		a.res.Body.Close()
		a.res, a.err = nil, context.DeadlineExceeded
	}
	if a.err == nil && a.too1xx.Load() {
		// The cancel raced the final answer, which may have won.
		a.res.Body.Close()
		a.res, a.err = nil, errTooMany1xx
	}
}

// settle records the outcome of a finished try. kind says why it failed:
// a transport failure (err set) or a retryable 5xx answer (res set). While
// settle returns a response, its endpoint counts it in flight and st.cancel
// ends its exchange.
func (st *reqState) settle(a *attempt) (*http.Response, failKind, error) {
	if a.err != nil {
		a.ep.inflight.Add(-1)
		a.cancel()
		return nil, st.failed(a.err, a, a.tv, a.ep), a.err
	}
	a.ep.lat.observe(a.took)
	st.cancel = a.cancel
	return st.answered(a.res, a.tv, a.ep)
}

// failed classifies and records the failure of a try of ep.
func (st *reqState) failed(err error, a *attempt, tv *targetView, ep *endpoint) failKind {
	if st.in.Context().Err() != nil && !a.timedOut() {
		return failOther
	}
	kind := classify(err, a)
	if kind.reachedBackend() {
		st.reached++
	}
	st.p.metrics.upstreamErrors[kind].Inc()
	st.lastTimedOut = timedOut(kind, err, a)
	st.p.recordFailureNow(st.v, ep, tv.pool, kind.String(), st.lastTimedOut)
	return kind
}

// answered records an answer from ep and says whether it is worth a retry.
func (st *reqState) answered(res *http.Response, tv *targetView, ep *endpoint) (*http.Response, failKind, error) {
	st.reached++
	if res.StatusCode >= 500 {
		st.p.recordFailure(st.v, ep, tv.pool, "status "+itoa(res.StatusCode))
	} else {
		st.p.recordSuccess(ep)
	}
	return res, st.retryStatus(res.StatusCode), nil
}

// retryStatus returns the fail kind of an answer code listed in
// retry.on_status, failNone for any other code.
func (st *reqState) retryStatus(code int) failKind {
	if code < 500 {
		return failNone
	}
	for _, c := range st.sv.retry.OnStatus {
		if c != code {
			continue
		}
		switch code {
		case http.StatusInternalServerError:
			return failStatus500
		case http.StatusBadGateway:
			return failStatus502
		case http.StatusServiceUnavailable:
			return failStatus503
		case http.StatusGatewayTimeout:
			return failStatus504
		}
		return failStatus5xx
	}
	return failNone
}

// timedOut reports whether a failed try ran out of time (its try timeout,
// or the dial timeout of a black-holed endpoint), which ejects the endpoint
// at once.
func timedOut(kind failKind, err error, a *attempt) bool {
	if kind == failTimeout || a.timedOut() {
		return true
	}
	var ne net.Error
	return kind == failConnect && errors.As(err, &ne) && ne.Timeout()
}

// release ends the try of ep whose answer was read in full and set aside.
func (st *reqState) release(ep *endpoint) {
	ep.inflight.Add(-1)
	if st.cancel != nil {
		st.cancel()
		st.cancel = nil
	}
}

// accept makes res, from a try of ep, the answer: ep stays counted in flight
// until the request ends, and the answer gets the DC header and the
// affinity cookie. Streams are watched so a DC going down closes them.
func (st *reqState) accept(res *http.Response, tv *targetView, ep *endpoint) *http.Response {
	st.served, st.ep = tv, ep
	st.decorate(res, tv)
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy writes a 101 on the hijacked connection, past the
		// recorder.
		st.rw.code = http.StatusSwitchingProtocols
		st.watch(tv, res.Body)
	} else if isEventStream(res.Header) {
		st.watch(tv, nil)
	}
	return res
}

// decorate adds the DC header, the shard owner header and the affinity
// cookie to an answer from tv. Only a successful answer pins: a DC that
// answered 5xx should not keep the session. An answer routed by shard never
// pins: the owner served one request of the session, the session stays where
// it was.
func (st *reqState) decorate(res *http.Response, tv *targetView) {
	if st.v.dcHeader != "" {
		res.Header[st.v.dcHeader] = tv.dcValue
	}
	if st.shard != nil {
		if tv == st.shard.owner {
			res.Header[shardOwnerKey] = tv.dcValue
		}
		return
	}
	if st.sv.affinity && res.StatusCode < 500 && (!st.pinValid || st.pin != tv.dc) {
		res.Header["Set-Cookie"] = append(res.Header["Set-Cookie"], tv.cookie(st.secure))
	}
}

// isEventStream reports whether an answer's media type is
// text/event-stream, as mime.ParseMediaType would read it, without its
// allocations.
func isEventStream(h http.Header) bool {
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// mayRetry reports whether a request whose try of tv failed with kind may
// be sent again, to nep in ntv, taking a retry from the budget when one is
// needed. The budget protects a struggling DC from its own retries: a retry
// in the same DC takes from it, a failover to an endpoint of another DC that
// is not ejected does not, so the budget never fails a request that a
// healthy DC could serve.
func (st *reqState) mayRetry(kind failKind, tv, ntv *targetView, nep *endpoint) bool {
	if !st.rewindable() || !time.Now().Before(st.deadline) {
		return false
	}
	if !kind.reachedBackend() {
		// Nothing reached a backend: moving on costs the backends nothing,
		// whatever the method.
		return true
	}
	if !st.replayable || st.reached >= st.sv.retry.Attempts {
		return false
	}
	if ntv != tv && !nep.ejected(sinceEpoch(st.p.now())) {
		return true
	}
	return st.sv.state.budget.withdraw(time.Now().Unix(), st.sv.retry)
}

func (st *reqState) noteRetry(kind failKind) {
	if st.retries < len(st.reasons) {
		st.reasons[st.retries] = kind
	}
	st.retries++
	st.sv.state.m.retries[kind].Inc()
}

// tryTimeout bounds the wait for response headers of the next try, of ep.
//
// The first try of a safe or idempotent request, when an endpoint that is
// not ejected is left to retry on, waits the adaptive timeout: a multiple
// of ep's recent high latency (retry.timeout_multiplier, at least
// retry.timeout_floor), so a hung endpoint costs a fraction of the
// configured timeout before the next DC is tried. Every other try waits
// plainTimeout.
func (st *reqState) tryTimeout(ep *endpoint) time.Duration {
	tt := st.plainTimeout()
	if !st.replayable || len(st.tried) > 0 || st.reached+1 >= st.sv.retry.Attempts || !st.hasHealthyNext() {
		// A retry waits its full bound: after a failover the next DC takes
		// a surge of load, and giving up early on it (which ejects it)
		// would cascade.
		return tt
	}
	return st.adaptiveTimeout(ep, tt)
}

// plainTimeout is the bound of a try that the adaptive timeout does not
// shorten: retry.try_timeout, or response_header_timeout for the last
// possible try of a replayable request. A try that may not be replayed (a
// POST) waits retry.try_timeout when it is shorter than
// response_header_timeout and the deadline leaves room, and
// response_header_timeout otherwise: it ends with a 504 after its try
// timeout rather than tying the client up.
func (st *reqState) plainTimeout() time.Duration {
	hdr := st.v.cfg.ResponseHeaderTimeout.D()
	tt := st.sv.retry.TryTimeout.D()
	if tt <= 0 || tt >= hdr || time.Until(st.deadline) <= tt {
		tt = hdr
	}
	if st.replayable && st.reached+st.race.running+1 >= st.sv.retry.Attempts {
		return hdr
	}
	return tt
}

// adaptiveTimeout is retry.timeout_multiplier times ep's recent high
// latency, at least retry.timeout_floor, at most limit; limit until
// latencyMinSamples answers are known.
func (st *reqState) adaptiveTimeout(ep *endpoint, limit time.Duration) time.Duration {
	return ep.lat.bound(st.sv.retry.TimeoutFloor.D(), limit, st.sv.retry.TimeoutMultiplier, latencyMinSamples)
}

// hasHealthyNext reports whether next would return another endpoint that
// is not ejected, leaving the cursor where it was.
func (st *reqState) hasHealthyNext() bool {
	c := st.cursor()
	_, ep := st.next()
	st.setCursor(c)
	return ep != nil && !ep.ejected(sinceEpoch(st.p.now()))
}

// cursor is a saved position of reqState's cursor over its order.
type cursor struct {
	ti, k, first                   int
	entered, includeEject, skipped bool
}

func (st *reqState) cursor() cursor {
	return cursor{st.ti, st.k, st.first, st.entered, st.includeEject, st.skipped}
}

func (st *reqState) setCursor(c cursor) {
	st.ti, st.k, st.first, st.entered, st.includeEject, st.skipped = c.ti, c.k, c.first, c.entered, c.includeEject, c.skipped
}

// classify says how a try failed, from what the trace saw rather than from
// the error's text.
func classify(err error, a *attempt) failKind {
	switch {
	case !a.gotConn.Load():
		return failConnect
	case !a.wroteHeaders.Load():
		return failNotSent
	case isHeaderTooLarge(err):
		return failHeaderTooLarge
	case a.too1xx.Load():
		return failOther
	case a.timedOut(), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return failTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failReset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failTimeout
	}
	return failOther
}

// next returns the next endpoint to try: the DCs in order, each DC's
// endpoints from the one its balancer picks, skipping endpoints already
// tried and, until nothing else is left, ejected ones.
func (st *reqState) next() (*targetView, *endpoint) {
	now := sinceEpoch(st.p.now())
	for {
		if st.ti >= len(st.order) {
			if st.includeEject || !st.skipped {
				return nil, nil
			}
			// A second pass takes the endpoints the first one passed over:
			// those of DCs left after a failure, and ejected ones, since
			// ejection is a guess, and a guess is better than refusing the
			// request.
			st.includeEject, st.ti, st.k, st.entered = true, 0, 0, false
			continue
		}
		e := &st.order[st.ti]
		if len(e.eps) == 0 || st.k >= len(e.eps) {
			st.ti, st.k, st.entered = st.ti+1, 0, false
			continue
		}
		if !st.entered {
			st.first = st.sv.balancer.first(e.eps, e.tv.pool)
			st.entered = true
		}
		ep := e.eps[(st.first+st.k)%len(e.eps)]
		st.k++
		if st.wasTried(ep) {
			continue
		}
		if !st.includeEject && ep.ejected(now) {
			st.skipped = true
			continue
		}
		return e.tv, ep
	}
}

// leaveDC moves the cursor to the next DC, if there is one; the endpoints
// left behind are tried in the second pass.
func (st *reqState) leaveDC() {
	if st.ti+1 < len(st.order) {
		st.ti, st.k, st.entered = st.ti+1, 0, false
		st.skipped = true
	}
}

func (st *reqState) wasTried(ep *endpoint) bool {
	for _, t := range st.tried {
		if t == ep {
			return true
		}
	}
	return false
}

// replayable reports whether r may be sent to a backend twice: a safe
// method, an Idempotency-Key, or a request the operator declared idempotent.
func (sv *serviceView) replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	if r.Header.Get("Idempotency-Key") != "" {
		return true
	}
	for _, pat := range sv.idempotent {
		if (pat.method == "*" || pat.method == r.Method) && strings.HasPrefix(r.URL.Path, pat.prefix) {
			return true
		}
	}
	return false
}
