package h1server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of one request. A connection reuses
// one for all its requests; a handler must not keep it after it returns,
// which the http.ResponseWriter contract already asks.
type response struct {
	c      *conn
	req    *http.Request
	body   *requestBody // nil when the request has no body
	header http.Header

	status      int
	wroteHeader bool // the final status is set
	headerSent  bool // the status line and header are in the buffer
	bodyAllowed bool
	declared    int64 // the Content-Length the handler set; -1 if none
	written     int64
	chunked     bool
	closeAfter  bool
	hijacked    bool
	failed      bool // a write to the client failed
}

func (w *response) reset(req *http.Request) {
	clear(w.header)
	*w = response{c: w.c, req: req, header: w.header, declared: -1}
	w.closeAfter = req.Close
	if req.Body != nil && req.Body != http.NoBody {
		w.body = &requestBody{src: req.Body, w: w}
		if req.ProtoAtLeast(1, 1) && len(req.Header["Expect"]) > 0 {
			w.body.needContinue = true
		}
		req.Body = w.body
	}
}

func (w *response) Header() http.Header { return w.header }

// WriteHeader sets the status. Informational answers (1xx but 101) are
// written at once with the header as it stands, as net/http does.
func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1server: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		if w.failed {
			return
		}
		if code == http.StatusContinue && w.body != nil {
			// A handler passing on its upstream's 100 Continue: one is
			// enough, whoever sends it first.
			if w.body.continueSent {
				return
			}
			w.body.needContinue, w.body.continueSent = false, true
		}
		w.writeStatusLine(code)
		w.writeHeader(true)
		w.flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.bodyAllowed = w.req.Method != http.MethodHead && code != http.StatusNoContent &&
		code != http.StatusNotModified && code >= 200
	if cl := w.header["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
}

// sendHeader writes the status line and header, choosing how the body is
// framed: the handler's Content-Length, the whole body's length when the
// handler is done, chunks for HTTP/1.1, or the connection's end for 1.0.
func (w *response) sendHeader(done bool) {
	w.headerSent = true
	if httpguts.HeaderValuesContainsToken(w.header["Connection"], "close") {
		w.closeAfter = true
	}
	if w.c.s.closed.Load() {
		w.closeAfter = true // shutting down: tell the client not to reuse it
	}
	if b := w.body; b != nil && !b.sawEOF && (b.needContinue || w.req.ContentLength < 0 || w.req.ContentLength > maxDrain) {
		// A body the handler may leave unread that is too large to drain,
		// or one the client was never asked to send.
		w.closeAfter = true
	}
	switch {
	case !w.bodyAllowed:
		if w.status == http.StatusNoContent || w.status < 200 {
			delete(w.header, "Content-Length")
		}
	case w.declared >= 0:
	case done:
		w.declared = w.written
		w.header["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeAfter = true
	}
	w.writeStatusLine(w.status)
	w.writeHeader(false)
}

func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeHeader writes the handler's header fields, and for a final answer
// the framing, connection and date fields the server owns.
func (w *response) writeHeader(informational bool) {
	bw := w.c.bw
	for k, vv := range w.header {
		switch k {
		case "Transfer-Encoding", "Connection":
			continue
		case "Content-Length":
			if informational {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = newlineToSpace.Replace(v)
			}
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
	if !informational {
		if w.chunked {
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		}
		switch {
		case w.closeAfter:
			bw.WriteString("Connection: close\r\n")
		case !w.req.ProtoAtLeast(1, 1):
			bw.WriteString("Connection: keep-alive\r\n")
		}
		if _, ok := w.header["Date"]; !ok {
			bw.WriteString("Date: ")
			bw.Write(httpDate())
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	if w.failed {
		return 0, net.ErrClosed
	}
	if !w.headerSent {
		w.sendHeader(false)
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.fail()
	}
	return n, err
}

func (w *response) Flush() { _ = w.FlushError() }

// FlushError sends what is buffered. The first flush of an answer whose
// request was read in full starts watching for the client leaving: a
// flushed answer is a stream, which may stay quiet for a long time.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHeader(false)
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.c.bgDone == nil && (w.body == nil || w.body.sawEOF) && !w.closeAfter {
		w.c.startBackgroundRead()
	}
	return nil
}

func (w *response) flush() error {
	if w.failed {
		return net.ErrClosed
	}
	if err := w.c.bw.Flush(); err != nil {
		w.fail()
		return err
	}
	return nil
}

// fail marks the client gone: the handler's context ends, so whatever it
// waits on upstream is dropped too.
func (w *response) fail() {
	w.failed = true
	w.closeAfter = true
	w.c.ctx.end()
}

// Hijack hands the connection to the handler, with what is buffered.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.c.stopBackgroundRead()
	if w.headerSent {
		if err := w.flush(); err != nil {
			return nil, nil, err
		}
	}
	w.hijacked = true
	w.c.s.remove(w.c)
	return w.c.rwc, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// SetReadDeadline, SetWriteDeadline and EnableFullDuplex serve
// http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }
func (w *response) EnableFullDuplex() error            { return nil }

// finish completes the answer after the handler returned, and reports
// whether the connection may carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHeader(true)
	}
	if w.chunked {
		w.writeTrailers()
	}
	if w.bodyAllowed && w.declared >= 0 && w.written < w.declared {
		// The client waits for bytes that will not come.
		w.closeAfter = true
	}
	w.flush()
	w.c.stopBackgroundRead()
	if w.body != nil && !w.closeAfter {
		w.closeAfter = !w.body.drain()
	}
	return !w.closeAfter
}

// writeTrailers ends a chunked body with the trailers the handler set:
// declared in the Trailer header, or named with http.TrailerPrefix.
func (w *response) writeTrailers() {
	bw := w.c.bw
	bw.WriteString("0\r\n")
	for _, decl := range w.header["Trailer"] {
		for name := range strings.SplitSeq(decl, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			w.writeTrailer(name, w.header[name])
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			w.writeTrailer(name, vv)
		}
	}
	bw.WriteString("\r\n")
}

func (w *response) writeTrailer(name string, vv []string) {
	if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidTrailerHeader(name) {
		return
	}
	bw := w.c.bw
	for _, v := range vv {
		bw.WriteString(name)
		bw.WriteString(": ")
		bw.WriteString(newlineToSpace.Replace(v))
		bw.WriteString("\r\n")
	}
}

// requestBody is a request's body as the handler sees it: the first read
// answers Expect: 100-continue, and Close does not read the rest (a large
// upload would hold the handler); the connection drains a little instead.
type requestBody struct {
	src          io.ReadCloser
	w            *response
	needContinue bool
	continueSent bool
	sawEOF       bool
	closed       bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.needContinue {
		b.needContinue = false
		if !b.w.wroteHeader && !b.w.failed {
			b.continueSent = true
			b.w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			b.w.flush()
		}
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.sawEOF = true
	}
	return n, err
}

func (b *requestBody) Close() error {
	b.closed = true
	return nil
}

// drain reads and drops what the handler left of the body, up to maxDrain,
// and reports whether the connection can carry another request. A client
// that was never told to continue may not send the body at all.
func (b *requestBody) drain() bool {
	if b.sawEOF {
		return true
	}
	if b.needContinue {
		return false
	}
	n, err := io.CopyN(io.Discard, b.src, maxDrain+1)
	return err == io.EOF && n <= maxDrain
}

// dateCache is the Date header for the current second, shared by all
// connections.
type dateCache struct {
	sec int64
	b   []byte
}

var date atomic.Pointer[dateCache]

func httpDate() []byte {
	now := time.Now()
	if d := date.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateCache{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	date.Store(d)
	return d.b
}
