package proxy

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// The lean client's fast answer reader.
//
// http.ReadResponse was about a tenth of the proxy's CPU under load: a
// textproto.Reader, a string per header value, a transferReader and a body
// for every answer. Nearly every answer a backend sends is the same plain
// shape: a 2xx-5xx status line, a few ordinary header fields, and a
// Content-Length (or no body at all, by rule). readAnswerFast reads that
// shape straight from the bytes already buffered, with a handful of
// allocations, and leaves everything else (1xx, chunked or close-delimited
// bodies, obs-folds, bare LFs, oddities) to http.ReadResponse. For what it
// accepts, it makes exactly the *http.Response that http.ReadResponse makes;
// FuzzReadAnswerFast holds it to that.

// readAnswerFast reads a plain answer to req (nil means GET) whose header
// block is already wholly buffered in br. It returns false, having consumed
// nothing, for an answer it does not handle; the caller then reads it with
// http.ReadResponse. On success it has consumed the header block, and the
// answer's body, if any, reads the rest from br.
//
// It accepts a status line "HTTP/1.1 " or "HTTP/1.0 ", a status code from
// 200 to 599 and an optional " reason"; header lines "Name: value" with a
// token for a name and a valid field value, each line ending in CRLF; no
// Transfer-Encoding; and a valid Content-Length (copies of one value are
// allowed, as net/http allows them), which only an answer without a body by
// rule (to HEAD, 204, 304) may leave out. An answer with more than
// maxFastFields header lines goes to http.ReadResponse too.
func readAnswerFast(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	buf, _ := br.Peek(br.Buffered())
	if len(buf) > math.MaxInt32 {
		buf = buf[:math.MaxInt32] // fieldPos's offsets
	}

	// The status line: "HTTP/1.x ddd" then CRLF or " reason" CRLF.
	if len(buf) < len("HTTP/1.1 200\r\n") || string(buf[:7]) != "HTTP/1." || buf[8] != ' ' {
		return nil, false
	}
	minor := int(buf[7]) - '0'
	if minor != 0 && minor != 1 {
		return nil, false
	}
	code := 0
	for _, c := range buf[9:12] {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		return nil, false
	}
	i := 12
	if buf[i] == ' ' {
		i++
		for i < len(buf) && valueByte[buf[i]] {
			i++
		}
	}
	if !crlfAt(buf, i) {
		return nil, false
	}
	statusEnd := i
	i += 2

	// The header lines, up to the blank line: all is checked before
	// anything is built, so that nothing is built for an answer that is
	// then declined.
	var (
		fields  [maxFastFields]fieldPos
		nf, nCL int
		cl      []byte // the Content-Length value
		canon   = true // every name is in canonical form
	)
	for {
		if i+1 >= len(buf) {
			return nil, false // not all buffered
		}
		if buf[i] == '\r' {
			if buf[i+1] != '\n' {
				return nil, false
			}
			break
		}
		if nf == maxFastFields {
			return nil, false
		}
		// The name: a token (an obs-fold or a space before the colon is
		// not), as http.CanonicalHeaderKey would write it.
		start, upper := i, true
		for i < len(buf) && tokenByte[buf[i]] {
			c := buf[i]
			if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
				canon = false
			}
			upper = c == '-'
			i++
		}
		if i == start || i >= len(buf) || buf[i] != ':' {
			return nil, false
		}
		name := buf[start:i]
		// The value, without the spaces and tabs around it.
		for i++; i < len(buf) && (buf[i] == ' ' || buf[i] == '\t'); i++ {
		}
		v0 := i
		for i < len(buf) && valueByte[buf[i]] {
			i++
		}
		if !crlfAt(buf, i) {
			return nil, false // a bare LF, a control byte, or not all buffered
		}
		v1 := i
		for v1 > v0 && (buf[v1-1] == ' ' || buf[v1-1] == '\t') {
			v1--
		}
		i += 2
		fields[nf] = fieldPos{int32(start), int32(start + len(name)), int32(v0), int32(v1)}
		nf++
		switch v := buf[v0:v1]; {
		case len(name) == len("Content-Length") && asciiEqualFold(name, "Content-Length"):
			// net/http refuses copies that differ, and an empty or
			// non-decimal value.
			if len(v) == 0 || nCL > 0 && !bytes.Equal(v, cl) {
				return nil, false
			}
			cl = v
			nCL++
		case len(name) == len("Transfer-Encoding") && asciiEqualFold(name, "Transfer-Encoding"):
			return nil, false
		}
	}
	n := int64(-1)
	if nCL > 0 {
		u, err := strconv.ParseUint(string(cl), 10, 63) // does not allocate
		if err != nil {
			return nil, false
		}
		n = int64(u)
	}
	head := req != nil && req.Method == http.MethodHead
	noBody := head || code == http.StatusNoContent || code == http.StatusNotModified
	if n < 0 && !noBody {
		return nil, false // the body ends when the connection does
	}

	// Build: one string for the whole block, names and values cut from it.
	blk := buf[:i]
	var s string
	if canon {
		s = string(blk)
	} else {
		s = canonicalBlock(blk, fields[:nf])
	}
	a := &answer{}
	res := &a.res
	res.Status = s[9:statusEnd]
	res.StatusCode = code
	res.Proto, res.ProtoMajor, res.ProtoMinor = "HTTP/1.1", 1, minor
	if minor == 0 {
		res.Proto = "HTTP/1.0"
	}
	res.Request = req
	h := make(http.Header, nf)
	vals := make([]string, nf)
	for k, f := range fields[:nf] {
		name := s[f.name:f.colon]
		vals[k] = s[f.v0:f.v1]
		if vv, ok := h[name]; ok {
			h[name] = append(vv, vals[k])
		} else {
			// No spare capacity: an append by whoever gets the header
			// copies rather than overwriting the next name's value.
			h[name] = vals[k : k+1 : k+1]
		}
	}
	res.Header = h

	// What http.ReadResponse changes in the header: in this order, the
	// Pragma fixup, the Connection field of an HTTP/1.1 answer that closes
	// (shouldClose), and copies of Content-Length.
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	conn := h["Connection"]
	closing := httpguts.HeaderValuesContainsToken(conn, "close")
	if minor == 0 {
		closing = closing || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else if closing {
		delete(h, "Connection")
	}
	if nCL > 1 {
		h["Content-Length"] = h["Content-Length"][:1:1]
	}
	res.Close = closing

	switch {
	case head:
		res.ContentLength = n // -1 when there is none
	case noBody:
		res.ContentLength = 0
	default:
		res.ContentLength = n
	}
	if noBody || n == 0 {
		res.Body = http.NoBody
	} else {
		a.body = answerBody{br: br, left: n, closing: closing}
		res.Body = &a.body
	}
	_, _ = br.Discard(i + 2)
	return res, true
}

