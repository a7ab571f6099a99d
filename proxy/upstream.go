package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coopr-gslb/coopr-gslb/internal/rawio"
)

// The lean upstream client.
//
// http.Transport runs every exchange on three goroutines (the caller, the
// connection's writeLoop and readLoop) that hand the request and the answer
// to each other over channels; on a busy proxy those hand-offs, and the
// wake-ups and futex calls they cost, were most of the CPU a request took.
// For an ordinary HTTP/1.1 request the proxy instead does the whole exchange
// on the handler's goroutine over a pooled keep-alive connection: it writes
// the request (itself on the direct path, see direct.go, otherwise with
// (*http.Request).Write), flushes once, and reads the answer (plain ones
// itself, see answer.go, others with http.ReadResponse). Because it writes the request itself, it knows
// exactly whether anything reached the backend, and the try's timeout is a
// deadline on the connection rather than a timer and a context.
//
// Upgrades (WebSockets), Expect: 100-continue and bodies too large to buffer
// still go through http.Transport, which handles them (full duplex, 1xx
// negotiation) and is not where the time goes.

// maxIdlePerEndpoint bounds the idle keep-alive connections kept per endpoint.
const maxIdlePerEndpoint = 256

// maxLeanBody is the largest buffered request body sent by the lean client.
// A larger body is written while the backend may already be answering, which
// http.Transport handles by reading and writing at the same time.
const maxLeanBody = 256 << 10

// max1xx bounds the informational answers read before the final one.
const max1xx = 5

// errUnexpectedUpgrade is a 101 answer to a request that asked for no upgrade.
var errUnexpectedUpgrade = errors.New("proxy: unexpected 101 Switching Protocols from upstream")

// upConn is one keep-alive connection to an endpoint with its buffers. It is
// owned by one exchange at a time, or by its endpoint's idle pool.
type upConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	ep     *endpoint
	idleAt time.Time
	// written counts the bytes of the current request that the kernel took.
	written int64
	reused  bool

	// The request's last bytes, kept to be written by the next Read (see
	// upwait.go), and that step's state.
	raw         syscall.RawConn // nil: write and read the ordinary way
	rawStepFn   func(uintptr) bool
	deferWrite  bool
	pending     []byte
	writeFailed bool // writing the kept bytes failed
	rawBuf      []byte
	rawN        int
	rawErr      error

	// deadline is the current try's; the write deadline is set only when
	// a write goes the ordinary way.
	deadline         time.Time
	writeDeadlineSet bool
}

// Write counts what reaches the connection, so a failed write knows whether
// any of the request left the proxy. After deferLast it keeps the bytes for
// the next Read instead.
func (pc *upConn) Write(b []byte) (int, error) {
	if pc.deferWrite {
		pc.deferWrite = false
		pc.pending = b
		return len(b), nil
	}
	if !pc.writeDeadlineSet && !pc.deadline.IsZero() {
		_ = pc.conn.SetWriteDeadline(pc.deadline)
		pc.writeDeadlineSet = true
	}
	n, err := pc.conn.Write(b)
	pc.written += int64(n)
	return n, err
}

// close closes the connection and gives its buffers back.
func (pc *upConn) close() {
	_ = pc.conn.Close()
	if pc.br != nil {
		pc.br.Reset(nil)
		bufReaders.Put(pc.br)
		pc.bw.Reset(nil)
		bufWriters.Put(pc.bw)
		pc.br, pc.bw = nil, nil
	}
}

var (
	bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// connPool is an endpoint's idle keep-alive connections, most recently used
// last. It must not be copied.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool // the proxy is closed: connections are not kept
}

// get returns the most recently used idle connection that has not been idle
// longer than timeout, or nil. Older ones are closed: they are older still.
func (cp *connPool) get(now time.Time, timeout time.Duration) *upConn {
	cp.mu.Lock()
	n := len(cp.idle)
	if n == 0 {
		cp.mu.Unlock()
		return nil
	}
	pc := cp.idle[n-1]
	cp.idle[n-1] = nil
	cp.idle = cp.idle[:n-1]
	if timeout <= 0 || now.Sub(pc.idleAt) <= timeout {
		cp.mu.Unlock()
		return pc
	}
	stale := append([]*upConn{pc}, cp.idle...)
	clear(cp.idle)
	cp.idle = cp.idle[:0]
	cp.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
	return nil
}

// put keeps pc for the next request, or closes it when the pool is full or
// closed.
func (cp *connPool) put(pc *upConn, now time.Time) {
	pc.idleAt = now
	cp.mu.Lock()
	if cp.closed || len(cp.idle) >= maxIdlePerEndpoint {
		cp.mu.Unlock()
		pc.close()
		return
	}
	cp.idle = append(cp.idle, pc)
	cp.mu.Unlock()
}

