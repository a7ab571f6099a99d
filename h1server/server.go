// Package h1server is the lean HTTP/1.1 server of the plain-HTTP front door.
//
// net/http's server spends on every request of a keep-alive connection a
// goroutine that reads ahead in the background (to notice a client that
// leaves), a cancellable context, deadline updates and a response
// machinery built for any handler. On a proxy answering small API calls that
// was as much CPU as the proxying itself. This server keeps the parts that
// must be right, reading and validating requests with net/http's own
// http.ReadRequest, and runs the connection loop itself: one goroutine per
// connection, buffers reused across its requests, timeouts enforced by one
// sweeper for all connections instead of timers per request, and the
// background read only for responses that stream (server-sent events), where
// noticing a client that left matters.
//
// It serves HTTP/1.0 and HTTP/1.1 only; TLS and HTTP/2 stay with net/http.
package h1server

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on plain TCP listeners. Set its fields before
// calling Serve; they must not change afterwards.
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// ReadHeaderTimeout bounds the time from a request's first byte to the
	// end of its header. Zero means no bound.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits longer than
	// this for its next request. Zero means no bound.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and header. Zero means
	// http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ErrorLog receives accept errors and handler panics. If nil, the
	// standard logger.
	ErrorLog *log.Logger

	// std stands for this server under http.ServerContextKey in request
	// contexts: handlers such as httputil.ReverseProxy only abort a broken
	// answer with http.ErrAbortHandler, which conn.serve recovers, when a
	// server is there to recover it.
	std *http.Server

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sweeping  bool
	closed    atomic.Bool // Shutdown or Close was called
}

// sweepInterval is how often the timeouts are checked: a timeout fires up
// to this much late, which is fine for bounds measured in seconds.
const sweepInterval = 250 * time.Millisecond

// Serve accepts connections on ln and serves them until Shutdown or Close,
// when it returns http.ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return http.ErrServerClosed
	}
	defer s.untrack(ln)
	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http: EMFILE and friends pass
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("h1server: accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, rwc)
		if !s.add(c) {
			rwc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	if s.listeners == nil {
		s.std = &http.Server{Handler: s.Handler, ReadHeaderTimeout: s.ReadHeaderTimeout, IdleTimeout: s.IdleTimeout, MaxHeaderBytes: s.MaxHeaderBytes, ErrorLog: s.ErrorLog}
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	if !s.sweeping && (s.IdleTimeout > 0 || s.ReadHeaderTimeout > 0) {
		s.sweeping = true
		go s.sweep()
	}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

func (s *Server) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// sweep closes the connections that waited too long for a request or for
// the rest of its header. It runs until the server is closed and its last
// connection is gone: a silent client must not hold a Shutdown.
func (s *Server) sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var stale []*conn
	for now := range t.C {
		stale = stale[:0]
		s.mu.Lock()
		if s.closed.Load() && len(s.conns) == 0 {
			s.sweeping = false
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			if c.expired(now) {
				stale = append(stale, c)
			}
		}
		s.mu.Unlock()
		for _, c := range stale {
			c.rwc.Close()
		}
	}
}

// Shutdown stops the server gracefully: the listeners close at once, idle
// connections close, and connections serving a request close once their
// answer is written. It returns when every connection is closed, or with
// ctx's error when ctx ends first. Hijacked connections (WebSockets) are the
// handler's to close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.rwc.Close()
	}
	return nil
}

// stop marks the server closed and closes its listeners.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}
