package health

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// coopr answers like coopr-server's documented health check.
func coopr(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/status" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Connection", "close")
	io.WriteString(w, "OK\n")
}

func httpTarget(endpoint string, mod func(*config.Check)) Target {
	c := config.Check{
		Type:       "http",
		Path:       "/status",
		ExpectBody: "OK",
		Timeout:    config.Duration(2 * time.Second),
	}
	if mod != nil {
		mod(&c)
	}
	return Target{ID: "dc1/api/" + endpoint, Endpoint: endpoint, Check: c}
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// rawServer accepts connections and hands each to handle, until the test
// ends; then it closes the connections still open and waits for handle.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	return l.Addr().String()
}

func checkResult(t *testing.T, r Result, wantOK bool, wantErr string, wantHard bool) {
	t.Helper()
	if r.OK != wantOK || r.Hard != wantHard || !strings.HasPrefix(r.Err, wantErr) || (wantErr == "" && r.Err != "") {
		t.Errorf("result = %+v, want OK=%v Err=%q... Hard=%v", r, wantOK, wantErr, wantHard)
	}
	if r.Latency <= 0 || r.At.IsZero() {
		t.Errorf("result = %+v, want latency and time set", r)
	}
}

func TestNetProberHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", coopr)
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", maxBody))) // OK comes past the bound
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 1024))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/method", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ep := hostPort(t, srv.URL)

	tests := []struct {
		name     string
		mod      func(*config.Check)
		wantOK   bool
		wantErr  string
		wantHard bool
	}{
		{"coopr status OK", nil, true, "", false},
		{"no body expected", func(c *config.Check) { c.ExpectBody = "" }, true, "", false},
		{"503", func(c *config.Check) { c.Path = "/unavailable" }, false, "status 503, want 200", false},
		{"503 against several", func(c *config.Check) { c.Path = "/unavailable"; c.ExpectStatus = []int{200, 204, 301} },
			false, "status 503, want 200, 204 or 301", false},
		{"wrong body", func(c *config.Check) { c.ExpectBody = "READY" }, false, `body lacks "READY"`, false},
		{"redirect not followed", func(c *config.Check) { c.Path = "/redirect" }, false, "status 302, want 200", false},
		{"redirect expected", func(c *config.Check) { c.Path = "/redirect"; c.ExpectStatus = []int{302}; c.ExpectBody = "" }, true, "", false},
		{"body read is bounded", func(c *config.Check) { c.Path = "/large" }, false, `body lacks "OK"`, false},
		{"endless body", func(c *config.Check) { c.Path = "/endless" }, false, `body lacks "OK"`, false},
		{"method", func(c *config.Check) { c.Path = "/method"; c.Method = http.MethodHead; c.ExpectBody = "" }, true, "", false},
		{"path without slash", func(c *config.Check) { c.Path = "status" }, true, "", false},
		{"unknown type", func(c *config.Check) { c.Type = "udp" }, false, `unknown check type "udp"`, false},
	}
	var p NetProber
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Probe(context.Background(), httpTarget(ep, tt.mod))
			checkResult(t, r, tt.wantOK, tt.wantErr, tt.wantHard)
		})
	}
	if len(p.configs) != 0 {
		t.Errorf("%d TLS configs built for plain-http checks, want 0", len(p.configs))
	}
}

func TestNetProberSendsHostAndHeaders(t *testing.T) {
	type seen struct{ host, tenant, ua, conn string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.Header.Get("Coopr-TenantID"), r.Header.Get("User-Agent"), r.Header.Get("Connection")}
		io.WriteString(w, "OK\n")
	}))
	defer srv.Close()

	var p NetProber
	r := p.Probe(context.Background(), httpTarget(hostPort(t, srv.URL), func(c *config.Check) {
		c.Host = "coopr.example.com"
		c.Headers = map[string]string{"Coopr-TenantID": "superadmin"}
	}))
	checkResult(t, r, true, "", false)
	want := seen{"coopr.example.com", "superadmin", userAgent, "close"}
	if s := <-got; s != want {
		t.Errorf("server saw %+v, want %+v", s, want)
	}
}

func TestNetProberFailures(t *testing.T) {
	const timeout = 100 * time.Millisecond
	hang := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads, never answers
	reset := rawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 4096)) // wait for the request, then abort
		c.(*net.TCPConn).SetLinger(0)
	})
	hangUp := rawServer(t, func(c net.Conn) { c.Read(make([]byte, 4096)) })
	refused := closedPort(t)

	tests := []struct {
		name     string
		target   Target
		wantErr  string
		wantHard bool
	}{
		{"refused http", httpTarget(refused, nil), "connection refused", true},
		{"refused tcp", Target{Endpoint: refused, Check: config.Check{Type: "tcp"}}, "connection refused", true},
		{"hang http", httpTarget(hang, nil), "timeout after 100ms", false},
		{"hang https", httpTarget(hang, func(c *config.Check) { c.Type = "https" }), "timeout after 100ms", false},
		{"reset", httpTarget(reset, nil), "connection reset", false},
		{"closed without answer", httpTarget(hangUp, nil), "connection closed without a response", false},
	}
	var p NetProber
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.target.Check.Timeout = config.Duration(timeout)
			r := p.Probe(context.Background(), tt.target)
			checkResult(t, r, false, tt.wantErr, tt.wantHard)
			if r.Err != tt.wantErr {
				t.Errorf("Err = %q, want exactly %q", r.Err, tt.wantErr)
			}
			if strings.HasPrefix(tt.wantErr, "timeout") && (r.Latency < timeout || r.Latency > 10*timeout) {
				t.Errorf("timed out after %v, want about %v", r.Latency, timeout)
			}
		})
	}
}

