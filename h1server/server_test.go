package h1server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// start serves h on a loopback port and returns its address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.ErrorLog == nil {
		s.ErrorLog = log.New(io.Discard, "", 0)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// client is a raw connection to the server that sends bytes and reads
// answers with http.ReadResponse.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (cl *client) send(raw string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, raw); err != nil {
		cl.t.Fatal(err)
	}
}

// read reads one answer to a request with method and its whole body.
func (cl *client) read(method string) (*http.Response, string) {
	cl.t.Helper()
	res, err := http.ReadResponse(cl.br, &http.Request{Method: method})
	if err != nil {
		cl.t.Fatalf("reading the answer: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		cl.t.Fatalf("reading the body: %v", err)
	}
	return res, string(b)
}

// closed reports whether the server closed the connection: an end, or a
// reset when it closed with bytes of ours unread.
func (cl *client) closed() bool {
	_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := cl.br.ReadByte()
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
}

func TestAnswers(t *testing.T) {
	notCalled := func(w http.ResponseWriter, r *http.Request) { t.Error("handler called") }
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		req       string
		method    string
		code      int
		body      string
		header    map[string]string // "" means absent
		chunked   bool
		keepAlive bool
	}{
		{
			name: "content length from the handler",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			},
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code: 200, body: "hello", header: map[string]string{"Content-Length": "5", "Connection": ""}, keepAlive: true,
		},
		{
			name:    "unknown length is chunked",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hel"); io.WriteString(w, "lo") },
			req:     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code:    200, body: "hello", chunked: true, keepAlive: true,
		},
		{
			name:    "nothing written is an empty 200",
			handler: func(w http.ResponseWriter, r *http.Request) {},
			req:     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code:    200, header: map[string]string{"Content-Length": "0"}, keepAlive: true,
		},
		{
			name: "HEAD keeps the length and sends no body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "5")
				w.WriteHeader(200)
			},
			req: "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", method: "HEAD",
			code: 200, header: map[string]string{"Content-Length": "5"}, keepAlive: true,
		},
		{
			name:    "204 has no length",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) },
			req:     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code:    204, header: map[string]string{"Content-Length": ""}, keepAlive: true,
		},
		{
			name:    "the client asks to close",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") },
			req:     "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			code:    200, body: "x", header: map[string]string{"Connection": "close"}, chunked: true,
		},
		{
			name:    "the handler asks to close",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Connection", "close") },
			req:     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code:    200, header: map[string]string{"Connection": "close"},
		},
		{
			name:    "HTTP/1.0 without keep-alive closes",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old") },
			req:     "GET / HTTP/1.0\r\n\r\n",
			code:    200, body: "old", header: map[string]string{"Connection": "close"},
		},
		{
			name: "HTTP/1.0 keep-alive with a length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "2")
				io.WriteString(w, "ok")
			},
			req:  "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			code: 200, body: "ok", header: map[string]string{"Connection": "keep-alive"}, keepAlive: true,
		},
		{
			name: "header values cannot split the answer",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["X-Evil"] = []string{"a\r\nSet-Cookie: x=1"}
			},
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code: 200, header: map[string]string{"X-Evil": "a  Set-Cookie: x=1", "Set-Cookie": ""}, keepAlive: true,
		},
		{
			name: "request fields reach the handler",
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %s %s %s %v", r.Method, r.Host, r.RequestURI, r.Header.Get("Coopr-UserID"), r.RemoteAddr != "")
			},
			req:  "POST /v2/clusters?x=1 HTTP/1.1\r\nHost: api.example.com\r\nCoopr-UserID: admin\r\nContent-Length: 0\r\n\r\n",
			code: 200, body: "POST api.example.com /v2/clusters?x=1 admin true", keepAlive: true, chunked: true,
		},
		{
			name:    "a missing Host is refused",
			handler: notCalled,
			req:     "GET / HTTP/1.1\r\n\r\n",
			code:    400,
		},
		{
			name:    "garbage is refused",
			handler: notCalled,
			req:     "HELLO\r\n\r\n",
			code:    400,
		},
		{
			name:    "HTTP/2 over plain text is refused",
			handler: notCalled,
			req:     "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
			code:    505,
		},
		{
			name:    "an unknown expectation is refused",
			handler: notCalled,
			req:     "POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx",
			code:    417,
		},
		{
			name:    "an unknown transfer coding is refused",
			handler: notCalled,
			req:     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
			code:    501,
		},
		{
			name:    "a too large header is refused",
			handler: notCalled,
			req:     "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n",
			code:    431,
		},
		{
			name:    "a panic closes the connection",
			handler: func(w http.ResponseWriter, r *http.Request) { panic("boom") },
			req:     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			code:    -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := start(t, &Server{Handler: tc.handler, MaxHeaderBytes: 4 << 10})
			cl := dial(t, addr)
			cl.send(tc.req)
			if tc.code == -1 {
				if !cl.closed() {
					t.Fatal("connection left open")
				}
				return
			}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			res, body := cl.read(method)
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tc.code, body)
			}
			if tc.code >= 400 {
				if !cl.closed() {
					t.Fatal("connection left open after an error")
				}
				return
			}
			if body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			for k, want := range tc.header {
				got, ok := res.Header[k]
				switch {
				case k == "Connection":
					// http.ReadResponse keeps it only as res.Close.
				case want == "" && ok:
					t.Errorf("%s: %q, want none", k, got)
				case want != "" && strings.Join(got, ",") != want:
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if got, want := res.Close, tc.header["Connection"] == "close"; got != want {
				t.Errorf("answer says close %v, want %v", got, want)
			}
			if got := len(res.TransferEncoding) > 0; got != tc.chunked {
				t.Errorf("chunked %v, want %v", got, tc.chunked)
			}
			if res.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
			if tc.keepAlive {
				cl.send(tc.req)
				if res, _ := cl.read(method); res.StatusCode != tc.code {
					t.Errorf("second request: status %d", res.StatusCode)
				}
			} else if !cl.closed() {
				t.Error("connection left open")
			}
		})
	}
}

