package h1server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readRequestFast reads the request at the head of br when all of its
// header is already buffered and it is plain: an origin-form target,
// HTTP/1.0 or 1.1, CRLF line ends, no folded lines, no Transfer-Encoding,
// at most one Content-Length. It returns what http.ReadRequest would for the
// same bytes (FuzzReadRequestFast compares the two), with a fraction of the
// allocations: the header block becomes one string that keys and values
// slice. Anything else returns ok false with nothing consumed, and
// http.ReadRequest reads it, or rejects it with its own error.
func readRequestFast(br *bufio.Reader) (req *http.Request, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return nil, false
	}
	raw := buf[:end+2] // the request line and fields, each ending in CRLF
	// A bare CR or LF is read differently by different parsers: leave it to
	// net/http's rules.
	if !crlfOnly(raw) {
		return nil, false
	}
	block := string(raw)

	line, rest, _ := strings.Cut(block, "\r\n")
	method, target, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(target, " ")
	if !ok1 || !ok2 || !validToken(method) || method == http.MethodConnect || !strings.HasPrefix(target, "/") {
		return nil, false
	}
	var minor int
	switch proto {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
	default:
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}

	n := strings.Count(rest, "\r\n")
	h := make(http.Header, n)
	values := make([]string, n)
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(line, ":")
		if !found || !validToken(k) || !validValue(v) {
			return nil, false // folded lines, spaces before colons, controls
		}
		k = http.CanonicalHeaderKey(k)
		v = strings.Trim(v, " \t")
		if vv, seen := h[k]; seen {
			h[k] = append(vv, v)
			continue
		}
		values[0] = v
		h[k], values = values[:1:1], values[1:]
	}
	if _, chunked := h["Transfer-Encoding"]; chunked {
		return nil, false
	}
	hosts := h["Host"]
	if len(hosts) > 1 {
		return nil, false
	}
	var length int64
	switch cl := h["Content-Length"]; len(cl) {
	case 0:
	case 1:
		v := strings.Trim(cl[0], " \t")
		if v == "" {
			return nil, false
		}
		parsed, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return nil, false
		}
		length = int64(parsed)
	default:
		return nil, false
	}

	req = &http.Request{
		Method:        method,
		URL:           u,
		Proto:         proto,
		ProtoMajor:    1,
		ProtoMinor:    minor,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: length,
		RequestURI:    target,
	}
	if len(hosts) == 1 {
		req.Host = hosts[0]
		delete(h, "Host")
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, cc := h["Cache-Control"]; !cc {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	conn := h["Connection"]
	req.Close = httpguts.HeaderValuesContainsToken(conn, "close") ||
		(minor == 0 && !httpguts.HeaderValuesContainsToken(conn, "keep-alive"))
	_, _ = br.Discard(end + 4)
	if length > 0 {
		req.Body = &fixedBody{r: br, remain: length}
	}
	return req, true
}

var crlfcrlf = []byte("\r\n\r\n")

// crlfOnly reports whether every CR in b starts a CRLF and every LF ends
// one.
func crlfOnly(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}

// validToken reports whether s is a non-empty RFC 9110 token: a method or a
// field name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// validValue reports whether a field value holds no control character but
// tab, as net/textproto requires. Its first byte must not be a space or tab
// either when it starts a line: that is a folded line, caught by the caller
// because the name before it is then not a token.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// fixedBody is a request body of a known length, read from the connection's
// buffer: io.EOF at its end, io.ErrUnexpectedEOF if the connection ends
// first, as net/http's body reader.
type fixedBody struct {
	r      *bufio.Reader
	remain int64
	err    error
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.remain <= 0 {
		b.err = io.EOF
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.r.Read(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF && b.remain > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && b.remain == 0:
		err = io.EOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *fixedBody) Close() error { return nil }