// TestNetProberClosesHungHandshake guards against net/http's habit of letting
// a dial (and its TLS handshake) run on after the request is cancelled.
func TestNetProberClosesHungHandshake(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr := rawServer(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // never answers the ClientHello
		closed <- struct{}{}
	})
	var p NetProber
	r := p.Probe(context.Background(), httpTarget(addr, func(c *config.Check) {
		c.Type = "https"
		c.Timeout = config.Duration(100 * time.Millisecond)
	}))
	checkResult(t, r, false, "timeout after 100ms", false)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe's connection outlived the probe")
	}
}

func TestNetProberCancelled(t *testing.T) {
	hang := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var p NetProber
	r := p.Probe(ctx, httpTarget(hang, nil))
	checkResult(t, r, false, "canceled", false)
	if r.Latency > time.Second {
		t.Errorf("cancelled probe took %v", r.Latency)
	}
}

func TestNetProberTCP(t *testing.T) {
	up := rawServer(t, func(net.Conn) {})
	var p NetProber
	r := p.Probe(context.Background(), Target{Endpoint: up, Check: config.Check{Type: "tcp"}})
	checkResult(t, r, true, "", false)
}

// writeCA writes the certificate of srv as a PEM file and returns its path.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newTLSServer is httptest.NewTLSServer without the log line of every
// handshake a test fails on purpose.
func newTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

func TestNetProberTLS(t *testing.T) {
	srv := newTLSServer(http.HandlerFunc(coopr))
	defer srv.Close()
	plain := httptest.NewServer(http.HandlerFunc(coopr))
	defer plain.Close()
	ca := writeCA(t, srv)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	ep := hostPort(t, srv.URL)

	https := func(mod func(*config.Check)) func(*config.Check) {
		return func(c *config.Check) {
			c.Type = "https"
			if mod != nil {
				mod(c)
			}
		}
	}
	tests := []struct {
		name     string
		endpoint string
		mod      func(*config.Check)
		wantOK   bool
		wantErr  string
	}{
		{"CA file", ep, https(func(c *config.Check) { c.CAFile = ca }), true, ""},
		{"unknown authority", ep, https(nil), false, "TLS: x509: certificate signed by unknown authority"},
		{"skip verify", ep, https(func(c *config.Check) { c.SkipVerify = true }), true, ""},
		{"wrong server name", ep, https(func(c *config.Check) { c.CAFile = ca; c.TLSServerName = "wrong.example.net" }),
			false, `TLS: x509: certificate is not valid for "wrong.example.net"`},
		{"server name from Host", ep, https(func(c *config.Check) { c.CAFile = ca; c.Host = "example.com:443" }), true, ""},
		{"wrong name from Host", ep, https(func(c *config.Check) { c.CAFile = ca; c.Host = "coopr.example.net" }),
			false, `TLS: x509: certificate is not valid for "coopr.example.net"`},
		{"plain server", hostPort(t, plain.URL), https(func(c *config.Check) { c.SkipVerify = true }),
			false, "TLS: server does not speak TLS"},
		{"missing CA file", ep, https(func(c *config.Check) { c.CAFile = "/nonexistent/ca.pem" }),
			false, "TLS: CA file: open /nonexistent/ca.pem: no such file or directory"},
		{"CA file without certificates", ep, https(func(c *config.Check) { c.CAFile = garbage }),
			false, "TLS: CA file " + garbage + " holds no PEM certificate"},
	}
	var p NetProber
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Probe(context.Background(), httpTarget(tt.endpoint, tt.mod))
			checkResult(t, r, tt.wantOK, tt.wantErr, false)
			if r.Err != tt.wantErr {
				t.Errorf("Err = %q, want exactly %q", r.Err, tt.wantErr)
			}
		})
	}
}

func TestNetProberBuildsOneConfigPerTLSSetting(t *testing.T) {
	srv := newTLSServer(http.HandlerFunc(coopr))
	defer srv.Close()
	ca := writeCA(t, srv)
	var p NetProber
	for range 3 {
		for _, name := range []string{"", "example.com"} {
			r := p.Probe(context.Background(), httpTarget(hostPort(t, srv.URL), func(c *config.Check) {
				c.Type, c.CAFile, c.TLSServerName = "https", ca, name
			}))
			checkResult(t, r, true, "", false)
		}
	}
	if len(p.configs) != 2 {
		t.Errorf("%d TLS configs for 2 TLS settings, want 2", len(p.configs))
	}
}