func TestPipelinedRequestsAnswerInOrder(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})})
	cl := dial(t, addr)
	cl.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"/one", "/two", "/three"} {
		if _, body := cl.read("GET"); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	}
}

func TestRequestBodies(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ignore" {
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		w.Write(b)
	})
	addr := start(t, &Server{Handler: echo})

	t.Run("content length and chunked on one connection", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		if _, body := cl.read("POST"); body != "hello" {
			t.Fatalf("body %q", body)
		}
		cl.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		if _, body := cl.read("POST"); body != "abcde" {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("an unread small body is drained and the connection kept", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		cl.read("POST")
		cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
		if _, body := cl.read("POST"); body != "ok" {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("an unread large body closes the connection", func(t *testing.T) {
		cl := dial(t, addr)
		size := maxDrain + 100
		cl.send(fmt.Sprintf("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size))
		go io.WriteString(cl.c, strings.Repeat("x", size))
		res, _ := cl.read("POST")
		if !res.Close {
			t.Error("the answer does not say close")
		}
	})
	t.Run("Expect: 100-continue", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		line, err := cl.br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("got %q, %v; want 100 Continue", line, err)
		}
		cl.br.ReadString('\n')
		cl.send("data")
		if _, body := cl.read("POST"); body != "data" {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("Expect: 100-continue never answered closes", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("POST /ignore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		res, _ := cl.read("POST")
		if !res.Close {
			t.Error("the answer does not say close")
		}
	})
}

func TestInformationalAndTrailers(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})})
	cl := dial(t, addr)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	line, _ := cl.br.ReadString('\n')
	if line != "HTTP/1.1 103 Early Hints\r\n" {
		t.Fatalf("first line %q", line)
	}
	hint, _ := cl.br.ReadString('\n')
	if !strings.HasPrefix(hint, "Link: ") {
		t.Fatalf("103 without its Link: %q", hint)
	}
	cl.br.ReadString('\n')
	res, body := cl.read("GET")
	if body != "body" || res.Trailer.Get("X-Checksum") != "abc" || res.Trailer.Get("X-Late") != "late" {
		t.Fatalf("body %q, trailers %v", body, res.Trailer)
	}
}

func TestHijack(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})})
	cl := dial(t, addr)
	// The first frame arrives with the request: the hijacker must get it
	// from the server's buffer.
	cl.send("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nping\n")
	res, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"})
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("got %v, %v", res, err)
	}
	line, _ := cl.br.ReadString('\n')
	if line != "echo ping\n" {
		t.Fatalf("echo %q", line)
	}
}

func TestStreamNoticesClientLeaving(t *testing.T) {
	gone := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(10 * time.Second):
			t.Error("the request's context did not end when the client left")
		}
	})})
	cl := dial(t, addr)
	cl.send("GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"}); err != nil {
		t.Fatal(err)
	}
	cl.c.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still waiting")
	}
}

