package simulator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// How a Blackhole fault makes connects time out on loopback, without
// iptables or a network namespace (which need root):
//
//   - The endpoint's listener is closed (its open connections stay, and
//     their requests hang) and the same port is bound again by a listener
//     whose backlog is set to zero with a second listen(2), which Linux
//     allows on a listening socket to change its backlog.
//   - That listener is never accepted from. The simulator connects to it
//     itself until a connect times out: with a zero backlog the accept queue
//     holds one connection, and once it is full the kernel drops every new
//     SYN (tcp_conn_request counts a ListenOverflow and drops; with the
//     default tcp_abort_on_overflow=0 no RST is sent). A client's connect
//     then retransmits its SYN and times out, as against a black-holed host.
//
// TestBlackholeConnectTimesOut checks on the running kernel that a connect
// really times out rather than being refused or accepted.
const (
	// blackholeFillers caps the connections used to fill the accept queue.
	blackholeFillers = 16
	// blackholeProbe is how long a filling connect may take before the
	// queue counts as full.
	blackholeProbe = 100 * time.Millisecond
)

// blackhole holds the sockets of a Blackhole fault.
type blackhole struct {
	ln      net.Listener // never accepted from
	fillers []net.Conn   // the connections that fill its accept queue
	// frozen is the HTTP server whose listener was closed, kept with its
	// connections (their requests hang) until the fault ends.
	frozen   *http.Server
	frozenLn *trackingListener
}

// startBlackhole puts the endpoint into the Blackhole fault; s.mu must be
// held. It does nothing if the endpoint is already in it.
func (s *Server) startBlackhole() error {
	if s.bh != nil {
		return nil
	}
	bh := &blackhole{}
	if s.ln != nil {
		// Stop accepting, but keep the connections: closing them would
		// send a FIN, which a black hole never does.
		bh.frozen, bh.frozenLn = s.hs, s.ln
		_ = s.ln.Listener.Close()
		<-s.serveDone
		s.hs, s.ln, s.serveDone = nil, nil, nil
	}
	s.bh = bh
	ln, err := listenRetry(s.addr)
	if err != nil {
		return fmt.Errorf("simulator: %s: black hole: %w", s.name, err)
	}
	bh.ln = ln
	if err := setBacklog(ln, 0); err != nil {
		return fmt.Errorf("simulator: %s: black hole backlog: %w", s.name, err)
	}
	for range blackholeFillers {
		c, err := net.DialTimeout("tcp", s.addr, blackholeProbe)
		if err != nil {
			return nil // the queue is full: connects now time out
		}
		bh.fillers = append(bh.fillers, c)
	}
	return fmt.Errorf("simulator: %s: black hole: %d connects still succeed", s.name, blackholeFillers)
}

// endBlackhole ends a Blackhole fault: the unaccepted listener and its
// queue go, and the frozen connections are closed; s.mu must be held. The
// caller listens again if the new fault needs it.
func (s *Server) endBlackhole() {
	bh := s.bh
	if bh == nil {
		return
	}
	s.bh = nil
	if bh.ln != nil {
		_ = bh.ln.Close()
	}
	for _, c := range bh.fillers {
		_ = c.Close()
	}
	if bh.frozen != nil {
		_ = bh.frozen.Close()
		bh.frozenLn.closeAll()
	}
}

// setBacklog calls listen(2) again on ln's socket with backlog n.
func setBacklog(ln net.Listener, n int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("not a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), n) }); err != nil {
		return err
	}
	return lerr
}

// listenRetry binds addr, retrying briefly as relisten does.
func listenRetry(addr string) (net.Listener, error) {
	deadline := time.Now().Add(rebindTimeout)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(rebindBackoff)
	}
}
