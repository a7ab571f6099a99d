package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// udpReadSize is the buffer for one incoming UDP query. Queries are small;
// a larger datagram is cut short and answered FORMERR.
const udpReadSize = 4096

// Errors Start returns.
var (
	ErrStarted = errors.New("dnsserver: server already started")
	ErrClosed  = errors.New("dnsserver: server shut down")
)

// Options configure a Server.
type Options struct {
	// Addr is the host:port to serve UDP and TCP on; port 0 picks a free
	// port (see Server.Addr). If empty, the configuration's listen.dns.
	Addr string
	// Snapshot returns the current routing snapshot. It is called for every
	// query, so it must be cheap and safe for concurrent use, as
	// routing.Engine.Snapshot is. Required.
	Snapshot func() *routing.Snapshot
	// Registerer receives the coopr_gslb_dns_* metrics. If nil, they are
	// kept but not registered.
	Registerer prometheus.Registerer
	// Logger receives zone build warnings and serving errors, never a line
	// per query. If nil, slog.Default().
	Logger *slog.Logger
	// Sockets, if set, opens the UDP sockets and the TCP listener instead
	// of the net package, for example to take them over from the process
	// being upgraded. If nil, they are bound here.
	Sockets Sockets
}

// Sockets opens the server's sockets. ListenPacket opens UDP socket number
// index (0 to dns.udp_sockets-1) on addr with lc, which carries
// SO_REUSEPORT when several sockets share the port; Listen opens the TCP
// listener.
type Sockets interface {
	ListenPacket(lc *net.ListenConfig, addr string, index int) (net.PacketConn, error)
	Listen(addr string) (net.Listener, error)
}

// Server is the authoritative DNS server. Its methods are safe for
// concurrent use; a Server must not be copied.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	limiter *limiter
	pool    sync.Pool

	// view is the index of the latest snapshot; buildMu serializes
	// rebuilding it.
	view    atomic.Pointer[view]
	buildMu sync.Mutex
	// cookieSecret is the server cookie key when no configured secret
	// applies: random per process, or the cluster's (SetCookieSecret).
	cookieSecret atomic.Pointer[cookieKey]
	// signer is the DNSSEC signer (SetSigner), nil for none.
	signer atomic.Pointer[dnssec.Signer]

	// stopping is set, and done closed, when Shutdown begins.
	stopping atomic.Bool
	done     chan struct{}

	mu       sync.Mutex // guards the fields below
	started  bool
	stopped  bool
	udp      []*udpSocket
	tcp      *dns.Server
	udpAddr  *net.UDPAddr
	tcpAddr  *net.TCPAddr
	wg       sync.WaitGroup // one per UDP worker and one for the TCP server
	stopOnce sync.Once
	stopErr  error
}

// New returns a Server that is not serving yet; see Start.
func New(opts Options) (*Server, error) {
	if opts.Snapshot == nil {
		return nil, errors.New("dnsserver: Options.Snapshot is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: m, limiter: newLimiter(), done: make(chan struct{})}
	s.cookieSecret.Store(randomCookieKey())
	s.pool.New = func() any { return newResponse() }
	return s, nil
}

// Start binds the UDP sockets (dns.udp_sockets of them, one per CPU by
// default) and the TCP listener on one port, and returns once they are
// listening. The number of UDP sockets is fixed here; the other dns
// settings follow configuration reloads.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return ErrClosed
	case s.started:
		return ErrStarted
	}
	var cfg *config.Config
	if v := s.current(); v != nil {
		cfg = v.zone.cfg
	}
	addr, sockets := s.opts.Addr, 0
	if cfg != nil {
		if addr == "" {
			addr = cfg.Listen.DNS
		}
		sockets = cfg.DNS.UDPSockets
	}
	if addr == "" {
		return errors.New("dnsserver: no listen address (Options.Addr or listen.dns)")
	}
	if sockets <= 0 {
		sockets = runtime.GOMAXPROCS(0)
	}
	pcs, ln, err := bind(addr, sockets, s.opts.Sockets)
	if err != nil {
		return err
	}
	// The sockets are bound, so queries queue until the workers read them.
	var socks []*udpSocket
	var workers []*udpWorker
	for _, pc := range pcs {
		u, err := newUDPSocket(pc)
		if err == nil {
			socks = append(socks, u)
			for range udpWorkers {
				var w *udpWorker
				if w, err = newUDPWorker(s, u); err != nil {
					break
				}
				workers = append(workers, w)
			}
		}
		if err != nil {
			for _, pc := range pcs {
				pc.Close()
			}
			ln.Close()
			return err
		}
	}
	s.udp = socks
	s.udpAddr = pcs[0].LocalAddr().(*net.UDPAddr)
	s.tcpAddr = ln.Addr().(*net.TCPAddr)
	for _, w := range workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			w.serve()
		}()
	}

	idle := s.settings().idleTimeout
	s.tcp = &dns.Server{
		Listener: &limitListener{
			Listener:  ln,
			max:       func() int { return s.settings().maxConns },
			maxPerNet: func() int { return s.settings().maxPerNet },
			network:   func(a netip.Addr) netip.Prefix { return clientNetwork(s.settings().rrl, a) },
			rejected:  s.metrics.tcpRejected,
			evicted:   s.metrics.tcpEvicted,
			draining:  s.stopping.Load,
		},
		DecorateReader: func(dns.Reader) dns.Reader { return frameReader{s} },
		Handler:        handler{s, tcp},
		// The first query must come within the idle timeout too, and
		// later ones follow it as reloads change it.
		ReadTimeout:    idle,
		IdleTimeout:    func() time.Duration { return s.settings().idleTimeout },
		MaxTCPQueries:  -1, // pipelining clients keep one connection; the idle timeout ends it
		MsgAcceptFunc:  func(dh dns.Header) dns.MsgAcceptAction { return s.acceptCounted(tcp, dh) },
		MsgInvalidFunc: s.invalid(tcp),
	}
	// ActivateAndServe must have marked the TCP server started before
	// Shutdown can stop it, so wait for it to say so.
	ready := make(chan error, 2) // a start and an end
	s.tcp.NotifyStartedFunc = func() { ready <- nil }
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.tcp.ActivateAndServe()
		if err != nil {
			s.log.Error("dns: serving TCP stopped", "error", err)
		}
		ready <- err
	}()
	s.started = true
	if err := <-ready; err != nil {
		s.mu.Unlock()
		s.Shutdown(context.Background())
		s.mu.Lock()
		return err
	}
	return nil
}

