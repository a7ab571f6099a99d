package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend is a loopback endpoint written byte by byte, for answers no
// well-behaved server sends. answer is called with each request's method on
// its connection, after the request's header block was read; it writes what
// it likes. conns counts accepted connections.
type rawBackend struct {
	ln    net.Listener
	conns atomic.Int64
	reqs  atomic.Int64
	wg    sync.WaitGroup
}

func newRawBackend(t *testing.T, answer func(c net.Conn, method string, n int64)) *rawBackend {
	t.Helper()
	b := &rawBackend{ln: listen(t)}
	var mu sync.Mutex
	var open []net.Conn
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					answer(c, req.Method, b.reqs.Add(1))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		b.ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// TestStrayBytesNeverReachTheNextClient: a backend that sends a second,
// unrequested answer on a keep-alive connection after its real one must not
// have it delivered to the next request. http.Transport discards a pooled
// connection on which bytes arrive unasked; this holds the proxy to it, for
// a GET and for a HEAD (whose answer has no body, so a Content-Length's
// worth of bytes after it are just as unrequested).
func TestStrayBytesNeverReachTheNextClient(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		t.Run(method, func(t *testing.T) {
			be := newRawBackend(t, func(c net.Conn, m string, n int64) {
				body := fmt.Sprintf("answer %d", n)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
				if m != "HEAD" {
					io.WriteString(c, body)
				}
				if n == 1 {
					// The poison: after a pause, an answer nobody asked for.
					time.Sleep(300 * time.Millisecond)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned")
				}
			})
			e := newEnv(t, twoDC, map[string]string{"w": be.addr(), "e": closedAddr(t)}, envOptions{})
			code, _, _ := e.call(method, "api.coopr.test", "/first", nil, nil)
			if code != 200 {
				t.Fatalf("first: %d", code)
			}
			time.Sleep(500 * time.Millisecond) // the stray answer is in
			code, body, _ := e.call("GET", "api.coopr.test", "/second", nil, nil)
			if code != 200 || body != "answer 2" {
				t.Fatalf("second client got %d %q, want its own answer %q", code, body, "answer 2")
			}
			if n := be.conns.Load(); n != 2 {
				t.Fatalf("%d upstream connections, want 2: the poisoned one was reused", n)
			}
		})
	}
}

// TestPooledConnectionReused: the pool works at all (the stray test above
// would pass with no pooling).
func TestPooledConnectionReused(t *testing.T) {
	be := newRawBackend(t, func(c net.Conn, _ string, _ int64) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	e := newEnv(t, twoDC, map[string]string{"w": be.addr(), "e": closedAddr(t)}, envOptions{})
	for range 5 {
		if code, _, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for 5 sequential requests, want 1", n)
	}
}

// TestHostileBackendAnswers: answers that would cost the proxy without bound
// are refused with 502.
func TestHostileBackendAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
	}{
		{"header over max_response_header_bytes", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\nContent-Length: 0\r\n\r\n"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 50) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newRawBackend(t, func(c net.Conn, _ string, _ int64) { io.WriteString(c, tc.answer) })
			// Both DCs answer so: the last try decides the status.
			e := newEnv(t, twoDC+"proxy: {max_response_header_bytes: 65536}\n", map[string]string{"w": be.addr(), "e": be.addr()}, envOptions{})
			code, _, _ := e.call("GET", "api.coopr.test", "/", nil, nil)
			if code != http.StatusBadGateway {
				t.Fatalf("status %d, want 502", code)
			}
		})
	}
}

// TestBadMethodNotForwarded: a method that is not a token (an HTTP/2
// :method can hold anything) gets 400 and reaches no backend.
func TestBadMethodNotForwarded(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{noFront: true})
	for _, m := range []string{"GET /internal HTTP/1.1 x", "GET\r\nX-Injected: 1", "G(T", ""} {
		req := httptest.NewRequest("GET", "http://api.coopr.test/public", nil)
		req.Method = m
		w := httptest.NewRecorder()
		e.proxy.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest {
			t.Errorf("method %q: status %d, want 400", m, w.Code)
		}
	}
	if n := west.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the backend", n)
	}
}

