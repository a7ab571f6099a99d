package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The direct path.
//
// httputil.ReverseProxy clones every request (headers included), strips
// hop-by-hop headers by canonicalizing names, copies the answer's headers one
// value at a time, and (*http.Request).Write then sorts the headers it
// writes; on a busy proxy that frame cost more CPU than the proxying itself.
// Requests the lean client carries anyway (no upgrade, no Expect, a small
// buffered body or none) skip it: the lean client writes the client's request
// straight onto the upstream connection, leaving out what ReverseProxy would
// have removed, and the answer is copied to the client here. The retry loop,
// its classification, timeouts, passive health, metrics and the stream
// watcher are the same for both paths.
//
// What a backend and a client see is what ReverseProxy would have made of
// the exchange, except that request header fields are not sorted, and that
// net/http never guesses a Content-Type for an answer of unknown length
// that has none (see writeAnswer).

// direct reports whether st's request can take the direct path. Besides what
// the lean client needs, it has no trailers, and its Host and query are ones
// (*http.Request).Write would send unchanged: the rare others keep going
// through ReverseProxy rather than being reimplemented here.
func (st *reqState) direct() bool {
	r := st.in
	if st.streamBody != nil || len(st.body) > maxLeanBody || len(r.Trailer) > 0 {
		return false
	}
	if len(r.Header["Upgrade"]) > 0 || len(r.Header["Expect"]) > 0 {
		return false
	}
	return plainHost(st.upstreamHost()) && plainQuery(r.URL.RawQuery)
}

// serveDirect proxies st's request on the direct path: the retry loop with
// the lean client writing the request (writeRequest), then the answer.
func (st *reqState) serveDirect() {
	st.keepForwarded = st.forwarded()
	res, err := st.roundTrip(nil)
	if err != nil {
		st.p.answerError(&st.rw, st, err)
		return
	}
	st.writeAnswer(res)
}

// upstreamHost is the Host sent upstream: the client's, unless the service
// names another.
func (st *reqState) upstreamHost() string {
	if st.sv.upstreamHost != "" {
		return st.sv.upstreamHost
	}
	return st.in.Host
}