// Addr returns the address the server listens on, "host:port", the same for
// UDP and TCP; empty before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpAddr == nil {
		return ""
	}
	return s.tcpAddr.String()
}

// UDPAddr returns the bound UDP address, nil before Start.
func (s *Server) UDPAddr() *net.UDPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr
}

// TCPAddr returns the bound TCP address, nil before Start.
func (s *Server) TCPAddr() *net.TCPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddr
}

// Shutdown stops serving: it stops reading queries, lets those in progress
// be answered and waits for every goroutine of the server, or for ctx, then
// closes the sockets. It is safe to call more than once, and before Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	udp, tcp := s.udp, s.tcp
	s.mu.Unlock()
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		close(s.done)
		// A read deadline in the past wakes the UDP workers without
		// closing the sockets, so that the responses of the batches they
		// hold still go out (miekg/dns stops its servers the same way).
		for _, u := range udp {
			u.conn.SetReadDeadline(time.Unix(1, 0))
		}
		var errs []error
		if tcp != nil {
			if err := tcp.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
		for _, u := range udp {
			u.conn.Close()
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// settings returns the serving settings of the current configuration.
func (s *Server) settings() settings {
	if v := s.current(); v != nil {
		return v.zone.settings
	}
	return settings{udpSize: config.DefaultUDPSize, idleTimeout: 10 * time.Second, maxConns: 1000}
}

// handler serves the queries of one transport.
type handler struct {
	s *Server
	t transport
}

// ServeDNS answers one query. A panic is logged and the query dropped:
// one bad packet must not take down every front door of the process.
func (h handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			h.s.log.Error("dns: panic answering a query", "panic", p, "stack", string(debug.Stack()))
			h.s.metrics.query(h.t, qtypeNone, rcodeDropped)
		}
	}()
	h.s.serve(w, req, h.t)
}

// serve answers req, which arrived over TCP (or UDP in tests), and writes
// the response to w.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, t transport) {
	start := time.Now()
	r := s.pool.Get().(*response)
	defer s.release(r)
	b := s.respond(s.current(), req, nil, remoteAddr(w), t, start, r)
	if b == nil {
		return
	}
	w.Write(b) // a failed write is the client's loss; there is no one to tell
	s.metrics.durations[t].Observe(time.Since(start).Seconds())
}

