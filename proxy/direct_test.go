package proxy

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is what a backend received.
type seen struct {
	method, uri, host string
	header            http.Header
	contentLength     int64
	te                []string
	body              string
}

// rawBackend is a loopback endpoint without net/http's server, so a test
// sees exactly what the proxy sent and decides exactly what it answers:
// answer writes the raw answer to each request, on the connection itself.
type rawBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []seen
}

func newRawBackend(t *testing.T, answer func(c net.Conn, r *http.Request)) *rawBackend {
	t.Helper()
	b := &rawBackend{ln: listen(t)}
	t.Cleanup(func() { b.ln.Close() })
	go func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					b.mu.Lock()
					b.reqs = append(b.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header, r.ContentLength, r.TransferEncoding, string(body)})
					b.mu.Unlock()
					answer(c, r)
				}
			}()
		}
	}()
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// last returns the last request the backend received.
func (b *rawBackend) last(t *testing.T) seen {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the backend received nothing")
	}
	return b.reqs[len(b.reqs)-1]
}

// answerWith answers every request with raw.
func answerWith(raw string) func(net.Conn, *http.Request) {
	return func(c net.Conn, _ *http.Request) { _, _ = io.WriteString(c, raw) }
}

// got is what a client received.
type got struct {
	early   []string // informational answers: "code header"
	status  int
	header  http.Header
	body    string
	trailer http.Header
	readErr bool // the answer ended in an error: the connection was cut
}

// sendRaw writes raw, a whole request, to addr and reads the answers.
func sendRaw(t *testing.T, addr, raw string) got {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(raw, " ")
	br := bufio.NewReader(c)
	var g got
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			g.readErr = true // cut before the headers
			return g
		}
		if res.StatusCode < 200 {
			g.early = append(g.early, res.Status+" "+res.Header.Get("Link"))
			continue
		}
		body, err := io.ReadAll(res.Body)
		res.Header.Del("Date")
		g.status, g.header, g.body, g.trailer, g.readErr = res.StatusCode, res.Header, string(body), res.Trailer, err != nil
		return g
	}
}

// pairEnv returns two proxies for the same backend: one that takes the
// direct path where it can, and one that sends everything through
// ReverseProxy, which the direct path must match.
func pairEnv(t *testing.T, yaml, backend string) (direct, rp *env) {
	t.Helper()
	addrs := map[string]string{"w": backend, "e": closedAddr(t)}
	direct = newEnv(t, yaml, addrs, envOptions{noLog: true})
	rp = newEnv(t, yaml, addrs, envOptions{noLog: true})
	rp.proxy.noDirect = true
	rp.proxy.rp.ErrorLog = log.New(io.Discard, "", 0) // cut answers are expected
	return direct, rp
}

func frontAddr(e *env) string { return e.front.Listener.Addr().String() }