func TestDescribe(t *testing.T) {
	opErr := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://10.0.0.1:55054/status",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}}
	}
	tests := []struct {
		err      error
		want     string
		wantHard bool
	}{
		{opErr(syscall.ECONNREFUSED), "connection refused", true},
		{opErr(syscall.ECONNRESET), "connection reset", false},
		{opErr(syscall.EHOSTUNREACH), "host unreachable", false},
		{opErr(syscall.ENETUNREACH), "network unreachable", false},
		{&url.Error{Op: "Get", URL: "http://x", Err: io.EOF}, "connection closed without a response", false},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "coopr.invalid", IsNotFound: true}}, "no such host", false},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}}, "DNS timeout", false},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "server misbehaving"}}, "DNS: server misbehaving", false},
		{&url.Error{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, "TLS: x509: certificate expired or not yet valid", false},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}, "TLS: server sent alert: handshake failure", false},
		{opErr(errors.New("something odd")), "something odd", false},
		{probeError("status 500, want 200"), "status 500, want 200", false},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got, hard := describe(context.Background(), tt.err, time.Second)
			if got != tt.want || hard != tt.wantHard {
				t.Errorf("describe(%v) = %q, %v; want %q, %v", tt.err, got, hard, tt.want, tt.wantHard)
			}
		})
	}
	expired, cancel := context.WithTimeout(context.Background(), -1)
	defer cancel()
	if got, _ := describe(expired, errors.New("x"), 800*time.Millisecond); got != "timeout after 800ms" {
		t.Errorf("describe after the deadline = %q, want timeout after 800ms", got)
	}
}

func BenchmarkProbeHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(coopr))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	target := httpTarget(u.Host, nil)
	var p NetProber
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := p.Probe(ctx, target); !r.OK {
			b.Fatal(fmt.Sprint(r))
		}
	}
}

// TestNetProberOddResponses covers what the Transport used to handle for the
// probe: informational responses, framing, the header bound, and its words
// for a malformed answer.
func TestNetProberOddResponses(t *testing.T) {
	answer := func(resp string) string {
		return rawServer(t, func(c net.Conn) {
			c.Read(make([]byte, 4096))
			io.WriteString(c, resp)
		})
	}
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
	tests := []struct {
		name    string
		resp    string
		mod     func(*config.Check)
		wantErr string
	}{
		{"100 Continue skipped", "HTTP/1.1 100 Continue\r\n\r\n" + ok, nil, ""},
		{"many 103s skipped", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 8) + ok, nil, ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nO\r\n1\r\nK\r\n0\r\n\r\n", nil, ""},
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\n\r\nOK", nil, ""},
		{"body shorter than its length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nOK", nil, ""},
		{"gzip is not decoded", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nOK", nil, ""},
		{"101 then the new protocol", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nOK",
			func(c *config.Check) { c.ExpectStatus = []int{101} }, ""},
		{"headers over the bound", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\nOK", nil,
			"net/http: HTTP/1.x transport connection broken: net/http: server response headers exceeded 16384 bytes; aborted"},
		{"1xx headers count towards the bound", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: "+strings.Repeat("a", 1000)+"\r\n\r\n", 20) + ok,
			nil, "net/http: HTTP/1.x transport connection broken: net/http: server response headers exceeded 16384 bytes; aborted"},
		{"not HTTP", "HELLO\r\n\r\n", nil, `net/http: HTTP/1.x transport connection broken: malformed HTTP response "HELLO"`},
		{"bad header name", ok, func(c *config.Check) { c.Headers = map[string]string{"X Y": "1"} }, `net/http: invalid header field name "X Y"`},
		{"bad header value", ok, func(c *config.Check) { c.Headers = map[string]string{"X": "a\nb"} }, `net/http: invalid header field value for "X"`},
		{"bad method", ok, func(c *config.Check) { c.Method = "GE T" }, `bad request: net/http: invalid method "GE T"`},
	}
	var p NetProber
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Probe(context.Background(), httpTarget(answer(tt.resp), tt.mod))
			checkResult(t, r, tt.wantErr == "", tt.wantErr, false)
			if r.Err != tt.wantErr {
				t.Errorf("Err = %q, want exactly %q", r.Err, tt.wantErr)
			}
		})
	}
}

// TestNetProberAllocs guards the lean HTTP path: a probe of a server that
// allocates little must stay well under what net/http's Transport cost
// (111 allocations a probe against this server, 56 now).
func TestNetProberAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOK\n")
	addr := rawServer(t, func(c net.Conn) {
		var buf [512]byte
		c.Read(buf[:])
		c.Write(resp)
	})
	target := httpTarget(addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // like the Checker's
	defer cancel()
	var p NetProber
	allocs := testing.AllocsPerRun(200, func() {
		if r := p.Probe(ctx, target); !r.OK {
			t.Fatal(r.Err)
		}
	})
	t.Logf("%.0f allocations a probe, the server's included", allocs)
	if allocs > 70 {
		t.Errorf("%.0f allocations a probe, want at most 70", allocs)
	}
}
