package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// tcpWriteTimeout bounds one TCP response write, so a client that stops
// reading cannot hold a connection (and Shutdown) forever.
const tcpWriteTimeout = 5 * time.Second

// bind opens n UDP sockets and one TCP listener on addr. The UDP sockets
// share the port with SO_REUSEPORT, so the kernel spreads queries over them.
// With port 0 the port the first UDP socket gets is used for the others and
// for TCP; if some other program holds that port for TCP, bind tries again
// with a new port.
func bind(addr string, n int, socks Sockets) ([]net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsserver: listen address %q: %w", addr, err)
	}
	if !reusePortSupported {
		n = 1
	}
	attempts := 1
	if port == "0" {
		attempts = 10
	}
	for i := 0; ; i++ {
		pcs, ln, err := bindOnce(host, port, n, socks)
		if err == nil {
			return pcs, ln, nil
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, nil, fmt.Errorf("dnsserver: listen on %s: %w (ports below 1024 need CAP_NET_BIND_SERVICE: run under the systemd unit, which grants it, or `setcap cap_net_bind_service=+ep` the binary)", addr, err)
		}
		if i+1 >= attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dnsserver: listen on %s: %w", addr, err)
		}
	}
}

func bindOnce(host, port string, n int, socks Sockets) (pcs []net.PacketConn, ln net.Listener, err error) {
	if socks == nil {
		socks = netSockets{}
	}
	defer func() {
		if err != nil {
			for _, pc := range pcs {
				pc.Close()
			}
		}
	}()
	var lc net.ListenConfig
	if n > 1 {
		// Only when sharing: SO_REUSEPORT on a lone socket would let a
		// second instance started by mistake silently take half the
		// queries instead of failing to bind.
		lc.Control = reusePort
	}
	first, err := socks.ListenPacket(&lc, net.JoinHostPort(host, port), 0)
	if err != nil {
		return nil, nil, err
	}
	pcs = append(pcs, first)
	port = strconv.Itoa(first.LocalAddr().(*net.UDPAddr).Port)
	for len(pcs) < n {
		pc, err := socks.ListenPacket(&lc, net.JoinHostPort(host, port), len(pcs))
		if err != nil {
			return pcs, nil, err
		}
		pcs = append(pcs, pc)
	}
	ln, err = socks.Listen(net.JoinHostPort(host, port))
	return pcs, ln, err
}

// netSockets binds with the net package.
type netSockets struct{}

func (netSockets) ListenPacket(lc *net.ListenConfig, addr string, _ int) (net.PacketConn, error) {
	return lc.ListenPacket(context.Background(), "udp", addr)
}

func (netSockets) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// limitListener caps the number of open TCP connections, in all and per
// client network. When a cap is reached, the connection that has been idle
// longest (waiting for a query, with no complete query since) is closed to
// make room, so that a flood of idle or slow connections never locks out a
// client that asks and goes; only when every connection is busy is the new
// one reset, which a client sees at once and can retry elsewhere. The caps
// are read per accept, so a reload changes them. Accept and close take the
// listener's lock; queries never do.
type limitListener struct {
	net.Listener
	max, maxPerNet func() int
	// network maps a client address to its network (the RRL prefixes).
	network  func(netip.Addr) netip.Prefix
	rejected prometheus.Counter
	evicted  prometheus.Counter
	// draining reports that Shutdown has begun (see limitConn.SetReadDeadline).
	draining func() bool

	mu     sync.Mutex
	conns  map[*limitConn]struct{}
	perNet map[netip.Prefix]int
}

// Accept returns the next connection within the caps.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Running out of file descriptors fails every accept at
				// once; pause so the caller's retry loop does not spin.
				time.Sleep(10 * time.Millisecond)
			}
			return nil, err
		}
		var addr netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			addr = a.AddrPort().Addr().Unmap()
		}
		lc := &limitConn{Conn: c, l: l}
		if l.network != nil && addr.IsValid() {
			lc.net = l.network(addr)
		}
		lc.active.Store(time.Now().UnixNano())
		if victims, ok := l.admit(lc); ok {
			for _, v := range victims {
				v.Conn.Close() // its server goroutine sees the error and closes it for good
				l.evicted.Inc()
			}
			return lc, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: no TIME_WAIT for a connection never served
		}
		c.Close()
		l.rejected.Inc()
	}
}

