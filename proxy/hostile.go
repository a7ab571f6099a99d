package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// What the proxy adds to net/http's server against hostile clients.
//
// net/http already answers 400 to an HTTP/1.x request line whose method is
// not a token, 501 to a Transfer-Encoding other than a single "chunked",
// 400 to conflicting Content-Lengths, and 431 to headers over
// MaxHeaderBytes. It does not check the :method of an HTTP/2 request, and it
// keeps a connection open after a request that carried both Content-Length
// and Transfer-Encoding (RFC 9112, section 6.1 says close it; golang/go#80942).

// closeValue is the Connection header value that makes net/http's server
// close the connection after the answer.
var closeValue = []string{"close"}

// admit refuses what no backend should see, and marks requests after which
// the client's connection must close. It reports whether st may go on.
func (p *Proxy) admit(st *reqState) bool {
	r := st.in
	if !httpguts.ValidHeaderFieldName(r.Method) {
		// RFC 9110, section 9.1: a method is a token. HTTP/1.x never gets
		// here (net/http answers 400 itself); an HTTP/2 :method such as
		// "GET /internal HTTP/1.1 x" would otherwise be written upstream as
		// a request line of the client's making.
		plainError(&st.rw, http.StatusBadRequest, "the request method is not a valid token\n")
		return false
	}
	if r.Method == http.MethodConnect {
		plainError(&st.rw, http.StatusMethodNotAllowed, "CONNECT is not supported: this is not an open proxy\n")
		return false
	}
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		// HTTP/1.0 has no Transfer-Encoding (RFC 9112, section 6.1: a
		// server that receives one must treat the framing as faulty); net/http
		// ignores the field and reads the body by Content-Length, so the
		// chunks would be read as the next request. Refuse it where the
		// connection can tell (firstHeader), and never keep an HTTP/1.0
		// connection alive, so that where it cannot tell, nothing after the
		// request is read.
		st.rw.Header()["Connection"] = closeValue
		if hasTE, _ := firstHeader(r); hasTE {
			plainError(&st.rw, http.StatusBadRequest, "Transfer-Encoding is not allowed in HTTP/1.0\n")
			return false
		}
	} else if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// net/http removes Content-Length (and Transfer-Encoding) from a
		// chunked request before the handler runs, so a request that had
		// both cannot be told from one that was only chunked. RFC 9112
		// requires closing the connection after the former; closing after
		// every chunked HTTP/1.x request does that, at the cost of a new
		// connection for the rare client that streams a chunked upload.
		st.rw.Header()["Connection"] = closeValue
	}
	return true
}

// bodyError answers a request whose body could not be read.
func (st *reqState) bodyError(err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		st.rw.Header()["Connection"] = closeValue
		plainError(&st.rw, http.StatusRequestTimeout, "the request body did not arrive in time\n")
	case errors.As(err, &mbe):
		plainError(&st.rw, http.StatusRequestEntityTooLarge, "the request body is too large\n")
	default:
		st.rw.Header()["Connection"] = closeValue
		plainError(&st.rw, http.StatusBadRequest, "could not read the request body\n")
	}
}

// timedBody is a client's request body whose every read must make progress
// within timeout (proxy.body_timeout): it moves the connection's (or the
// HTTP/2 stream's) read deadline before each read and clears it at the end
// of the body, so a client that announces a body and then sends it a byte
// at a time, or not at all, is cut off instead of holding a connection and
// a goroutine for ever. Reads happen on the handler's goroutine or, for a
// streamed body, on a Transport goroutine, one at a time.
type timedBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration

	// mu orders deadline changes with end: once the handler has returned,
	// the connection may carry the next request (HTTP/1) or the stream's
	// writer is gone (HTTP/2, where a late call would dereference nil), so
	// no deadline may be touched after end.
	mu    sync.Mutex
	ended bool // the handler is returning
	done  bool // EOF or an error was seen; the deadline is cleared
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.timeout <= 0 {
		return b.rc.Read(p)
	}
	b.mu.Lock()
	if !b.ended && !b.done {
		_ = b.ctl.SetReadDeadline(time.Now().Add(b.timeout))
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	if err != nil {
		b.mu.Lock()
		if !b.ended && !b.done && !errors.Is(err, os.ErrDeadlineExceeded) {
			// Leave no deadline behind for net/http's background read,
			// which watches an HTTP/1 connection once its body is read.
			_ = b.ctl.SetReadDeadline(time.Time{})
		}
		b.done = true
		b.mu.Unlock()
	}
	return n, err
}

// Close does not close the client's body; net/http does after the handler.
func (b *timedBody) Close() error { return nil }

// end is called by the handler before it returns: no read moves a deadline
// any more.
func (b *timedBody) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended = true
	if !b.done && b.timeout > 0 {
		// The body was not read to its end (a backend answered early, or
		// the try failed): net/http reads and discards some of what is left
		// after the handler, which must not wait for a stalled client for
		// ever.
		_ = b.ctl.SetReadDeadline(time.Now().Add(b.timeout))
	}
}