// respond builds the response to req, which arrived over t from client at
// now, from v into r, counts it, and returns it packed, nil when none is to
// be sent. The slice is backed by r's buffer, valid until r is reset. q, if
// not nil, is req's entry in a UDP worker's cache for v: a response packed
// for the same answer before is reused, a new one is kept.
func (s *Server) respond(v *view, req *dns.Msg, q *cachedQuery, client netip.Addr, t transport, now time.Time, r *response) []byte {
	// A valid server cookie proves the source address (RFC 7873), so such
	// a client passes rate limiting; so does TCP, whose handshake proves it.
	cookieOK := s.checkCookie(v, req, client, now, r)
	action := rrlAllow
	if t == udp && !cookieOK {
		// Rate limiting comes first: a flood costs a table lookup, not an
		// answer.
		action = s.limiter.check(client, now)
	}
	if action != rrlAllow && r.cookieOut != "" {
		// The client speaks cookies: tell it the one to use instead.
		s.metrics.rrlSlipped.Inc()
		badCookie(v, req, r)
		action, q = rrlSlip, nil
	}
	switch action {
	case rrlDrop:
		s.metrics.rrlDropped.Inc()
		s.metrics.query(t, questionType(req), rcodeDropped)
		return nil
	case rrlSlip:
		if r.msg.Rcode != dns.RcodeBadCookie {
			s.metrics.rrlSlipped.Inc()
			slip(v, req, r)
		}
		q = nil
	default:
		answer(v, req, client, r)
	}
	if r.cookieOut != "" || r.edns.do {
		// The server cookie is per client and time; signatures are
		// refreshed over the life of a view.
		q = nil
	}

	var b []byte
	if q != nil {
		if packed := q.packed(r); packed != nil {
			b = append(r.buf[:0], packed...)
			binary.BigEndian.PutUint16(b, req.Id)
		}
	}
	if b == nil {
		ourSize := uint16(config.DefaultUDPSize)
		if v != nil {
			ourSize = v.zone.settings.udpSize
		}
		var err error
		b, err = r.pack(t, ourSize)
		if err != nil {
			// Only a record set too large for any message gets here.
			s.log.Debug("dns: cannot pack a response", "name", r.question[0].Name, "error", err)
			m := &r.msg
			m.Rcode, m.Truncated = dns.RcodeServerFailure, false
			m.Answer, m.Ns, m.Extra = cut(m.Answer), cut(m.Ns), r.keepOPT(m.Extra)
			clear(r.gslb)
			r.gslb, r.refused = r.gslb[:0], nil
			if b, err = r.packBuffer(); err != nil {
				s.metrics.query(t, r.qtype, rcodeDropped)
				return nil
			}
		} else if q != nil {
			q.remember(r, b)
		}
	}

	s.metrics.query(t, r.qtype, rcodeLabel(r.msg.Rcode))
	for _, dd := range r.gslb {
		dd.answers.Inc()
	}
	if r.refused != nil {
		r.refused.refused.Inc()
	}
	return b
}

func (s *Server) release(r *response) {
	r.reset()
	s.pool.Put(r)
}

// slip builds the response RRL sends instead of an answer: empty, with TC
// set, so a real client retries over TCP while a spoofed victim gets no
// more bytes than the query had.
func slip(v *view, req *dns.Msg, r *response) {
	r.begin(req)
	r.edns, _ = parseEDNS(req)
	r.msg.Truncated = true
	r.finish(v)
}

func questionType(req *dns.Msg) int {
	if len(req.Question) != 1 {
		return qtypeNone
	}
	return qtypeLabel(req.Question[0].Qtype)
}

// remoteAddr returns the client's address, invalid if unknown.
func remoteAddr(w dns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// acceptHeader decides from the header alone whether a packet is worth
// parsing: a response is dropped (answering it could start a loop), every
// query is parsed, so that its error response, if any, is built by answer
// with the question and the OPT record (RFC 6891 section 6.1.1) and only
// RD and CD copied from the query.
func acceptHeader(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// acceptCounted is acceptHeader, counting the packets it rejects (they are
// answered FORMERR or NOTIMP without a question, or dropped).
func (s *Server) acceptCounted(t transport, dh dns.Header) dns.MsgAcceptAction {
	action := acceptHeader(dh)
	switch action {
	case dns.MsgIgnore:
		s.metrics.query(t, qtypeNone, rcodeDropped)
	case dns.MsgReject:
		s.metrics.query(t, qtypeNone, rcodeLabel(dns.RcodeFormatError))
	case dns.MsgRejectNotImplemented:
		s.metrics.query(t, qtypeNone, rcodeLabel(dns.RcodeNotImplemented))
	}
	return action
}

// invalid counts the TCP messages miekg/dns cannot parse: shorter than a
// header they are dropped, otherwise answered FORMERR.
func (s *Server) invalid(t transport) dns.MsgInvalidFunc {
	return func(m []byte, _ error) {
		if len(m) == 0 {
			return // frameReader answered and counted it
		}
		rcode := rcodeLabel(dns.RcodeFormatError)
		if len(m) < headerSize {
			rcode = rcodeDropped
		}
		s.metrics.query(t, qtypeNone, rcode)
	}
}