// TestChunkedRequestClosesConnection: after a chunked HTTP/1.1 request
// (which may have carried a Content-Length that net/http removed), the
// answer closes the connection (RFC 9112, section 6.1).
func TestChunkedRequestClosesConnection(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	c, err := dialTimeout(e.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "POST /v2/clusters HTTP/1.1\r\nHost: api.coopr.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "west" {
		t.Fatalf("status %d %q", res.StatusCode, body)
	}
	if !res.Close {
		t.Fatal("the answer keeps the connection open")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %v, want EOF", err)
	}
}

// TestBodyTimeout: a client that announces a body and stops sending is cut
// off after proxy.body_timeout with 408; nothing reaches the backend.
func TestBodyTimeout(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC+"proxy: {body_timeout: 300ms}\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	for _, tc := range []struct {
		name, raw string
	}{
		{"buffered", "POST /v2/clusters HTTP/1.1\r\nHost: api.coopr.test\r\nContent-Length: 1048576\r\n\r\nabc"},
		{"streamed", "POST /v2/clusters HTTP/1.1\r\nHost: api.coopr.test\r\nContent-Length: 104857600\r\n\r\nabc"},
		{"chunked", "POST /v2/clusters HTTP/1.1\r\nHost: api.coopr.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialTimeout(e.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			io.WriteString(c, tc.raw)
			// Whatever the answer, the connection must end soon after the
			// timeout.
			_, _ = io.Copy(io.Discard, c)
			if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
				t.Fatalf("the connection ended after %v, want about 300ms", d)
			}
		})
	}
	if n := west.hits.Load(); n > 1 {
		// The streamed body may have reached the backend before it stalled;
		// the buffered ones never.
		t.Fatalf("%d requests reached the backend", n)
	}
	// A client that sends its body at an ordinary pace is served.
	if code, _, _ := e.call("POST", "api.coopr.test", "/v2/clusters", strings.NewReader(`{"name":"c"}`), nil); code != 200 {
		t.Fatalf("an ordinary POST: %d", code)
	}
}

// TestBodyGrowsWithBytes: a Content-Length is a claim; the buffer holds
// what arrived.
func TestBodyGrowsWithBytes(t *testing.T) {
	var total atomic.Int64
	buf, full, err := readUpTo(make([]byte, 0, 16), strings.NewReader("hello"), 1<<20+1, &total)
	if err != nil || full || string(buf) != "hello" || cap(buf) > 64 || total.Load() != int64(cap(buf)) {
		t.Fatalf("%q cap %d, total %d, %v", buf, cap(buf), total.Load(), err)
	}
	buf, _, err = readUpTo(nil, strings.NewReader(strings.Repeat("x", 100)), 11, &total)
	if err != nil || len(buf) != 11 {
		t.Fatalf("limit: %d bytes, %v", len(buf), err)
	}
	// Past maxBufferedTotal for all requests together, buffering stops.
	total.Store(maxBufferedTotal - 100)
	buf, full, err = readUpTo(make([]byte, 0, 16), strings.NewReader(strings.Repeat("x", 1000)), 1<<20+1, &total)
	if err != nil || !full || len(buf) > 128 || total.Load() > maxBufferedTotal {
		t.Fatalf("over the total: %d bytes, full %v, total %d, %v", len(buf), full, total.Load(), err)
	}
}