// maxFastFields bounds the header fields of an answer readAnswerFast reads;
// one with more goes to http.ReadResponse.
const maxFastFields = 64

// fieldPos is where a header line's name and value are in the header block.
type fieldPos struct{ name, colon, v0, v1 int32 }

// crlfAt reports whether b holds CRLF at i.
func crlfAt(b []byte, i int) bool {
	return i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n'
}

// answer is a response with its body reader, allocated together.
type answer struct {
	res  http.Response
	body answerBody
}

// answerBody is the body of an answer of known, non-zero length, read from
// the connection's reader. It behaves as net/http's body of such an answer:
// its last bytes come with io.EOF, a connection that ends early is
// io.ErrUnexpectedEOF (and io.EOF after that), Close reads what is left
// unless the connection closes after the answer anyway, and a Read after
// Close is http.ErrBodyReadAfterClose. It is safe for concurrent use.
type answerBody struct {
	mu      sync.Mutex
	br      *bufio.Reader
	left    int64 // bytes not yet read
	closing bool  // the connection closes after the answer
	sawEOF  bool
	closed  bool
}

func (b *answerBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *answerBody) readLocked(p []byte) (int, error) {
	if b.sawEOF || b.left <= 0 {
		b.sawEOF = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	switch {
	case err == io.EOF:
		b.sawEOF = true
		if b.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	case err == nil && n > 0 && b.left == 0:
		err = io.EOF
		b.sawEOF = true
	}
	return n, err
}

func (b *answerBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	if !b.sawEOF && !b.closing {
		// Read to the end, so the connection is at the next answer.
		_, err = io.Copy(io.Discard, lockedBody{b})
	}
	b.closed = true
	return err
}

// lockedBody reads an answerBody whose lock is held.
type lockedBody struct{ b *answerBody }

func (l lockedBody) Read(p []byte) (int, error) { return l.b.readLocked(p) }

// canonicalBlock returns blk as a string, with the names of fields in
// canonical form.
func canonicalBlock(blk []byte, fields []fieldPos) string {
	var sb strings.Builder
	sb.Grow(len(blk))
	last := 0
	for _, f := range fields {
		sb.Write(blk[last:f.name])
		upper := true
		for _, c := range blk[f.name:f.colon] {
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			sb.WriteByte(c)
			upper = c == '-'
		}
		last = int(f.colon)
	}
	sb.Write(blk[last:])
	return sb.String()
}

// tokenByte marks the bytes of an RFC 9110 token: those of a name that
// net/textproto canonicalizes (textproto also takes names with spaces, but
// does not canonicalize them; those go to http.ReadResponse).
var tokenByte = func() (t [256]bool) {
	for c := range 128 {
		t[c] = httpguts.IsTokenRune(rune(c))
	}
	return t
}()

// valueByte marks the bytes of a field value: VCHAR, SP, HTAB and obs-text,
// as net/textproto and httpguts.ValidHeaderFieldValue take them.
var valueByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= ' ' && c != 0x7f || c == '\t'
	}
	return t
}()

// asciiEqualFold reports whether b equals s, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
