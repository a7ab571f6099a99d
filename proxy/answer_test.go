package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// cooprBody and cooprAnswer are a typical backend answer: JSON with a
// Content-Length and about ten header fields.
const cooprBody = `{"clusters":[{"id":"c-1","name":"prod","state":"running","nodes":12}],"total":1,"page":1}`

var cooprAnswer = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: application/json; charset=utf-8\r\n" +
	"Content-Length: " + strconv.Itoa(len(cooprBody)) + "\r\n" +
	"Date: Mon, 02 Jan 2026 15:04:05 GMT\r\n" +
	"Cache-Control: no-store\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"X-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n" +
	"Coopr-Tenantid: superadmin\r\n" +
	"Strict-Transport-Security: max-age=31536000\r\n" +
	"X-Content-Type-Options: nosniff\r\n" +
	"Server: coopr/1.0\r\n" +
	"\r\n" + cooprBody

// compareAnswer reads data as an answer to a request with the given method,
// through a bufio.Reader of the given size as readAnswer would, first with
// readAnswerFast, then, if that accepts it, with http.ReadResponse from an
// identical reader, and returns the first difference between the two.
// chunk is the size of the body reads; with closeAfter >= 0, the body is
// closed after that many bytes at most rather than read to its end.
func compareAnswer(data []byte, method string, size, chunk, closeAfter int) (accepted bool, err error) {
	var req *http.Request
	if method != "" {
		req = &http.Request{Method: method}
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), size)
	_, _ = br.Peek(1) // as readAnswer does
	buffered := br.Buffered()
	res, ok := readAnswerFast(br, req)
	if !ok {
		if res != nil {
			return false, errors.New("declined with a response")
		}
		if br.Buffered() != buffered {
			return false, fmt.Errorf("declined after consuming %d bytes", buffered-br.Buffered())
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, data) {
			return false, errors.New("declined, and the reader no longer holds the input")
		}
		return false, nil
	}
	sbr := bufio.NewReaderSize(bytes.NewReader(data), size)
	want, err := http.ReadResponse(sbr, req)
	if err != nil {
		return true, fmt.Errorf("accepted what http.ReadResponse refuses: %v", err)
	}
	for _, d := range []struct {
		what      string
		got, want any
	}{
		{"Status", res.Status, want.Status},
		{"StatusCode", res.StatusCode, want.StatusCode},
		{"Proto", res.Proto, want.Proto},
		{"ProtoMajor", res.ProtoMajor, want.ProtoMajor},
		{"ProtoMinor", res.ProtoMinor, want.ProtoMinor},
		{"Header", res.Header, want.Header},
		{"ContentLength", res.ContentLength, want.ContentLength},
		{"Close", res.Close, want.Close},
		{"Uncompressed", res.Uncompressed, want.Uncompressed},
		{"TransferEncoding", res.TransferEncoding, want.TransferEncoding},
		{"Trailer", res.Trailer, want.Trailer},
		{"Request", res.Request, want.Request},
		{"TLS", res.TLS, want.TLS},
		{"Body is NoBody", res.Body == http.NoBody, want.Body == http.NoBody},
	} {
		if !reflect.DeepEqual(d.got, d.want) {
			return true, fmt.Errorf("%s: got %#v, want %#v", d.what, d.got, d.want)
		}
	}
	for k, vv := range res.Header {
		if len(vv) == 1 && cap(vv) != 1 {
			return true, fmt.Errorf("header %q has spare capacity %d", k, cap(vv))
		}
	}
	if got, want := readBody(res.Body, chunk, closeAfter), readBody(want.Body, chunk, closeAfter); got != want {
		return true, fmt.Errorf("body reads:\n got %s\nwant %s", got, want)
	}
	rest, _ := io.ReadAll(br)
	wantRest, _ := io.ReadAll(sbr)
	if !bytes.Equal(rest, wantRest) {
		return true, fmt.Errorf("left in the reader: got %q, want %q", rest, wantRest)
	}
	return true, nil
}

