package proxy

import (
	"context"
	"net"
	"net/http"
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
func (p *Proxy) Listener(ln net.Listener, name string) net.Listener {
	return &limitListener{
		Listener: ln,
		p:        p,
		name:     name,
		open:     p.metrics.connsOpen.WithLabelValues(name),
		rejected: p.metrics.connsRejected.WithLabelValues(name),
	}
}

type limitListener struct {
	net.Listener
	p        *Proxy
	name     string
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
			return &limitedConn{Conn: c, l: l}, nil
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

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	if !c.closed.Swap(true) {
		c.l.n.Add(-1)
		c.l.open.Dec()
	}
	return c.Conn.Close()
}
