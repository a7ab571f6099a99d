package proxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GracefulServer is a server Shutdown can stop, such as an *http.Server.
type GracefulServer interface {
	Shutdown(ctx context.Context) error
	Close() error
}

// Server returns an http.Server for addr that serves p, with the timeouts
// and header limit of proxy config. Serve it on a listener from Listener,
// with Serve (plain HTTP/1.1) or ServeTLS after setting TLSConfig (HTTP/1.1
// and HTTP/2; see TLSServer), and stop it with p.Shutdown. No WriteTimeout
// is set: it would cut downloads, SSE and WebSockets; a request body is
// bounded by proxy.body_timeout instead (ReadTimeout would bound the whole
// upload).
func (p *Proxy) Server(addr string) *http.Server {
	c := p.opts.Snapshot().Config.Proxy
	return &http.Server{
		Addr:              addr,
		Handler:           p,
		ReadHeaderTimeout: c.ReadHeaderTimeout.D(),
		IdleTimeout:       c.IdleTimeout.D(),
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          discardLog,
		ConnContext:       withConn,
		ConnState:         dropFirst,
	}
}

// PlainServer returns Server("") for the plain-HTTP listener (listen.http).
func (p *Proxy) PlainServer() *http.Server { return p.Server("") }

// connLimitLogInterval is how often at most a listener at
// proxy.max_connections says so in the log.
const connLimitLogInterval = 10 * time.Second

// Listener wraps ln, the listener of the front door called name ("http" or
// "https"), so that at most proxy.max_connections client connections are
// open on it at once. A connection beyond the cap is closed as soon as it is
// accepted (nginx and HAProxy also shed rather than queue), counted in
// coopr_gslb_proxy_connections_rejected_total, and logged at most once per
// connLimitLogInterval; coopr_gslb_proxy_connections_open counts the open
// ones. The cap is read from the current snapshot at every accept, so a
// reload changes it. Hijacked connections (WebSockets) count until closed.
// Unless name is "https" (whose connections are TLS, served with ServeTLS),
// the start of each connection is kept until its first request is seen, so
// that an HTTP/1.0 request with a Transfer-Encoding can be refused (see
// firstHeader).
func (p *Proxy) Listener(ln net.Listener, name string) net.Listener {
	return &limitListener{
		Listener: ln,
		p:        p,
		name:     name,
		sniff:    name != "https",
		open:     p.metrics.connsOpen.WithLabelValues(name),
		rejected: p.metrics.connsRejected.WithLabelValues(name),
	}
}

type limitListener struct {
	net.Listener
	p        *Proxy
	name     string
	sniff    bool
	n        atomic.Int64
	open     prometheus.Gauge
	rejected prometheus.Counter
	lastLog  atomic.Int64 // UnixNano of the last log line
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		limit := int64(l.p.opts.Snapshot().Config.Proxy.MaxConnections)
		if n := l.n.Add(1); limit <= 0 || n <= limit {
			l.open.Inc()
			lc := &limitedConn{Conn: c, l: l}
			lc.sniff.Store(l.sniff)
			return lc, nil
		}
		l.n.Add(-1)
		l.rejected.Inc()
		if tc, ok := c.(*net.TCPConn); ok {
			// A reset frees the socket at once, with no TIME_WAIT.
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		l.logRejected(limit)
	}
}

func (l *limitListener) logRejected(limit int64) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(connLimitLogInterval) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.p.opts.Events.Warn("proxy listener at proxy.max_connections: refusing new client connections",
		"listener", l.name, "max_connections", limit)
}

// limitedConn gives its slot back when it is closed, once. Until the first
// request's handler looks (firstHeader), it keeps a copy of what its first
// read returned.
type limitedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool

	sniff atomic.Bool            // the first read is still to be kept
	first atomic.Pointer[[]byte] // what it returned, from firstReads
}

// firstReads lends the copies of first reads: they live from a
// connection's first read to its first request's handler.
var firstReads = sync.Pool{New: func() any { b := make([]byte, 0, maxFirstRead); return &b }}

// maxFirstRead is how much of a first read is kept; a request whose header
// block is longer cannot be checked (firstHeader).
const maxFirstRead = 4 << 10

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.sniff.Load() && c.sniff.CompareAndSwap(true, false) {
		b := firstReads.Get().(*[]byte)
		*b = append((*b)[:0], p[:min(n, maxFirstRead)]...)
		c.first.Store(b)
	}
	return n, err
}

// takeFirst returns what the connection's first read returned, once, and
// nil after that (or for a TLS connection). Call release on it when done.
func (c *limitedConn) takeFirst() *[]byte {
	if c.sniff.Load() {
		c.sniff.Store(false)
	}
	return c.first.Swap(nil)
}

func releaseFirst(b *[]byte) {
	if b != nil {
		firstReads.Put(b)
	}
}

func (c *limitedConn) Close() error {
	if !c.closed.Swap(true) {
		c.l.n.Add(-1)
		c.l.open.Dec()
		releaseFirst(c.takeFirst())
	}
	return c.Conn.Close()
}

// connKey is the context key of a request's *limitedConn.
type connKey struct{}

// withConn is the servers' ConnContext: it lets the handler find the
// connection a request came on.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// dropFirst is the servers' ConnState: once a connection's first request is
// over, the copy of its first read is of no more use.
func dropFirst(c net.Conn, s http.ConnState) {
	if s == http.StateIdle || s == http.StateHijacked {
		if lc, ok := c.(*limitedConn); ok {
			releaseFirst(lc.takeFirst())
		}
	}
}

// firstHeader reports what r's connection says about r's header: whether
// it held a Transfer-Encoding field, and whether that is known at all.
// net/http deletes Transfer-Encoding from an HTTP/1.0 request and ignores it
// (golang/go#12785), so the handler cannot see it; the kept first read of
// the plain listener's connection, parsed again with net/textproto, can
// tell for the connection's first request when its header block came in
// one read of at most maxFirstRead bytes.
func firstHeader(r *http.Request) (hasTE, known bool) {
	lc, _ := r.Context().Value(connKey{}).(*limitedConn)
	if lc == nil {
		return false, false
	}
	b := lc.takeFirst()
	if b == nil {
		return false, false
	}
	defer releaseFirst(b)
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(*b)))
	if _, err := tp.ReadLine(); err != nil {
		return false, false
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return false, false
	}
	_, hasTE = h["Transfer-Encoding"]
	return hasTE, true
}