func TestStreamThenNextRequest(t *testing.T) {
	// A flushed answer starts the background read; a request pipelined
	// behind it must not lose its first byte.
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
	})})
	cl := dial(t, addr)
	cl.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := cl.read("GET"); body != "/slow" {
		t.Fatalf("body %q", body)
	}
	cl.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := cl.read("GET"); body != "/next" {
		t.Fatalf("body %q", body)
	}
}

func TestTimeouts(t *testing.T) {
	addr := start(t, &Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ReadHeaderTimeout: 300 * time.Millisecond,
		IdleTimeout:       300 * time.Millisecond,
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		cl.read("GET")
		if !cl.closed() {
			t.Fatal("idle connection left open")
		}
	})
	t.Run("slow header", func(t *testing.T) {
		cl := dial(t, addr)
		cl.send("GET / HTTP/1.1\r\nHo")
		if !cl.closed() {
			t.Fatal("slow header left open")
		}
	})
	t.Run("silent client", func(t *testing.T) {
		cl := dial(t, addr)
		if !cl.closed() {
			t.Fatal("silent connection left open")
		}
	})
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})}
	addr := start(t, s)
	idle := dial(t, addr)
	idle.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.read("GET")
	busy := dial(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	var finished atomic.Bool
	shut := make(chan error, 1)
	go func() {
		err := s.Shutdown(context.Background())
		finished.Store(true)
		shut <- err
	}()
	if !idle.closed() {
		t.Fatal("idle connection left open by Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
	if finished.Load() {
		t.Fatal("Shutdown returned while a request was in flight")
	}
	close(release)
	res, body := busy.read("GET")
	if body != "done" || !res.Close {
		t.Fatalf("in-flight answer %q, close %v", body, res.Close)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

func TestShutdownTimesOut(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-block
	})}
	addr := start(t, s)
	cl := dial(t, addr)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
	}
}

func TestShutdownClosesSilentConnections(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ReadHeaderTimeout: 300 * time.Millisecond}
	addr := start(t, s)
	cl := dial(t, addr)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	cl.read("GET")
	cl.send("GET / HTTP/1.1\r\nHo") // never finished
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !cl.closed() {
		t.Fatal("connection left open")
	}
}

func TestAbortHandlerCutsTheAnswer(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(http.ServerContextKey) == nil {
			t.Error("no server in the request's context: ReverseProxy would not abort")
		}
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})})
	cl := dial(t, addr)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	res, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(res.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading a cut answer: %v, want unexpected EOF", err)
	}
}

func TestOneContinueWhenTheHandlerSendsItToo(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusContinue) // as ReverseProxy passes on its upstream's
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusContinue)
		w.Write(b)
	})})
	cl := dial(t, addr)
	cl.send("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	if line, _ := cl.br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q", line)
	}
	cl.br.ReadString('\n')
	cl.send("data")
	line, _ := cl.br.ReadString('\n')
	if line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("after the first 100 Continue: %q, want the answer", line)
	}
}

func TestHijackedConnectionReadsAndWritesAtOnce(t *testing.T) {
	// A WebSocket relays both ways at the same time; run under -race.
	served := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(served)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		done := make(chan struct{})
		go func() { // server pushes while it reads
			defer close(done)
			for i := 0; i < 200; i++ {
				if _, err := brw.Writer.WriteString("tick\n"); err != nil {
					return
				}
				brw.Writer.Flush()
			}
		}()
		for i := 0; i < 200; i++ {
			if _, err := brw.Reader.ReadString('\n'); err != nil {
				t.Error(err)
				break
			}
		}
		<-done
	})})
	cl := dial(t, addr)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	if res, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"}); err != nil || res.StatusCode != 101 {
		t.Fatalf("got %v, %v", res, err)
	}
	go func() {
		for i := 0; i < 200; i++ {
			io.WriteString(cl.c, "tock\n")
		}
	}()
	for i := 0; i < 200; i++ {
		if line, err := cl.br.ReadString('\n'); err != nil || line != "tick\n" {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
	}
	// The connection stays open until the server has read every line.
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not read every line")
	}
}

func TestSweeperRacesNothing(t *testing.T) {
	// Under -race: the sweeper reads connection state while requests are
	// answered one after another.
	addr := start(t, &Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       time.Minute,
	})
	cl := dial(t, addr)
	deadline := time.Now().Add(3 * sweepInterval)
	for time.Now().Before(deadline) {
		cl.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		cl.read("GET")
	}
}
