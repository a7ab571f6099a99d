package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// limitListener caps the number of open TCP connections. A connection
// accepted beyond the cap is reset at once, which a client sees at once and
// can retry elsewhere, instead of waiting in the backlog. The cap is read
// per accept, so a reload changes it.
type limitListener struct {
	net.Listener
	max      func() int
	rejected prometheus.Counter
	open     atomic.Int64
}

// Accept returns the next connection within the cap.
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
		if l.open.Add(1) > int64(l.max()) {
			l.open.Add(-1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset: no TIME_WAIT for a connection never served
			}
			c.Close()
			l.rejected.Inc()
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

// limitConn gives its slot back when closed and bounds every write.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	return c.Conn.Write(b)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