// reap closes the connections idle longer than timeout, and every idle
// connection when timeout is negative; closing also refuses later puts.
func (cp *connPool) reap(now time.Time, timeout time.Duration, closing bool) {
	cp.mu.Lock()
	if closing {
		cp.closed = true
	}
	k := 0
	for k < len(cp.idle) && (timeout < 0 || (timeout > 0 && now.Sub(cp.idle[k].idleAt) > timeout)) {
		k++
	}
	if k == 0 {
		cp.mu.Unlock()
		return
	}
	stale := make([]*upConn, k)
	copy(stale, cp.idle[:k])
	m := copy(cp.idle, cp.idle[k:])
	clear(cp.idle[m:])
	cp.idle = cp.idle[:m]
	cp.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// reapIdle closes the upstream connections of the current view's endpoints
// that were idle longer than the idle timeout.
func (p *Proxy) reapIdle() {
	v := p.view.Load()
	if v == nil || p.idleTimeout <= 0 {
		return
	}
	now := time.Now()
	for _, sv := range v.services {
		for _, tv := range sv.targets {
			for _, ep := range tv.eps {
				ep.conns.reap(now, p.idleTimeout, false)
			}
		}
	}
}

// lean reports whether out can be sent by the lean client: an HTTP/1.1
// request without an upgrade or Expect, whose body, if any, is buffered and
// small.
func (st *reqState) lean(out *http.Request) bool {
	if st.streamBody != nil || len(st.body) > maxLeanBody {
		return false
	}
	h := out.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0
}

// exchange is one request and answer on an upstream connection. It is the
// answer's body: reading it to the end and closing it gives the connection
// back to the endpoint's pool.
type exchange struct {
	pc   *upConn
	body io.ReadCloser
	// state moves once from active to done (the handler finished with the
	// connection) or to aborted (the client left or the stream was closed,
	// and the connection with it).
	state atomic.Int32
	stop  func() bool
	// hook and hookID, when the context offers an abort hook (h1server's
	// does), replace stop: no context.AfterFunc per exchange.
	hook      abortHooker
	hookID    uint64
	eof       bool
	keepAlive bool
	closed    bool
}

const (
	exActive int32 = iota
	exDone
	exAborted
)

// abort cuts the exchange from another goroutine: the client left, or the
// stream watcher closes the stream. A finished exchange is left alone, since
// its connection may already serve another request.
func (ex *exchange) abort() {
	if ex.state.CompareAndSwap(exActive, exAborted) {
		_ = ex.pc.conn.Close()
	}
}

// finish ends the exchange on the handler's goroutine, keeping the
// connection for the next request when reuse is true.
func (ex *exchange) finish(reuse bool) {
	if ex.hook != nil {
		ex.hook.ClearAbort(ex.hookID)
	} else if ex.stop != nil {
		ex.stop()
	}
	if ex.state.CompareAndSwap(exActive, exDone) && reuse && ex.pc.br.Buffered() == 0 {
		ex.pc.ep.conns.put(ex.pc, time.Now())
		return
	}
	ex.pc.close()
}

func (ex *exchange) Read(b []byte) (int, error) {
	if ex.closed {
		// The connection may already carry another exchange.
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := ex.body.Read(b)
	if err == io.EOF {
		ex.eof = true
	}
	return n, err
}

// Close gives the connection back when the answer was read to its end, and
// closes it otherwise: draining an unread answer (an event stream) could take
// forever.
func (ex *exchange) Close() error {
	if !ex.closed {
		ex.closed = true
		ex.finish(ex.eof && ex.keepAlive)
	}
	return nil
}

// leanRoundTrip sends out to ep over a pooled connection on the calling
// goroutine, waiting at most timeout for the answer's headers; with out nil
// (the direct path), it writes st.in itself with writeRequest. It sets a's
// flags as the httptrace hooks would: gotConn once a connection is made,
// wroteHeaders once any byte of the request left. A reused connection that
// the backend had closed is replaced by a fresh one, as http.Transport does:
// when nothing was written, or when the request may be sent twice and no
// byte of an answer came back. On success the answer's body owns the
// connection and abort cuts the exchange.
func (st *reqState) leanRoundTrip(out *http.Request, ep *endpoint, a *attempt, timeout time.Duration) (res *http.Response, abort func(), err error) {
	p := st.p
	// Informational answers go to the client: on the direct path straight
	// to its writer, otherwise through ReverseProxy's trace hook.
	req, got1xx := st.in, st.forward1xx
	if out != nil {
		req, got1xx = out, nil
		if tr := httptrace.ContextClientTrace(out.Context()); tr != nil {
			got1xx = tr.Got1xxResponse
		}
	}
	ctx := req.Context()
	deadline := time.Now().Add(timeout)
	fresh := false
	for {
		a.gotConn.Store(false)
		a.wroteHeaders.Store(false)
		var pc *upConn
		if !fresh {
			pc = ep.conns.get(time.Now(), p.idleTimeout)
			if pc != nil && !st.replayable && !idleConnAlive(pc.conn) {
				// A request that must not be sent twice could not be
				// resent if the backend had closed this connection.
				pc.close()
				continue
			}
		}
		if pc == nil {
			d := net.Dialer{Timeout: st.v.cfg.DialTimeout.D(), Deadline: deadline, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, "tcp", ep.addr)
			if err != nil {
				return nil, nil, err
			}
			pc = &upConn{conn: c, ep: ep, br: bufReaders.Get().(*bufio.Reader), bw: bufWriters.Get().(*bufio.Writer)}
			if sc, ok := c.(syscall.Conn); ok && rawio.Supported {
				if raw, err := sc.SyscallConn(); err == nil {
					pc.raw = raw
					pc.rawStepFn = pc.rawStep
				}
			}
			pc.br.Reset(pc)
			pc.bw.Reset(pc)
		} else {
			pc.reused = true
		}
		a.gotConn.Store(true)
		ex := &exchange{pc: pc}
		abort := ex.abort // one closure for both uses
		if h, ok := ctx.(abortHooker); ok {
			ex.hook, ex.hookID = h, h.SetAbort(abort)
		} else {
			ex.stop = context.AfterFunc(ctx, abort)
		}
		// The read deadline bounds the answer's wait, and the write of the
		// request's last bytes with it (upwait.go); earlier bytes of a large
		// request set the write deadline as they go (Write).
		_ = pc.conn.SetReadDeadline(deadline)
		pc.deadline, pc.writeDeadlineSet = deadline, false
		pc.written, pc.writeFailed, pc.pending = 0, false, nil
		var err error
		if out == nil {
			st.writeRequest(pc.bw) // errors stick to bw
		} else {
			if st.body != nil {
				out.Body = st.freshBody()
			}
			err = out.Write(pc.bw)
		}
		if err == nil {
			// The answer's first read writes what Flush kept (upwait.go).
			pc.deferLast()
			err = pc.bw.Flush()
			pc.deferWrite = false
		}
		var readErr error
		if err == nil {
			res, readErr = readAnswer(pc.br, req, got1xx)
			if readErr != nil && pc.writeFailed {
				err, readErr = readErr, nil
			}
		}
		if pc.written > 0 {
			a.wroteHeaders.Store(true)
		}
		if err != nil {
			ex.finish(false)
			if pc.reused && (pc.written == 0 || st.replayable) && st.in.Context().Err() == nil {
				fresh = true
				continue
			}
			return nil, nil, leanErr(err, a)
		}
		if err = readErr; err != nil {
			ex.finish(false)
			if pc.reused && st.replayable && errors.Is(err, errNoAnswer) && st.in.Context().Err() == nil {
				fresh = true
				continue
			}
			return nil, nil, leanErr(err, a)
		}
		_ = pc.conn.SetReadDeadline(time.Time{})
		if pc.writeDeadlineSet {
			_ = pc.conn.SetWriteDeadline(time.Time{})
			pc.writeDeadlineSet = false
		}
		ex.keepAlive = !res.Close && (out == nil || !out.Close)
		if res.Body == http.NoBody || res.Body == nil {
			ex.eof = true
			ex.closed = true
			ex.finish(ex.keepAlive)
			res.Body = http.NoBody
		} else {
			ex.body = res.Body
			res.Body = ex
		}
		return res, abort, nil
	}
}

// abortHooker is a request context that runs one abort function when it
// ends, set and cleared without allocating (h1server's connection context).
type abortHooker interface {
	SetAbort(abort func()) (id uint64)
	ClearAbort(id uint64)
}

// errNoAnswer marks a connection that ended before any byte of an answer:
// on a reused connection, the backend had closed it while it was idle.
var errNoAnswer = errors.New("proxy: connection closed before any answer")

type noAnswerError struct{ err error }

func (e noAnswerError) Error() string   { return errNoAnswer.Error() + ": " + e.err.Error() }
func (e noAnswerError) Unwrap() []error { return []error{errNoAnswer, e.err} }

// readAnswer reads the final answer to out from br, passing informational
// (1xx) answers to got1xx, if not nil, as http.Transport passes them to the
// trace of out's context.
func readAnswer(br *bufio.Reader, out *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, noAnswerError{err}
		}
		return nil, err
	}
	if res, ok := readAnswerFast(br, out); ok {
		return res, nil
	}
	for n := 0; ; n++ {
		res, err := http.ReadResponse(br, out)
		if err != nil {
			return nil, err
		}
		code := res.StatusCode
		switch {
		case code == http.StatusSwitchingProtocols:
			return nil, errUnexpectedUpgrade
		case code >= 100 && code < 200:
			if n >= max1xx {
				return nil, errors.New("proxy: too many 1xx informational answers")
			}
			if got1xx != nil {
				if err := got1xx(code, textproto.MIMEHeader(res.Header)); err != nil {
					return nil, err
				}
			}
			continue
		}
		return res, nil
	}
}

// leanErr marks a try that ran out of time as expired, so that it is told
// from a client that left, and returns err.
func leanErr(err error, a *attempt) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		a.phase.Store(phaseExpired)
	}
	return err
}