// readBody reads body in reads of chunk bytes until an error, and once more,
// or, with closeAfter >= 0, about that many bytes and then closes it and
// reads once more, and describes every result.
func readBody(body io.ReadCloser, chunk, closeAfter int) string {
	var sb strings.Builder
	p := make([]byte, chunk)
	read := 0
	for closeAfter < 0 || read < closeAfter {
		n, err := body.Read(p)
		read += n
		fmt.Fprintf(&sb, "(%q %v)", p[:n], err)
		if err != nil {
			if closeAfter < 0 {
				n, err := body.Read(p)
				fmt.Fprintf(&sb, " then (%q %v)", p[:n], err)
				return sb.String()
			}
			break
		}
	}
	fmt.Fprintf(&sb, " close %v", body.Close())
	n, err := body.Read(p)
	fmt.Fprintf(&sb, " then (%q %v) close %v", p[:n], err, body.Close())
	return sb.String()
}

// answerCases are answers that readAnswerFast takes or leaves, with the
// request method ("" for no request).
var answerCases = []struct {
	name, in, method string
	ok               bool
}{
	{"coopr JSON", cooprAnswer, "GET", true},
	{"coopr JSON without request", cooprAnswer, "", true},
	{"coopr JSON pipelined", cooprAnswer + cooprAnswer, "GET", true},
	{"empty body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"no header fields", "HTTP/1.1 204 No Content\r\n\r\n", "DELETE", true},
	{"204 with Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n", "GET", true},
	{"304", "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n", "GET", true},
	{"HEAD with Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD", true},
	{"HEAD without Content-Length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "HEAD", true},
	{"Set-Cookies", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 2\r\nSet-Cookie: b=2\r\nSet-Cookie: c=3\r\n\r\nok", "GET", true},
	{"odd spacing", "HTTP/1.1 200 OK\r\nA:x\r\nB:  \t y z \t \r\nC:\r\nContent-Length:\t2 \r\n\r\nok", "GET", true},
	{"non-canonical names", "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nCONTENT-LENGTH: 2\r\nx-ReQuest-iD: 1\r\nwww-authenticate: x\r\n\r\nok", "GET", true},
	{"token names", "HTTP/1.1 200 OK\r\nfoo_bar: 1\r\n#!$%&'*+-.^_`|~9: 2\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"copies of Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length:  2\r\n\r\nok", "GET", true},
	{"Content-Length with zeros", "HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok", "GET", true},
	{"Pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"Pragma and Cache-Control", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"missing reason", "HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno", "GET", true},
	{"empty reason", "HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"obs-text", "HTTP/1.1 200 \xe2\x9c\x93\r\nX-Name: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"Trailer without chunks", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 2\r\n\r\nok", "GET", true},
	{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", true},

	{"1xx", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "GET", false},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", false},
	{"chunked on HTTP/1.0", "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", "GET", false},
	{"HTTP/1.0 close-delimited", "HTTP/1.0 200 OK\r\n\r\nuntil the end", "GET", false},
	{"differing Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", "GET", false},
	{"empty Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "GET", false},
	{"signed Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "GET", false},
	{"huge Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n", "GET", false},
	{"bad Content-Length on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "HEAD", false},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"leading space", "HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"bare LF", "HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"bare LF status", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"space before colon", "HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"empty name", "HTTP/1.1 200 OK\r\n: a\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"control in value", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"CR in value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	{"huge status", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"status 600", "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"two spaces", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"lower-case proto", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
	{"headers not all buffered", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "GET", false},
	{"empty", "", "GET", false},
}

func TestReadAnswerFast(t *testing.T) {
	for _, tc := range answerCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{4 << 10, 16, 40} {
				for _, closeAfter := range []int{-1, 0, 1} {
					ok, err := compareAnswer([]byte(tc.in), tc.method, size, 3, closeAfter)
					if err != nil {
						t.Fatalf("buffer %d, close after %d: %v", size, closeAfter, err)
					}
					if size == 4<<10 && ok != tc.ok {
						t.Fatalf("accepted %v, want %v", ok, tc.ok)
					}
				}
			}
		})
	}
}

// TestReadAnswerFastFields spells out what net/http makes of some answers,
// which the differential tests only compare.
func TestReadAnswerFastFields(t *testing.T) {
	read := func(in, method string) *http.Response {
		t.Helper()
		br := bufio.NewReader(strings.NewReader(in))
		_, _ = br.Peek(1)
		res, ok := readAnswerFast(br, &http.Request{Method: method})
		if !ok {
			t.Fatalf("declined %q", in)
		}
		return res
	}
	res := read("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\npragma: no-cache\r\n\r\nok", "GET")
	if !res.Close || res.Header["Connection"] != nil || res.Header.Get("Cache-Control") != "no-cache" || res.Status != "200 OK" {
		t.Errorf("close and pragma: %+v", res)
	}
	res = read("HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "GET")
	if !res.Close || res.Header.Get("Connection") != "close" {
		t.Errorf("HTTP/1.0 keeps Connection: %+v", res)
	}
	res = read("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "HEAD")
	if res.ContentLength != 7 || res.Body != http.NoBody || res.Header.Get("Content-Length") != "7" {
		t.Errorf("HEAD: %+v", res)
	}
	res = read("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", "GET")
	if res.ContentLength != 0 || res.Body != http.NoBody || res.Header.Get("Content-Length") != "7" {
		t.Errorf("304: %+v", res)
	}
	res = read("HTTP/1.1 204\r\n\r\n", "HEAD")
	if res.ContentLength != -1 || res.Status != "204" {
		t.Errorf("HEAD 204: %+v", res)
	}
}

// TestReadAnswerFastAllocs guards the fast path's allocations: the header
// string, the map (four for ten fields), the values' array, and the response with its body.
func TestReadAnswerFastAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	rd := strings.NewReader(cooprAnswer)
	br := bufio.NewReader(rd)
	p := make([]byte, 512)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(cooprAnswer)
		br.Reset(rd)
		_, _ = br.Peek(1)
		res, ok := readAnswerFast(br, nil)
		if !ok {
			t.Fatal("declined")
		}
		for {
			if _, err := res.Body.Read(p); err != nil {
				break
			}
		}
	})
	if allocs > 7 {
		t.Fatalf("%.0f allocations per answer, want at most 7", allocs)
	}
	t.Logf("%.0f allocations per answer", allocs)
}

func FuzzReadAnswerFast(f *testing.F) {
	for _, tc := range answerCases {
		f.Add([]byte(tc.in), tc.method == "HEAD", uint16(4<<10), uint8(7), int16(-1))
	}
	f.Add([]byte(cooprAnswer), false, uint16(100), uint8(255), int16(10))
	f.Add([]byte(cooprAnswer), false, uint16(300), uint8(0), int16(0))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcdeHTTP/1.1 204 \r\n\r\n"), false, uint16(4<<10), uint8(2), int16(3))
	f.Fuzz(func(t *testing.T, data []byte, head bool, size uint16, chunk uint8, closeAfter int16) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		if _, err := compareAnswer(data, method, 16+int(size)%(8<<10), 1+int(chunk), int(closeAfter)); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
	})
}

// BenchmarkReadAnswer reads a typical answer and its body with the fast path
// and with http.ReadResponse.
func BenchmarkReadAnswer(b *testing.B) {
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader) *http.Response
	}{
		{"fast", func(br *bufio.Reader) *http.Response {
			res, ok := readAnswerFast(br, nil)
			if !ok {
				b.Fatal("declined")
			}
			return res
		}},
		{"ReadResponse", func(br *bufio.Reader) *http.Response {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			return res
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rd := strings.NewReader(cooprAnswer)
			br := bufio.NewReaderSize(rd, 4<<10)
			p := make([]byte, 512)
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(cooprAnswer)
				br.Reset(rd)
				_, _ = br.Peek(1)
				res := bc.read(br)
				for {
					if _, err := res.Body.Read(p); err != nil {
						break
					}
				}
				res.Body.Close()
			}
		})
	}
}
