package proxy

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
)

// maxBufferedAnswer bounds the body of a 502/503/504 answer that is kept
// while the request is retried, so it can be returned if every retry fails.
// A larger answer is returned at once instead of being retried.
const maxBufferedAnswer = 64 << 10

// keepAnswer reads a small answer into memory so that the request can be
// retried and the answer still returned if the retries fail. It returns false
// with an equivalent response when the body is too large to keep.
func keepAnswer(res *http.Response) (*http.Response, bool) {
	if res.ContentLength > maxBufferedAnswer {
		return res, false
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBufferedAnswer+1))
	if len(body) > maxBufferedAnswer {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), res.Body), res.Body}
		return res, false
	}
	res.Body.Close()
	if err != nil {
		// A broken body is no answer worth returning later; keep the status.
		body = nil
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.TransferEncoding = nil
	return res, true
}

// prepareBody buffers a request body up to proxy.max_buffered_body so that
// it can be sent again (rewindBody); a larger body streams through once.
// The buffer grows with the bytes that arrive, whatever Content-Length
// promises: a client that announces a megabyte and sends nothing costs
// nothing. Every read is bounded by proxy.body_timeout (timedBody).
func (st *reqState) prepareBody() error {
	r := st.in
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	st.timed = &timedBody{rc: r.Body, ctl: http.NewResponseController(st.rw.ResponseWriter), timeout: st.v.cfg.BodyTimeout.D()}
	r.Body = st.timed
	limit := st.v.maxBody
	if r.ContentLength > limit {
		st.streamBody = &countingBody{rc: r.Body}
		r.Body = st.streamBody
		return nil
	}
	// Read one byte past the limit to learn which side of it a body of
	// unknown length is.
	// The buffer is not pooled: a Transport goroutine may still be reading
	// it when the request ends (an answer that came before the whole body
	// was sent).
	buf, full, err := readUpTo(make([]byte, 0, min(limit+1, 512)), r.Body, limit+1, &st.p.buffered)
	st.reserved = int64(cap(buf))
	if err != nil {
		return err
	}
	if full || int64(len(buf)) > limit {
		// A body of unknown length over the limit, or any body while the
		// proxy's buffers are full: keep what was read and stream the rest,
		// without retries.
		st.streamBody = &countingBody{rc: struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}}
		r.Body = st.streamBody
		return nil
	}
	st.body = buf
	// Send it with a Content-Length: backends handle that best.
	r.TransferEncoding = nil
	r.ContentLength = int64(len(buf))
	return nil
}

// maxBufferedTotal bounds the request bodies buffered at once by all
// requests together: past it, bodies stream (and are not retried) instead,
// so that many clients sending almost all of a large body cannot pin
// max_buffered_body each.
const maxBufferedTotal = 256 << 20

// readUpTo appends what r has to buf until EOF or max bytes in all,
// growing buf as bytes arrive and counting its capacity in total. It stops
// early, reporting full, when growing would take total past
// maxBufferedTotal.
func readUpTo(buf []byte, r io.Reader, max int64, total *atomic.Int64) (_ []byte, full bool, _ error) {
	total.Add(int64(cap(buf)))
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			old := cap(buf)
			grown := append(buf, 0)[:len(buf)]
			if total.Add(int64(cap(grown)-old)) > maxBufferedTotal {
				total.Add(-int64(cap(grown) - old))
				return buf, true, nil
			}
			buf = grown
		}
		room := buf[len(buf):cap(buf)]
		if int64(len(room)) > max-int64(len(buf)) {
			room = room[:max-int64(len(buf))]
		}
		n, err := r.Read(room)
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, false, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

// rewindBody gives r back the body prepareBody buffered, for ReverseProxy
// to send.
func (st *reqState) rewindBody() {
	if st.body == nil {
		return
	}
	r := st.in
	r.Body = st.freshBody()
	r.GetBody = func() (io.ReadCloser, error) { return st.freshBody(), nil }
}

// freshBody returns a reader over the buffered body, or the streaming body.
func (st *reqState) freshBody() io.ReadCloser {
	switch {
	case st.body != nil:
		return io.NopCloser(bytes.NewReader(st.body))
	case st.streamBody != nil:
		return st.streamBody
	}
	return nil
}

// rewindable reports whether the body can be sent again: it is buffered,
// absent, or streaming but not yet read at all.
func (st *reqState) rewindable() bool {
	return st.streamBody == nil || st.streamBody.n.Load() == 0
}

// countingBody passes a body through, counting what was read so the proxy
// knows whether a failed try consumed any of it.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Close does not close the client's body: a try that failed before reading
// it leaves it for the next try, and net/http closes it after the handler.
func (c *countingBody) Close() error { return nil }