// TestDirectRequest checks what a backend receives on the direct path,
// and that it is what ReverseProxy sends.
func TestDirectRequest(t *testing.T) {
	b := newRawBackend(t, answerWith("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	direct, rp := pairEnv(t, twoDC, b.addr())
	const host = "Host: api.coopr.test\r\n"
	for _, tc := range []struct {
		name, raw string
		check     func(t *testing.T, s seen)
	}{
		{"hop-by-hop removed", "GET /v2/clusters HTTP/1.1\r\n" + host +
			"Connection: keep-alive, X-Hop, TE\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
			"Proxy-Authorization: Basic eDp5\r\nTe: trailers, deflate\r\nX-Stay: 1\r\n\r\n",
			func(t *testing.T, s seen) {
				for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization"} {
					if v, ok := s.header[k]; ok {
						t.Errorf("%s reached the backend: %q", k, v)
					}
				}
				if v := s.header["Te"]; !reflect.DeepEqual(v, []string{"trailers"}) {
					t.Errorf("Te = %q, want only trailers", v)
				}
				if s.header.Get("X-Stay") != "1" {
					t.Errorf("X-Stay lost: %v", s.header)
				}
			}},
		{"end-to-end untouched", "GET /v2/clusters HTTP/1.1\r\n" + host +
			"Coopr-UserID: admin\r\nCoopr-TenantID: superadmin\r\nCoopr-ApiKey: k3y\r\nX-Multi: a\r\nX-Multi: b, c\r\n" +
			"Cookie: a=1\r\nCookie: b=2\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
			func(t *testing.T, s seen) {
				for k, want := range map[string][]string{
					"Coopr-Userid": {"admin"}, "Coopr-Tenantid": {"superadmin"}, "Coopr-Apikey": {"k3y"},
					"X-Multi": {"a", "b, c"}, "Cookie": {"a=1", "b=2"}, "User-Agent": {"curl/8.5.0"}, "Accept": {"*/*"},
				} {
					if v := s.header[k]; !reflect.DeepEqual(v, want) {
						t.Errorf("%s = %q, want %q", k, v, want)
					}
				}
				if s.host != "api.coopr.test" {
					t.Errorf("Host %q", s.host)
				}
			}},
		{"no user agent added", "GET / HTTP/1.1\r\n" + host + "\r\n",
			func(t *testing.T, s seen) {
				if v, ok := s.header["User-Agent"]; ok {
					t.Errorf("User-Agent %q added", v)
				}
				if _, ok := s.header["Content-Length"]; ok || s.contentLength != 0 {
					t.Errorf("a GET without a body got a Content-Length")
				}
			}},
		{"forwarding headers of an untrusted peer replaced", "GET / HTTP/1.1\r\n" + host +
			"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n" +
			"Forwarded: for=203.0.113.9\r\nConnection: X-Forwarded-For\r\n\r\n",
			func(t *testing.T, s seen) {
				for k, want := range map[string][]string{
					"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"api.coopr.test"},
				} {
					if v := s.header[k]; !reflect.DeepEqual(v, want) {
						t.Errorf("%s = %q, want %q", k, v, want)
					}
				}
				if v, ok := s.header["Forwarded"]; ok {
					t.Errorf("Forwarded %q passed", v)
				}
			}},
		{"post with a body", "POST /v2/clusters HTTP/1.1\r\n" + host + "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"name\":\"a\"}\n",
			func(t *testing.T, s seen) {
				if s.contentLength != 13 || s.body != "{\"name\":\"a\"}\n" || s.te != nil {
					t.Errorf("length %d, body %q, transfer encoding %q", s.contentLength, s.body, s.te)
				}
			}},
		{"post without a body", "POST /v2/clusters HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n",
			func(t *testing.T, s seen) {
				if v := s.header["Content-Length"]; !reflect.DeepEqual(v, []string{"0"}) {
					t.Errorf("Content-Length = %q, want 0", v)
				}
			}},
		{"chunked body sent with a length", "PUT /v2/x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			func(t *testing.T, s seen) {
				if s.contentLength != 5 || s.body != "hello" || s.te != nil {
					t.Errorf("length %d, body %q, transfer encoding %q", s.contentLength, s.body, s.te)
				}
			}},
		{"escapes kept", "GET /v2/a%2Fb/c;v=1?x=1&y=%41 HTTP/1.1\r\n" + host + "\r\n",
			func(t *testing.T, s seen) {
				if s.uri != "/v2/a%2Fb/c;v=1?x=1&y=%41" {
					t.Errorf("URI %q", s.uri)
				}
			}},
		{"path escaped", "GET /v2/{x}|\"y\" HTTP/1.1\r\n" + host + "\r\n",
			func(t *testing.T, s seen) {
				if s.uri != "/v2/%7Bx%7D%7C%22y%22" {
					t.Errorf("URI %q", s.uri)
				}
			}},
		{"query cleaned", "GET /v2/x?a=1;b=2&c=3 HTTP/1.1\r\n" + host + "\r\n",
			func(t *testing.T, s seen) {
				if s.uri != "/v2/x?c=3" {
					t.Errorf("URI %q", s.uri)
				}
			}},
		{"absolute form", "GET http://api.coopr.test/v2/x?q=1 HTTP/1.1\r\n" + host + "\r\n",
			func(t *testing.T, s seen) {
				if s.uri != "/v2/x?q=1" {
					t.Errorf("URI %q", s.uri)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if g := sendRaw(t, frontAddr(rp), tc.raw); g.status != 200 {
				t.Fatalf("through ReverseProxy: status %d", g.status)
			}
			want := b.last(t)
			if g := sendRaw(t, frontAddr(direct), tc.raw); g.status != 200 {
				t.Fatalf("status %d", g.status)
			}
			s := b.last(t)
			tc.check(t, s)
			if !reflect.DeepEqual(s, want) {
				t.Errorf("the backend saw\n%+v\nthrough ReverseProxy\n%+v", s, want)
			}
		})
	}
}

// TestDirectTrustedForwarding: a trusted proxy's forwarding headers are
// kept and extended on the direct path as through ReverseProxy.
func TestDirectTrustedForwarding(t *testing.T) {
	b := newRawBackend(t, answerWith("HTTP/1.1 204 No Content\r\n\r\n"))
	direct, rp := pairEnv(t, twoDC+"proxy: {trusted_proxies: [127.0.0.0/8]}\n", b.addr())
	raw := "GET / HTTP/1.1\r\nHost: api.coopr.test\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.coopr.test\r\nForwarded: for=203.0.113.9\r\n\r\n"
	sendRaw(t, frontAddr(rp), raw)
	want := b.last(t)
	sendRaw(t, frontAddr(direct), raw)
	s := b.last(t)
	for k, v := range map[string][]string{
		"X-Forwarded-For":   {"203.0.113.9, 10.0.0.1, 10.0.0.2, 127.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"www.coopr.test"},
		"Forwarded":         {"for=203.0.113.9"},
	} {
		if !reflect.DeepEqual(s.header[k], v) {
			t.Errorf("%s = %q, want %q", k, s.header[k], v)
		}
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("the backend saw\n%+v\nthrough ReverseProxy\n%+v", s, want)
	}
}

// TestDirectAnswer checks what a client receives on the direct path, and
// that it is what ReverseProxy answers.
func TestDirectAnswer(t *testing.T) {
	answers := map[string]string{
		"/hop": "HTTP/1.1 200 OK\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n" +
			"Upgrade: h2c\r\nX-End: e\r\nX-Multi: a\r\nX-Multi: b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
		"/trailer":    "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/undeclared": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Late: 7\r\n\r\n",
		"/early": "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nLink: </app.css>; rel=preload\r\nContent-Length: 2\r\n\r\nok",
		"/head":      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n",
		"/empty":     "HTTP/1.1 204 No Content\r\nX-End: e\r\n\r\n",
		"/unavail":   "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
		"/cut":       "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
		"/cutchunks": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n",
	}
	b := newRawBackend(t, func(c net.Conn, r *http.Request) {
		_, _ = io.WriteString(c, answers[r.URL.Path])
		if strings.HasPrefix(r.URL.Path, "/cut") {
			c.Close()
		}
	})
	direct, rp := pairEnv(t, twoDC, b.addr())
	for _, tc := range []struct {
		name, method, path string
		check              func(t *testing.T, g got)
	}{
		{"hop-by-hop removed", "GET", "/hop", func(t *testing.T, g got) {
			for _, k := range []string{"X-Drop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
				if v, ok := g.header[k]; ok {
					t.Errorf("%s reached the client: %q", k, v)
				}
			}
			if g.header.Get("X-End") != "e" || len(g.header["Set-Cookie"]) != 2 || len(g.header["X-Multi"]) != 2 || g.body != "ok" {
				t.Errorf("got %v %q", g.header, g.body)
			}
		}},
		{"declared trailer", "GET", "/trailer", func(t *testing.T, g got) {
			if g.body != "ok" || g.trailer.Get("X-Sum") != "42" {
				t.Errorf("body %q trailer %v", g.body, g.trailer)
			}
		}},
		{"undeclared trailer", "GET", "/undeclared", func(t *testing.T, g got) {
			if g.body != "ok" || g.trailer.Get("X-Late") != "7" {
				t.Errorf("body %q trailer %v", g.body, g.trailer)
			}
		}},
		{"early hints", "GET", "/early", func(t *testing.T, g got) {
			if want := []string{"103 Early Hints </app.css>; rel=preload"}; !reflect.DeepEqual(g.early, want) || g.body != "ok" {
				t.Errorf("informational %q, body %q", g.early, g.body)
			}
		}},
		{"head", "HEAD", "/head", func(t *testing.T, g got) {
			if g.header.Get("Content-Length") != "10" || g.body != "" {
				t.Errorf("got %v %q", g.header, g.body)
			}
		}},
		{"no content", "GET", "/empty", func(t *testing.T, g got) {
			if g.status != 204 || g.header.Get("X-End") != "e" {
				t.Errorf("got %d %v", g.status, g.header)
			}
		}},
		{"5xx passed on", "DELETE", "/unavail", func(t *testing.T, g got) {
			if g.status != 503 || g.body != "busy" {
				t.Errorf("got %d %q", g.status, g.body)
			}
		}},
		{"body cut", "GET", "/cut", func(t *testing.T, g got) {
			if !g.readErr {
				t.Errorf("a cut answer reached the client whole: %q", g.body)
			}
		}},
		{"chunks cut", "GET", "/cutchunks", func(t *testing.T, g got) {
			if !g.readErr {
				t.Errorf("a cut answer reached the client whole: %q", g.body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.method + " " + tc.path + " HTTP/1.1\r\nHost: api.coopr.test\r\n\r\n"
			want := sendRaw(t, frontAddr(rp), raw)
			g := sendRaw(t, frontAddr(direct), raw)
			tc.check(t, g)
			if tc.path == "/trailer" || tc.path == "/undeclared" || tc.path == "/cutchunks" {
				// An answer of unknown length without a Content-Type:
				// ReverseProxy flushes its headers on a timer that races
				// the first write of the body, so net/http may or may not
				// guess a Content-Type. The direct path never guesses.
				if v, ok := g.header["Content-Type"]; ok {
					t.Errorf("Content-Type %q guessed", v)
				}
				want.header.Del("Content-Type")
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("the client got\n%+v\nthrough ReverseProxy\n%+v", g, want)
			}
		})
	}
}

// TestDirectStreamsUnknownLength: an answer of unknown length reaches the
// client as it comes, its headers first, each piece before the next is sent.
func TestDirectStreamsUnknownLength(t *testing.T) {
	next := make(chan struct{})
	b := newRawBackend(t, func(c net.Conn, r *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range 3 {
			if _, ok := <-next; !ok {
				return
			}
			_, _ = io.WriteString(c, "2\r\n"+string(rune('0'+i))+"\n\r\n")
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	defer close(next)
	e := newEnv(t, twoDC, map[string]string{"w": b.addr(), "e": closedAddr(t)}, envOptions{})
	res := e.do("GET", "api.coopr.test", "/stream", nil, nil) // returns once headers arrive
	defer res.Body.Close()
	if res.ContentLength != -1 || res.Header.Get("X-Coopr-GSLB-DC") != "west" {
		t.Fatalf("length %d, headers %v", res.ContentLength, res.Header)
	}
	br := bufio.NewReader(res.Body)
	for i := range 3 {
		next <- struct{}{}
		line, err := br.ReadString('\n')
		if err != nil || line != string(rune('0'+i))+"\n" {
			t.Fatalf("piece %d: %q %v", i, line, err)
		}
	}
}

// TestWriteField: header values are written safely, as Request.Write does.
func TestWriteField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\r\nX-Evil: 1", "a  X-Evil: 1"},
		{"  padded\t", "padded"},
		{"in \t between", "in \t between"},
		{"", ""},
	} {
		var sb strings.Builder
		bw := bufio.NewWriter(&sb)
		writeField(bw, "X-Test", tc.in)
		bw.Flush()
		if got, want := sb.String(), "X-Test: "+tc.want+"\r\n"; got != want {
			t.Errorf("writeField(%q) = %q, want %q", tc.in, got, want)
		}
	}
}

// TestDirectEligible: what the lean client cannot carry, or what
// ReverseProxy would change, keeps going through ReverseProxy.
func TestDirectEligible(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(r *http.Request, st *reqState)
		want   bool
	}{
		{"plain", func(*http.Request, *reqState) {}, true},
		{"upgrade", func(r *http.Request, _ *reqState) { r.Header.Set("Upgrade", "websocket") }, false},
		{"expect", func(r *http.Request, _ *reqState) { r.Header.Set("Expect", "100-continue") }, false},
		{"streamed body", func(_ *http.Request, st *reqState) { st.streamBody = &countingBody{} }, false},
		{"large body", func(_ *http.Request, st *reqState) { st.body = make([]byte, maxLeanBody+1) }, false},
		{"trailers", func(r *http.Request, _ *reqState) { r.Trailer = http.Header{"X-Sum": nil} }, false},
		{"semicolon query", func(r *http.Request, _ *reqState) { r.URL.RawQuery = "a=1;b=2" }, false},
		{"bad escape", func(r *http.Request, _ *reqState) { r.URL.RawQuery = "a=%zz" }, false},
		{"unicode host", func(r *http.Request, _ *reqState) { r.Host = "bücher.example" }, false},
		{"zone", func(r *http.Request, _ *reqState) { r.Host = "[fe80::1%25eth0]:80" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://api.coopr.test/v2/x?a=1", nil)
			st := &reqState{in: r, sv: &serviceView{}}
			tc.modify(r, st)
			if got := st.direct(); got != tc.want {
				t.Errorf("direct() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRequestURI: the target sent upstream is what (*url.URL).RequestURI
// makes of the request's URL, taken from the client's own when they agree.
func TestRequestURI(t *testing.T) {
	for _, tc := range []struct {
		target  string
		rewrite func(r *http.Request) // as a middleware such as http.StripPrefix would
		want    string
	}{
		{"/v2/clusters?page=1&q=a%20b", nil, "/v2/clusters?page=1&q=a%20b"},
		{"/v2/a%2Fb/c", nil, "/v2/a%2Fb/c"},
		{"/files/my%20doc", nil, "/files/my%20doc"},
		{"/v2/{x}", nil, "/v2/%7Bx%7D"},
		{"/v2/x?", nil, "/v2/x?"},
		{"/v2/ü", nil, "/v2/%C3%BC"},
		{"http://api.coopr.test/v2/x?q=1", nil, "/v2/x?q=1"},
		{"*", nil, "*"},
		{"/api/v2/x?q=1", func(r *http.Request) { r.URL.Path = "/v2/x" }, "/v2/x?q=1"},
		{"/v2/x?q=1", func(r *http.Request) { r.URL.RawQuery = "q=2" }, "/v2/x?q=2"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + tc.target + " HTTP/1.1\r\nHost: a\r\n\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			if tc.rewrite != nil {
				tc.rewrite(r)
			}
			st := &reqState{in: r}
			if got := st.requestURI(); got != tc.want || got != r.URL.RequestURI() {
				t.Errorf("requestURI() = %q, want %q (URL %q)", got, tc.want, r.URL.RequestURI())
			}
		})
	}
}
