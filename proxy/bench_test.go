package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkProxyGET measures a GET through the proxy to a loopback backend,
// over real sockets with keep-alive on both sides.
func BenchmarkProxyGET(b *testing.B) {
	backend := newBackend(b, "west", ok("west"))
	e := newEnv(b, twoDC, map[string]string{"w": backend.addr(), "e": closedAddr(b)}, envOptions{noLog: true})
	client := e.front.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	req, _ := http.NewRequest("GET", e.front.URL+"/v2/clusters", nil)
	req.Host = "api.coopr.test"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

// BenchmarkServeHTTP measures the proxy's own work per request: the handler
// is called directly, and only the upstream side uses a socket.
func BenchmarkServeHTTP(b *testing.B) {
	backend := newBackend(b, "west", ok("west"))
	e := newEnv(b, twoDC, map[string]string{"w": backend.addr(), "e": closedAddr(b)}, envOptions{noLog: true, noFront: true})
	req := httptest.NewRequest("GET", "http://api.coopr.test/v2/clusters", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.proxy.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// TestServeHTTPAllocs guards the request path's allocations. The count
// includes the loopback backend's own (net/http server) allocations, which
// run in the same process; the whole is about 105 over ReverseProxy and
// http.Transport.
func TestServeHTTPAllocs(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts differ under the race detector")
	}
	backend := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC, map[string]string{"w": backend.addr(), "e": closedAddr(t)}, envOptions{noLog: true, noFront: true})
	req := httptest.NewRequest("GET", "http://api.coopr.test/v2/clusters", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	w := httptest.NewRecorder()
	e.proxy.ServeHTTP(w, req) // build the view and warm the connection pool
	allocs := testing.AllocsPerRun(200, func() {
		w := httptest.NewRecorder()
		e.proxy.ServeHTTP(w, req)
	})
	if allocs > 115 {
		t.Fatalf("%.0f allocations per proxied request, want at most 115", allocs)
	}
	t.Logf("%.0f allocations per proxied request (backend included)", allocs)
}

// TestRequestAllocs guards the allocations of the proxy alone, with a
// backend that allocates nothing: the request state, ReverseProxy's copy of
// the request, the try's context and trace, and http.Transport's exchange
// and answer (about 73 for a GET).
func TestRequestAllocs(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts differ under the race detector")
	}
	e := newEnv(t, twoDC, map[string]string{"w": cannedBackend(t), "e": closedAddr(t)}, envOptions{noLog: true, noFront: true})
	payload := []byte(`{"name":"prod"}`)
	for _, tc := range []struct {
		method string
		body   []byte
		max    float64
	}{
		{"GET", nil, 80},
		{"PUT", payload, 100}, // and the buffered body and its read deadline
	} {
		req := httptest.NewRequest(tc.method, "/v2/clusters?page=1", nil)
		req.Host, req.RemoteAddr = "api.coopr.test", "192.0.2.1:1234"
		req.Header.Set("Coopr-Userid", "admin")
		req.Header.Set("User-Agent", "test")
		br := bytes.NewReader(nil)
		body := io.NopCloser(br)
		w := &discardWriter{h: http.Header{}}
		serve := func() {
			if tc.body != nil {
				br.Reset(tc.body)
				req.Body, req.ContentLength = body, int64(len(tc.body))
			}
			clear(w.h)
			e.proxy.ServeHTTP(w, req)
		}
		serve()
		if w.code != 200 {
			t.Fatalf("%s: status %d", tc.method, w.code)
		}
		allocs := testing.AllocsPerRun(200, serve)
		if allocs > tc.max {
			t.Errorf("%s: %.0f allocations per request, want at most %.0f", tc.method, allocs, tc.max)
		}
		t.Logf("%s: %.0f allocations per request", tc.method, allocs)
	}
}

// cannedBackend is a loopback endpoint that answers every request with the
// same small JSON answer without net/http, so that a benchmark measures the
// proxy rather than the backend.
func cannedBackend(tb testing.TB) string {
	tb.Helper()
	const body = `{"clusters":[{"id":"c-1","name":"prod","state":"running","nodes":12}],"total":1,"page":1}`
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nDate: Mon, 02 Jan 2026 15:04:05 GMT\r\n\r\n" + body)
	ln := listen(tb)
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var n int
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
							for _, c := range bytes.TrimSpace(v) { // strconv would allocate
								n = n*10 + int(c-'0')
							}
						}
					}
					if _, err := br.Discard(n); err != nil {
						return
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// discardWriter is a reusable http.ResponseWriter that keeps nothing.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkServeHTTPCanned measures the proxy's own work per request, with a
// backend that costs next to nothing and a browser's worth of headers.
func BenchmarkServeHTTPCanned(b *testing.B) {
	e := newEnv(b, twoDC, map[string]string{"w": cannedBackend(b), "e": closedAddr(b)}, envOptions{noLog: true, noFront: true})
	payload := []byte(`{"name":"prod","nodes":12,"template":"hadoop-distributed","provider":"aws","config":{"a":1}}`)
	for _, tc := range []struct {
		name, method string
		body         []byte
	}{
		{"get", "GET", nil},
		{"post", "POST", payload},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(tc.method, "http://api.coopr.test/v2/clusters?page=1", nil)
			req.RemoteAddr = "192.0.2.1:1234"
			req.RequestURI = "/v2/clusters?page=1" // as a server reads it
			for k, v := range map[string]string{
				"User-Agent":      "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
				"Accept":          "application/json",
				"Accept-Encoding": "gzip, deflate, br",
				"Accept-Language": "en-US,en;q=0.5",
				"Cookie":          "session=abcdef0123456789",
				"Coopr-Userid":    "admin",
				"Coopr-Tenantid":  "superadmin",
				"Coopr-Apikey":    "0123456789abcdef",
				"Connection":      "keep-alive",
			} {
				req.Header.Set(k, v)
			}
			br := bytes.NewReader(nil)
			body := io.NopCloser(br)
			w := &discardWriter{h: http.Header{}}
			serve := func() {
				if tc.body != nil {
					br.Reset(tc.body)
					req.Body, req.ContentLength, req.GetBody = body, int64(len(tc.body)), nil
				}
				clear(w.h)
				w.code = 0
				e.proxy.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
			serve()
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}
