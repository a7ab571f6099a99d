package h1server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The states of a connection, for the sweeper and Shutdown.
const (
	stateIdle   int32 = iota // waiting for the first byte of a request
	stateHeader              // reading a request's header
	stateActive              // a handler is answering
	stateClosed              // closed by Shutdown while idle
)

// maxDrain is how much of a request body a handler left unread is read and
// dropped to keep the connection; beyond it the connection closes.
const maxDrain = 256 << 10

// conn is one client connection and the buffers its requests reuse.
type conn struct {
	s          *Server
	rwc        net.Conn
	remoteAddr string
	cr         connReader
	br         *bufio.Reader
	bw         *bufio.Writer
	res        response
	scratch    [32]byte
	io         rawIO

	// ctx is every request's context: it ends when the client is seen to
	// leave, or when the connection closes.
	ctx *connContext

	state  atomic.Int32
	since  atomic.Int64 // when the current state began, in Unix nanoseconds
	served atomic.Bool  // a request was answered: the next wait is idle time (the sweeper reads it)

	// bgDone is closed when the background read of a streamed answer ends.
	bgDone    chan struct{}
	bgAborted atomic.Bool
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{s: s, rwc: rwc, remoteAddr: rwc.RemoteAddr().String()}
	c.cr.c = c
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.io.init(rwc)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(&c.io)
	c.res.c = c
	c.res.header = http.Header{}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.std)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, rwc.LocalAddr())
	c.ctx = newConnContext(ctx)
	c.state.Store(stateIdle)
	c.since.Store(time.Now().UnixNano())
	return c
}

// expired reports whether c waited too long for a request or its header.
// A new connection's wait for its first request is bounded by the header
// timeout: a client that connects and sends nothing holds it no longer.
func (c *conn) expired(now time.Time) bool {
	var limit time.Duration
	switch c.state.Load() {
	case stateIdle:
		limit = c.s.IdleTimeout
		if !c.served.Load() || limit <= 0 {
			limit = c.s.ReadHeaderTimeout
		}
	case stateHeader:
		limit = c.s.ReadHeaderTimeout
	default:
		return false
	}
	return limit > 0 && now.UnixNano()-c.since.Load() > int64(limit)
}

// serve answers c's requests one after another until the client closes,
// asks to close, or a request cannot be read.
func (c *conn) serve() {
	hijacked := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("h1server: panic serving %s: %v\n%s", c.remoteAddr, err, buf)
		}
		c.close(hijacked || c.res.hijacked) // a handler that panics after Hijack still owns the connection
	}()
	for {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(stateIdle, stateHeader) {
			return // Shutdown closed it
		}
		c.since.Store(time.Now().UnixNano())
		req, fast := readRequestFast(c.br)
		if !fast {
			var err error
			c.cr.limit(c.s.MaxHeaderBytes)
			req, err = http.ReadRequest(c.br)
			c.cr.unlimit()
			if err != nil {
				c.refuse(err)
				return
			}
		}
		if code, msg := check(req, !fast); code != 0 {
			c.writeError(code, msg)
			return
		}
		c.state.Store(stateActive)
		req.RemoteAddr = c.remoteAddr
		req = req.WithContext(c.ctx)
		w := &c.res
		w.reset(req)
		c.s.Handler.ServeHTTP(w, req)
		if w.hijacked {
			hijacked = true
			return
		}
		if !w.finish() || c.ctx.Err() != nil {
			return
		}
		c.served.Store(true)
		c.since.Store(time.Now().UnixNano())
		if !c.state.CompareAndSwap(stateActive, stateIdle) || c.s.closed.Load() {
			return
		}
	}
}

// close ends the connection, unless a handler took it over.
func (c *conn) close(hijacked bool) {
	c.ctx.end()
	c.s.remove(c)
	if hijacked {
		return // the buffers went with the connection
	}
	c.rwc.Close()
	c.br.Reset(nil)
	readers.Put(c.br)
	c.bw.Reset(nil)
	writers.Put(c.bw)
}