// TestMaxConnections: a listener holds at most proxy.max_connections client
// connections; the next is closed at once and counted.
func TestMaxConnections(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC+"proxy: {max_connections: 2}\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{noFront: true})
	srv := e.proxy.PlainServer()
	ln := e.proxy.Listener(listen(t), "http")
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	addr := ln.Addr().String()

	var held []net.Conn
	for range 2 {
		c, err := dialTimeout(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	eventually(t, "two open connections", func() bool {
		return e.metric("coopr_gslb_proxy_connections_open", map[string]string{"listener": "http"}) == 2
	})
	// Over the cap: reset at once (the reset may even beat connect).
	if c, err := dialTimeout(addr); err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: api.coopr.test\r\n\r\n")
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection over the cap was served")
		}
		c.Close()
	}
	eventually(t, "the rejection counted", func() bool {
		return e.metric("coopr_gslb_proxy_connections_rejected_total", map[string]string{"listener": "http"}) == 1
	})
	// A held connection is served, and closing one frees its slot.
	fmt.Fprint(held[0], "GET / HTTP/1.1\r\nHost: api.coopr.test\r\nConnection: close\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("a held connection: %v", err)
	}
	eventually(t, "a slot freed", func() bool {
		return e.metric("coopr_gslb_proxy_connections_open", map[string]string{"listener": "http"}) == 1
	})
	c, err := dialTimeout(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: api.coopr.test\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("after a slot freed: %v", err)
	}
}

// TestHTTP10TransferEncoding: HTTP/1.0 has no Transfer-Encoding; net/http
// ignores one, so the proxy refuses the request (400) on the plain listener,
// and never keeps an HTTP/1.0 connection alive.
func TestHTTP10TransferEncoding(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{noFront: true})
	srv := e.proxy.PlainServer()
	ln := e.proxy.Listener(listen(t), "http")
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	for _, tc := range []struct {
		name, raw string
		want      int
	}{
		{"TE", "POST /v2/clusters HTTP/1.0\r\nHost: api.coopr.test\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST /v2/clusters HTTP/1.0\r\nHost: api.coopr.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400},
		{"keep-alive", "GET / HTTP/1.0\r\nHost: api.coopr.test\r\nConnection: keep-alive\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialTimeout(ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.raw)
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the answer: %v, want EOF", err)
			}
		})
	}
	if n := west.hits.Load(); n != 1 {
		t.Fatalf("%d requests reached the backend, want 1", n)
	}
}

// TestBodyTimeoutHTTP2: over HTTP/2 too, a stalled request body is cut
// after proxy.body_timeout (the stream's read deadline), with 408.
func TestBodyTimeoutHTTP2(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC+"proxy: {body_timeout: 300ms}\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{noFront: true})
	front := httptest.NewUnstartedServer(e.proxy)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("abc")) }() // then nothing
	req, _ := http.NewRequest("POST", front.URL+"/v2/clusters", pr)
	req.Host = "api.coopr.test"
	req.ContentLength = 1 << 20
	start := time.Now()
	res, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("%s %d, want HTTP/2 408", res.Proto, res.StatusCode)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("cut after %v, want about 300ms", d)
	}
	if n := west.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the backend", n)
	}
}

// TestUpstreamTLSPlugsIn: a target whose Transport comes from forTLS with a
// *tls.Config reaches a TLS backend over https, verifying its certificate;
// upstream TLS only has to set it in buildView.
func TestUpstreamTLSPlugsIn(t *testing.T) {
	west := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("the backend was reached without TLS")
		}
		io.WriteString(w, "west over tls")
	}))
	t.Cleanup(west.Close)
	e := newEnv(t, twoDC, map[string]string{"w": west.Listener.Addr().String(), "e": closedAddr(t)}, envOptions{})
	good := west.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	v := e.proxy.currentView()
	set := func(tc *tls.Config) {
		for _, sv := range v.services {
			for _, tv := range sv.targets {
				tv.rt, tv.scheme = e.proxy.upstreams.forTLS(tc)
			}
		}
	}
	set(good)
	if code, body, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code != 200 || body != "west over tls" {
		t.Fatalf("with the right roots: %d %q", code, body)
	}
	// Roots that do not sign the backend's certificate: no answer.
	set(&tls.Config{RootCAs: x509.NewCertPool()})
	if code, _, _ := e.call("GET", "api.coopr.test", "/", nil, nil); code < 500 {
		t.Fatalf("with the wrong roots: %d, want a 5xx", code)
	}
	e.proxy.upstreams.retain(nil)
	if n := len(e.proxy.upstreams.byTLS); n != 0 {
		t.Fatalf("%d TLS transports kept after retain(nil)", n)
	}
}