// admit registers c if the caps allow, evicting the longest-idle
// connections they need; it returns those to close.
func (l *limitListener) admit(c *limitConn) ([]*limitConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns, l.perNet = map[*limitConn]struct{}{}, map[netip.Prefix]int{}
	}
	var victims []*limitConn
	if c.net.IsValid() && l.perNet[c.net] >= l.maxPerNet() {
		v := l.oldestIdle(c.net)
		if v == nil {
			return nil, false
		}
		l.forget(v)
		victims = append(victims, v)
	}
	if len(l.conns) >= l.max() {
		v := l.oldestIdle(netip.Prefix{})
		if v == nil {
			return victims, false
		}
		l.forget(v)
		victims = append(victims, v)
	}
	l.conns[c] = struct{}{}
	if c.net.IsValid() {
		l.perNet[c.net]++
	}
	return victims, true
}

// oldestIdle returns the idle connection (of network n, if valid) whose
// last complete query, or accept, is oldest; nil if none is idle.
func (l *limitListener) oldestIdle(n netip.Prefix) *limitConn {
	var oldest *limitConn
	var at int64
	for c := range l.conns {
		if c.busy.Load() || (n.IsValid() && c.net != n) {
			continue
		}
		if t := c.active.Load(); oldest == nil || t < at {
			oldest, at = c, t
		}
	}
	return oldest
}

// forget drops c from the counts; l.mu is held.
func (l *limitListener) forget(c *limitConn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if c.net.IsValid() {
		if l.perNet[c.net]--; l.perNet[c.net] <= 0 {
			delete(l.perNet, c.net)
		}
	}
}

// limitConn gives its slot back when closed and bounds every write.
type limitConn struct {
	net.Conn
	l   *limitListener
	net netip.Prefix
	// active is when the last complete query arrived (or the accept), in
	// Unix nanoseconds; busy is set while one is being answered.
	active atomic.Int64
	busy   atomic.Bool
	once   sync.Once
}

// drainGrace is how long a connection may still deliver a query once
// Shutdown has begun.
const drainGrace = 250 * time.Millisecond

// SetReadDeadline is how miekg/dns's Shutdown wakes connections waiting for
// a query: with a deadline in the past, which fails even a read whose query
// is already in the socket buffer. A client that connected just before the
// listener closed (the old process of a SIGUSR2 upgrade, say) would see its
// connection closed unanswered; so while draining, a past deadline becomes a
// short grace: a query already sent is read and answered, then miekg closes
// the connection as it stops serving.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	if d := c.l.draining; d != nil && d() {
		if now := time.Now(); t.Before(now) {
			t = now.Add(drainGrace)
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	return c.Conn.Write(b)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.forget(c)
		c.l.mu.Unlock()
	})
	return err
}

// frameReader reads TCP queries for miekg/dns's server (RFC 7766 framing).
// A frame too short to hold a header (zero-length ones included) closes
// the connection; the read deadline set before each frame covers the whole
// frame, so only complete queries extend an idle connection's life; a
// frame that does not unpack is answered FORMERR here, as answer would
// (see reject), and handed on empty, which miekg drops.
type frameReader struct {
	s *Server
}

// errShortFrame ends a connection that sent a frame shorter than a header.
var errShortFrame = errors.New("dnsserver: TCP frame shorter than a DNS header")

func (fr frameReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	lc, _ := conn.(*limitConn)
	if lc != nil {
		lc.busy.Store(false)
	}
	if !fr.s.stopping.Load() {
		conn.SetReadDeadline(time.Now().Add(timeout))
	}
	var length [2]byte
	if _, err := io.ReadFull(conn, length[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(length[:]))
	if n < headerSize {
		fr.s.metrics.query(tcp, qtypeNone, rcodeDropped)
		return nil, errShortFrame
	}
	m := make([]byte, n)
	if _, err := io.ReadFull(conn, m); err != nil {
		return nil, err
	}
	if lc != nil {
		lc.active.Store(time.Now().UnixNano())
		lc.busy.Store(true)
	}
	if header(m).Bits&(1<<15) == 0 {
		var req dns.Msg
		if err := req.Unpack(m); err != nil {
			fr.s.metrics.query(tcp, qtypeNone, rcodeLabel(dns.RcodeFormatError))
			r := fr.s.pool.Get().(*response)
			if b := r.reject(&req, header(m).Arcount > 0); b != nil {
				out := make([]byte, 2+len(b))
				binary.BigEndian.PutUint16(out, uint16(len(b)))
				copy(out[2:], b)
				conn.Write(out)
			}
			fr.s.release(r)
			return []byte{}, nil
		}
	}
	return m, nil
}

func (fr frameReader) ReadUDP(*net.UDPConn, time.Duration) ([]byte, *dns.SessionUDP, error) {
	return nil, nil, errors.New("dnsserver: frameReader reads TCP only")
}
