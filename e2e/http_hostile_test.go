package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/coopr-gslb/coopr-gslb/internal/acmetest"
)

// hostileBackend is a Coopr endpoint written on a raw socket, so that it
// can misbehave as no HTTP library would: after answering /poison it sends
// a second, unrequested answer 300 ms later on the same connection, and it
// answers /big-header with a 2 MiB header field. Every other path is
// answered 200 with the path as the body, so each client can tell its own
// answer. It counts the requests of every path.
type hostileBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	hits map[string]int
	wg   sync.WaitGroup
}

func startHostileBackend(t *testing.T) *hostileBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &hostileBackend{ln: ln, hits: map[string]int{}}
	var conns sync.Map
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				b.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		b.wg.Wait()
	})
	return b
}

func (b *hostileBackend) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		path := req.URL.Path
		b.mu.Lock()
		b.hits[path]++
		b.mu.Unlock()
		body := path
		switch {
		case path == "/status":
			body = "OK"
		case path == "/big-header":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nhi", strings.Repeat("a", 2<<20))
			continue
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(body))
		if req.Method != http.MethodHead {
			io.WriteString(c, body)
		}
		if strings.HasPrefix(path, "/poison") {
			time.Sleep(300 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\npoisoned")
		}
	}
}

func (b *hostileBackend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[path]
}

// hostileEnv is coopr-gslb with both listeners in front of one
// hostileBackend.
type hostileEnv struct {
	g                *gslb
	be               *hostileBackend
	http, https      string
	cert             acmetest.Cert
	h2TLS            *http.Client
	plain            *http.Client
	bodyTimeout      time.Duration
	hostHeader, host string
}

func startHostileEnv(t *testing.T, bodyTimeout time.Duration) *hostileEnv {
	t.Helper()
	be := startHostileBackend(t)
	cert := acmetest.WriteCert(t, "api.coopr.example.com")
	g, httpAddr, httpsAddr := startTLSGSLB(t, func(admin, httpAddr, httpsAddr string) string {
		return fmt.Sprintf(`listen:
  http: %q
  https: %q
  dns: ""
  admin: %q
health: {interval: 500ms, timeout: 400ms, rise: 1, fall: 3}
datacenters:
  - name: east
    priority: 1
    services:
      api: {endpoints: [%q]}
services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
proxy:
  access_log: false
  body_timeout: %s
  response_header_timeout: 5s
tls:
  certificates:
    - {cert: %q, key: %q}
`, httpAddr, httpsAddr, admin, be.ln.Addr().String(), bodyTimeout, cert.CertFile, cert.KeyFile)
	})
	e := &hostileEnv{g: g, be: be, http: httpAddr, https: httpsAddr, cert: cert, bodyTimeout: bodyTimeout,
		host: "api.coopr.example.com", hostHeader: "Host: api.coopr.example.com\r\n"}
	e.h2TLS = acmetest.HTTPSClient(cert.Roots, httpsAddr)
	e.plain = &http.Client{Timeout: 10 * time.Second}
	return e
}

// get sends method path over client (a new connection when fresh) and
// returns the status and body.
func (e *hostileEnv) get(t *testing.T, client *http.Client, method, base, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = e.host
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Proto
}

// TestHostileStrayBackendBytes: a backend's unrequested second answer is
// never delivered to the next, unrelated client, after a GET or a HEAD, on
// either listener (HTTP/2 included).
func TestHostileStrayBackendBytes(t *testing.T) {
	t.Parallel()
	e := startHostileEnv(t, 10*time.Second)
	for _, tc := range []struct {
		name, method string
		client       func() *http.Client
		base         string
		proto        string
	}{
		{"plain GET", "GET", func() *http.Client { return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}} }, "http://" + e.http, "HTTP/1.1"},
		{"plain HEAD", "HEAD", func() *http.Client { return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}} }, "http://" + e.http, "HTTP/1.1"},
		{"h2 GET", "GET", func() *http.Client { return acmetest.HTTPSClient(e.cert.Roots, e.https) }, "https://" + e.host, "HTTP/2.0"},
		{"h2 HEAD", "HEAD", func() *http.Client { return acmetest.HTTPSClient(e.cert.Roots, e.https) }, "https://" + e.host, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for try := range 3 {
				poison := fmt.Sprintf("/poison-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), try)
				code, _, proto := e.get(t, tc.client(), tc.method, tc.base, poison)
				if code != 200 || proto != tc.proto {
					t.Fatalf("%s: %d over %s", poison, code, proto)
				}
				time.Sleep(600 * time.Millisecond) // the stray answer has arrived
				next := fmt.Sprintf("/next-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), try)
				code, body, _ := e.get(t, tc.client(), "GET", tc.base, next)
				if code != 200 || body != next {
					t.Fatalf("try %d: the next client got %d %q, want its own answer %q", try, code, body, next)
				}
			}
		})
	}
}

// TestHostileHTTP2Method: an HTTP/2 request whose :method is not a token
// ("GET /internal HTTP/1.1 x", which a hand-written request writer would
// turn into a request line of the client's making) gets 400, and nothing
// reaches the backend.
func TestHostileHTTP2Method(t *testing.T) {
	t.Parallel()
	e := startHostileEnv(t, 10*time.Second)
	for _, method := range []string{"GET /internal HTTP/1.1 x", "GET\tX", "G@T"} {
		c, err := tls.Dial("tcp", e.https, &tls.Config{ServerName: e.host, RootCAs: e.cert.Roots, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("ALPN %q, want h2", p)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		status := h2Request(t, c, []hpack.HeaderField{
			{Name: ":method", Value: method},
			{Name: ":scheme", Value: "https"},
			{Name: ":authority", Value: e.host},
			{Name: ":path", Value: "/public"},
		})
		c.Close()
		if status != "400" {
			t.Errorf(":method %q: status %s, want 400", method, status)
		}
	}
	if n := e.be.count("/public") + e.be.count("/internal"); n != 0 {
		t.Fatalf("%d requests with a bad method reached the backend", n)
	}
	// A good method over the same path is served.
	if code, body, _ := e.get(t, e.h2TLS, "GET", "https://"+e.host, "/public"); code != 200 || body != "/public" {
		t.Fatalf("a good request: %d %q", code, body)
	}
}

// h2Request sends one HEADERS frame on a fresh HTTP/2 connection and returns
// the :status of the answer ("" if the stream was reset or the connection
// closed first).
func h2Request(t *testing.T, c net.Conn, fields []hpack.HeaderField) string {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return ""
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				return f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return ""
			}
		case *http2.GoAwayFrame:
			return ""
		}
	}
}