// writeRequest writes st's request to bw as ReverseProxy and
// (*http.Request).Write would have sent it: without hop-by-hop headers and
// those the Connection header names, with the forwarding headers of
// forwarded, without Go's User-Agent when the client sent none. Errors stick
// to bw; its Flush returns them.
func (st *reqState) writeRequest(bw *bufio.Writer) {
	r := st.in
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	_, _ = bw.WriteString(method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(st.requestURI())
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(st.upstreamHost())
	_, _ = bw.WriteString("\r\n")

	h := r.Header
	conn := h["Connection"]
	if ua := h["User-Agent"]; len(ua) > 0 && ua[0] != "" && !connectionNames(conn, "User-Agent") {
		writeField(bw, "User-Agent", ua[0]) // Request.Write sends the first only
	}
	switch {
	case len(st.body) > 0:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(st.body)), 10))
		_, _ = bw.WriteString("\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		// Many servers expect a length for these methods (Request.Write).
		_, _ = bw.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range h {
		if !endToEndRequest(k) || !httpguts.ValidHeaderFieldName(k) || connectionNames(conn, k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	// Tell a backend that cares that trailers can be forwarded, when the
	// client said it accepts them, as ReverseProxy does.
	if httpguts.HeaderValuesContainsToken(h["Te"], "trailers") {
		_, _ = bw.WriteString("Te: trailers\r\n")
	}
	for _, v := range st.keepForwarded {
		writeField(bw, "Forwarded", v)
	}
	writeField(bw, "X-Forwarded-For", st.fwd[0])
	writeField(bw, "X-Forwarded-Proto", st.fwd[1])
	if st.fwd[2] != "" {
		writeField(bw, "X-Forwarded-Host", st.fwd[2])
	}
	_, _ = bw.WriteString("\r\n")
	_, _ = bw.Write(st.body)
}

// writeAnswer copies res, the accepted answer, to the client as ReverseProxy
// does: without hop-by-hop headers, announcing and forwarding trailers,
// flushing every write of an answer of unknown length or an event stream.
// A failure while copying the body can only cut the client's connection: as
// ReverseProxy does, writeAnswer then panics with http.ErrAbortHandler if
// the request came through a net/http server (which recovers it, see
// http.ServerContextKey), and returns otherwise.
func (st *reqState) writeAnswer(res *http.Response) {
	w := &st.rw
	h := w.Header()
	conn := res.Header["Connection"]
	for k, vv := range res.Header {
		// Taking the slices rather than copying values is safe: res is
		// this request's own and unused after this, and the values it
		// shares with other answers (the DC header) have no spare
		// capacity, so an append copies them.
		if hopByHop(k) || connectionNames(conn, k) {
			continue
		}
		addValues(h, k, vv)
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	// ReverseProxy flushes the headers of an answer of unknown length or an
	// event stream at once, so the client learns that it started even if
	// its first bytes take a while. When they are already at hand, the
	// headers go with them instead, saving a write; net/http must then not
	// guess a Content-Type from them, which it could not have done either.
	flush := res.ContentLength == -1 || isEventStream(res.Header)
	buffered := flush && bodyBuffered(res.Body)
	if _, ok := h["Content-Type"]; buffered && !ok {
		h["Content-Type"] = nil
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	if flush && !buffered {
		_ = rc.Flush()
	}
	bufp := copyBufferPool.Get().(*[]byte)
	err := copyBody(w, res.Body, *bufp, rc, flush)
	copyBufferPool.Put(bufp)
	res.Body.Close() // gives the connection back, or closes it after an error
	if err != nil {
		if st.in.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	if len(res.Trailer) == 0 {
		return
	}
	// Force chunking, so net/http does not answer with a Content-Length and
	// no trailers.
	_ = rc.Flush()
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			addValues(h, k, vv)
		}
		return
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// forward1xx passes an informational answer (103 Early Hints) to the
// client, as ReverseProxy does.
func (st *reqState) forward1xx(code int, hdr textproto.MIMEHeader) error {
	h := st.rw.Header()
	for k, vv := range hdr {
		addValues(h, k, vv)
	}
	st.rw.WriteHeader(code)
	// WriteHeader does not clear the header map after a 1xx.
	clear(h)
	return nil
}

// copyBody copies src to w with buf, flushing after every write if flush is
// set. Unlike io.Copy it reports read errors other than io.EOF, and it does
// not hand w a ReaderFrom, which would defeat flushing.
func copyBody(w io.Writer, src io.Reader, buf []byte, rc *http.ResponseController, flush bool) error {
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// bodyBuffered reports whether the start of an answer's body was already
// read from its connection.
func bodyBuffered(body io.Reader) bool {
	ex, ok := body.(*exchange)
	return ok && ex.pc.br != nil && ex.pc.br.Buffered() > 0
}

// addValues adds vv to h[k], taking vv itself when h has no value yet.
func addValues(h http.Header, k string, vv []string) {
	if prev, ok := h[k]; ok {
		h[k] = append(prev, vv...)
		return
	}
	h[k] = vv
}

// hopByHop reports whether k, in canonical form, is a hop-by-hop header, as
// ReverseProxy lists them.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// endToEndRequest reports whether the request header k is copied upstream
// as the client sent it. Hop-by-hop headers are not; the forwarding headers
// are rewritten; Host, User-Agent and Content-Length are written first.
func endToEndRequest(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Host", "User-Agent", "Content-Length":
		return false
	}
	return !hopByHop(k)
}

// connectionNames reports whether the Connection header values conn name
// the header k: those are hop-by-hop too (RFC 9110, section 7.6.1).
func connectionNames(conn []string, k string) bool {
	for _, v := range conn {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = textproto.TrimString(name); name != "" && strings.EqualFold(name, k) {
				return true
			}
		}
	}
	return false
}

// writeField writes one header field, making the value safe as
// (*http.Request).Write does: line breaks become spaces, and surrounding
// white space goes.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	if v != "" && (isLWS(v[0]) || isLWS(v[len(v)-1])) {
		v = textproto.TrimString(v)
	}
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(v)
	_, _ = bw.WriteString("\r\n")
}

var newlineToSpace = strings.NewReplacer("\r", " ", "\n", " ")

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// requestURI returns the request target to send upstream, as
// (*url.URL).RequestURI would write it: the client's own when it agrees with
// r.URL and would be sent unchanged, which is the common case and costs
// nothing, and the URL's otherwise (an absolute form, "*", a path with
// escapes url.URL keeps no raw form of, or a URL a middleware rewrote).
func (st *reqState) requestURI() string {
	r := st.in
	u := r.URL
	path, query, hasQuery := strings.Cut(r.RequestURI, "?")
	if path == "" || path[0] != '/' || query != u.RawQuery || hasQuery != (u.ForceQuery || u.RawQuery != "") ||
		(path != u.RawPath && (u.RawPath != "" || path != u.Path)) {
		return u.RequestURI()
	}
	for i := 0; i < len(path); i++ {
		if !verbatimPathByte(path[i]) {
			return u.RequestURI()
		}
	}
	return r.RequestURI // its query is r.URL's, which plainQuery checked
}

// verbatimPathByte reports whether c in a request's path is sent as is by
// (*url.URL).EscapedPath: an unreserved or reserved character that a path
// may hold unescaped, or the start of an escape (which url.ParseRequestURI
// already checked).
func verbatimPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@[]/%", c) >= 0
}

// plainQuery reports whether ReverseProxy would send the raw query q
// unchanged: it re-encodes a query with a semicolon or a malformed escape,
// which backends could read differently from the proxy, or with more than
// 10000 parameters. A control character would make Request.Write fail.
func plainQuery(q string) bool {
	params := 1
	for i := 0; i < len(q); {
		switch c := q[i]; {
		case c == ';', c <= ' ', c == 0x7f:
			return false
		case c == '&':
			if params++; params > 10000 {
				return false
			}
		case c == '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
			continue
		}
		i++
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// plainHost reports whether Request.Write would send host unchanged: a
// valid ASCII Host without an IPv6 zone, which it would strip.
func plainHost(host string) bool {
	return httpguts.ValidHostHeader(host) && strings.IndexByte(host, '%') < 0
}