// check refuses what http.ReadRequest accepts but a server must not:
// what net/http's server checks after reading a request. The header
// fields are checked only when fields is set: readRequestFast already
// refused invalid names and values.
func check(req *http.Request, fields bool) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	if fields {
		for k, vv := range req.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				return http.StatusBadRequest, "invalid header name"
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					return http.StatusBadRequest, "invalid header value"
				}
			}
		}
	}
	if ex := req.Header["Expect"]; len(ex) > 0 && req.ProtoAtLeast(1, 1) {
		if len(ex) > 1 || !strings.EqualFold(ex[0], "100-continue") {
			return http.StatusExpectationFailed, "unsupported Expect"
		}
	}
	return 0, ""
}

// refuse answers a request that could not be read, when there is anyone
// left to answer.
func (c *conn) refuse(err error) {
	var ne net.Error
	switch {
	case c.cr.hitLimit:
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		// The client left, or the connection was closed under the read.
	case strings.Contains(err.Error(), "unsupported transfer encoding"):
		c.writeError(http.StatusNotImplemented, "unsupported transfer encoding")
	default:
		c.writeError(http.StatusBadRequest, "")
	}
}

// writeError writes a short plain-text error and leaves the connection to
// be closed, as net/http does for requests it cannot serve.
func (c *conn) writeError(code int, msg string) {
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	text := status
	if msg != "" {
		text += ": " + msg
	}
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.rwc, "HTTP/1.1 "+status+
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+text)
	c.closeWriteAndWait()
}

// closeWriteAndWait ends the server's side and reads a little of what the
// client still sends before the connection closes: closing with unread
// data would reset it, and the client might lose the answer (net/http's
// rstAvoidanceDelay).
func (c *conn) closeWriteAndWait() {
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c.rwc, 256<<10)
}

// startBackgroundRead watches a streamed answer's connection for the client
// leaving, which cancels the request's context. Without it a handler
// waiting on a quiet upstream stream would never learn the client is gone.
func (c *conn) startBackgroundRead() {
	c.bgAborted.Store(false)
	c.bgDone = make(chan struct{})
	go func() {
		defer close(c.bgDone)
		n, err := c.rwc.Read(c.cr.byteBuf[:])
		if n == 1 {
			// A pipelined request: keep its first byte.
			c.cr.hasByte = true
			return
		}
		if err != nil && !c.bgAborted.Load() {
			c.ctx.end()
		}
	}()
}

// stopBackgroundRead ends the background read, if one runs, and waits for
// it.
func (c *conn) stopBackgroundRead() {
	if c.bgDone == nil {
		return
	}
	c.bgAborted.Store(true)
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-c.bgDone
	c.bgDone = nil
	_ = c.rwc.SetReadDeadline(time.Time{})
}

var aLongTimeAgo = time.Unix(1, 0)

// connReader reads the connection for the bufio.Reader, bounding a
// request's header and handing back the byte a background read took.
type connReader struct {
	c        *conn
	limited  bool
	remain   int64
	hitLimit bool
	hasByte  bool
	byteBuf  [1]byte
}

// limit bounds what may be read until unlimit: a request line and header
// of at most max bytes, plus the slack net/http allows.
func (cr *connReader) limit(max int) {
	if max <= 0 {
		max = http.DefaultMaxHeaderBytes
	}
	cr.limited, cr.remain = true, int64(max)+4096-int64(cr.c.br.Buffered())
}

func (cr *connReader) unlimit() { cr.limited = false }

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.limited {
		if cr.remain <= 0 {
			cr.hitLimit = true
			return 0, io.EOF
		}
		if int64(len(p)) > cr.remain {
			p = p[:cr.remain]
		}
	}
	if cr.hasByte {
		cr.hasByte = false
		p[0] = cr.byteBuf[0]
		cr.remain--
		return 1, nil
	}
	n, err := cr.c.io.read(p)
	cr.remain -= int64(n)
	return n, err
}