// TestHostileFraming: a request with both Content-Length and
// Transfer-Encoding is answered and its connection closed (RFC 9112,
// section 6.1), on both listeners; an HTTP/1.0 request with a
// Transfer-Encoding gets 400 and reaches no backend.
func TestHostileFraming(t *testing.T) {
	t.Parallel()
	e := startHostileEnv(t, 10*time.Second)
	dialPlain := func() net.Conn {
		c, err := net.DialTimeout("tcp", e.http, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dialTLS := func() net.Conn {
		c, err := tls.Dial("tcp", e.https, &tls.Config{ServerName: e.host, RootCAs: e.cert.Roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		dial func() net.Conn
		raw  string
		want int
		path string
	}{
		{"CL+TE plain", dialPlain, "POST /clte-plain HTTP/1.1\r\n" + e.hostHeader + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "/clte-plain"},
		{"CL+TE tls", dialTLS, "POST /clte-tls HTTP/1.1\r\n" + e.hostHeader + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "/clte-tls"},
		{"HTTP/1.0+TE", dialPlain, "POST /te10 HTTP/1.0\r\n" + e.hostHeader + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400, "/te10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			// A second request follows at once, as a smuggler would send it.
			io.WriteString(c, tc.raw+"GET /smuggled HTTP/1.1\r\n"+e.hostHeader+"\r\n")
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
				t.Fatalf("after the answer: %v, want the connection closed", err)
			}
			want := 0
			if tc.want == 200 {
				want = 1
			}
			if n := e.be.count(tc.path); n != want {
				t.Fatalf("%d requests reached the backend, want %d", n, want)
			}
		})
	}
	if n := e.be.count("/smuggled"); n != 0 {
		t.Fatalf("%d requests after a bad framing were served", n)
	}
}

// TestHostileSlowBodies: 500 connections that send only headers announcing a
// 1 MiB body hold little memory (buffers grow with the bytes that arrive),
// are cut off at proxy.body_timeout, and do not stop an ordinary client.
func TestHostileSlowBodies(t *testing.T) {
	t.Parallel()
	const conns = 500
	e := startHostileEnv(t, 2*time.Second)
	before := rssMB(t, e.g.cmd.Process.Pid)
	start := time.Now()
	ends := make(chan time.Duration, conns)
	var wg sync.WaitGroup
	for i := range conns {
		c, err := net.DialTimeout("tcp", e.http, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /slow HTTP/1.1\r\n%sContent-Length: 1048576\r\n\r\n", e.hostHeader)
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			ends <- time.Since(start)
		})
	}
	// During the attack an ordinary client is served.
	for range 5 {
		if code, body, _ := e.get(t, e.plain, "GET", "http://"+e.http, "/ordinary"); code != 200 || body != "/ordinary" {
			t.Fatalf("an ordinary client during the attack: %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	peak := rssMB(t, e.g.cmd.Process.Pid)
	t.Logf("RSS %d MB before, %d MB with %d stalled bodies", before, peak, conns)
	if peak > 300 {
		t.Errorf("RSS %d MB with %d stalled bodies, want < 300 MB", peak, conns)
	}
	wg.Wait()
	close(ends)
	var last time.Duration
	for d := range ends {
		last = max(last, d)
	}
	// Sending the headers took a moment; every connection ends within the
	// timeout of its last byte plus scheduling slack.
	if last > e.bodyTimeout+10*time.Second {
		t.Fatalf("the last stalled body was cut after %v, want about %v", last, e.bodyTimeout)
	}
	if n := e.be.count("/slow"); n != 0 {
		t.Fatalf("%d stalled bodies reached the backend", n)
	}
	if code, _, _ := e.get(t, e.plain, "GET", "http://"+e.http, "/after"); code != 200 {
		t.Fatalf("after the attack: %d", code)
	}
}

// rssMB returns the resident memory of process pid in MB.
func rssMB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestHostileBackendHeader: a backend answer with a 2 MiB header gets 502
// (proxy.max_response_header_bytes, 1 MiB by default), and the proxy goes
// on serving.
func TestHostileBackendHeader(t *testing.T) {
	t.Parallel()
	e := startHostileEnv(t, 10*time.Second)
	before := rssMB(t, e.g.cmd.Process.Pid)
	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
	}{
		{"plain", e.plain, "http://" + e.http},
		{"h2", e.h2TLS, "https://" + e.host},
	} {
		if code, _, _ := e.get(t, tc.client, "GET", tc.base, "/big-header"); code != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502", tc.name, code)
		}
		if code, body, _ := e.get(t, tc.client, "GET", tc.base, "/fine"); code != 200 || body != "/fine" {
			t.Fatalf("%s: after the big header: %d %q", tc.name, code, body)
		}
	}
	if after := rssMB(t, e.g.cmd.Process.Pid); after > before+100 {
		t.Errorf("RSS grew from %d to %d MB", before, after)
	}
}
