package admin

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func testHandler(t *testing.T, readNeedsToken bool) *Server {
	t.Helper()
	cfg, _, err := config.Parse([]byte(twoDCs))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	t.Cleanup(e.Close)
	tokFile := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokFile, []byte("alice tok-a\n"), 0o600)
	tokens, err := LoadTokens(tokFile, "")
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Snapshot: e.Snapshot, Events: e.Events, Gatherer: prometheus.NewRegistry(), Tokens: tokens, ReadRequiresToken: readNeedsToken})
}

type hostCase struct {
	name, configured, bound string
	allowed                 []string
	host                    string
	want                    bool
}

func TestHostGuard(t *testing.T) {
	ifAddr := ""
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				ifAddr = n.IP.String()
			}
		}
	}
	tests := []hostCase{
		{"own address", "127.0.0.1:9090", "127.0.0.1:9090", nil, "127.0.0.1:9090", true},
		{"localhost with port", "127.0.0.1:9090", "127.0.0.1:9090", nil, "localhost:9090", true},
		{"localhost without port", "127.0.0.1:9090", "127.0.0.1:9090", nil, "localhost", true},
		{"LOCALHOST.", "127.0.0.1:9090", "127.0.0.1:9090", nil, "LOCALHOST.", true},
		{"[::1]", "127.0.0.1:9090", "127.0.0.1:9090", nil, "[::1]:9090", true},
		{"[::1] without port", "127.0.0.1:9090", "127.0.0.1:9090", nil, "[::1]", true},
		{"other loopback address", "127.0.0.1:9090", "127.0.0.1:9090", nil, "127.0.0.2", true},
		{"port forward", "127.0.0.1:9090", "127.0.0.1:9090", nil, "localhost:8000", true},
		{"rebinding name", "127.0.0.1:9090", "127.0.0.1:9090", nil, "attacker.example:9090", false},
		{"rebinding name without port", "127.0.0.1:9090", "127.0.0.1:9090", nil, "attacker.example", false},
		{"empty Host", "127.0.0.1:9090", "127.0.0.1:9090", nil, "", false},
		{"named listen address", "gslb.internal:9090", "10.0.0.5:9090", nil, "gslb.internal:9090", true},
		{"bound address", "gslb.internal:9090", "10.0.0.5:9090", nil, "10.0.0.5:9090", true},
		{"allowed host", "127.0.0.1:9090", "127.0.0.1:9090", []string{"gslb.example.com:443"}, "GSLB.example.com", true},
		{"another IP of a specific bind", "10.0.0.5:9090", "10.0.0.5:9090", nil, "10.0.0.6:9090", false},
		{"wildcard: unknown IP", "0.0.0.0:9090", "0.0.0.0:9090", nil, "203.0.113.77:9090", false},
		{"wildcard: unknown name", ":9090", "[::]:9090", nil, "attacker.example", false},
	}
	if ifAddr != "" {
		tests = append(tests, struct {
			name, configured, bound string
			allowed                 []string
			host                    string
			want                    bool
		}{"wildcard: interface address", "0.0.0.0:9090", "0.0.0.0:9090", nil, ifAddr + ":9090", true},
			struct {
				name, configured, bound string
				allowed                 []string
				host                    string
				want                    bool
			}{"specific bind: interface address", "127.0.0.1:9090", "127.0.0.1:9090", nil, ifAddr + ":9090", false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewHostGuard(tt.configured, tt.bound, tt.allowed).Allowed(tt.host); got != tt.want {
				t.Errorf("Allowed(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

// TestNewServerRefusesForeignHosts drives the hardened server over a real
// socket: a foreign Host gets 421 (health checks excepted), its own gets
// the page with the security headers.
func TestNewServerRefusesForeignHosts(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv, ln, err := NewServer("127.0.0.1:0", testHandler(t, false), ListenOptions{ReadTimeout: time.Second, IdleTimeout: time.Second, MaxConnections: 4})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	base := "http://" + ln.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	get := func(path, host string) *http.Response {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Host = host
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/", "attacker.example:" + strings.Split(ln.Addr().String(), ":")[1], http.StatusMisdirectedRequest},
		{"/api/v1/status", "attacker.example", http.StatusMisdirectedRequest},
		{"/healthz", "attacker.example", http.StatusOK},
		{"/", ln.Addr().String(), http.StatusOK},
		{"/api/v1/status", "localhost", http.StatusOK},
	} {
		res := get(tc.path, tc.host)
		if res.StatusCode != tc.want {
			t.Errorf("GET %s Host %s: %d, want %d", tc.path, tc.host, res.StatusCode, tc.want)
		}
		if res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s Host %s: security headers missing: %v", tc.path, tc.host, res.Header)
		}
	}
}

// TestNewServerClosesIdleConnections: a keep-alive connection is closed
// after the idle timeout, and one that never sends a request after the read
// timeout.
func TestNewServerClosesIdleConnections(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv, ln, err := NewServer("127.0.0.1:0", testHandler(t, false), ListenOptions{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	closedWithin := func(c net.Conn, r *bufio.Reader, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		c.SetReadDeadline(start.Add(limit))
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("connection not closed within %s: %v", limit, err)
		}
		return time.Since(start)
	}
	// Idle after one request.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	r := bufio.NewReader(c)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if d := closedWithin(c, r, 5*time.Second); d < 200*time.Millisecond {
		t.Errorf("idle connection closed after %s, before the idle timeout", d)
	}
	// Silent from the start.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	closedWithin(c2, bufio.NewReader(c2), 5*time.Second)
}

// TestConnectionCap: with MaxConnections 1, a second connection is not
// served while the first is open.
func TestConnectionCap(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv, ln, err := NewServer("127.0.0.1:0", testHandler(t, false), ListenOptions{ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxConnections: 1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(first, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", ln.Addr().String()) // queued in the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	io.WriteString(second, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r := bufio.NewReader(second)
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("a connection over the cap was served")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(r, nil); err != nil {
		t.Fatalf("the queued connection was not served once the first closed: %v", err)
	}
}

// TestPageCSPAllowsItsInlineCode: the page's inline script and style, as
// served, are exactly what the policy's hashes allow, and the policy
// allows nothing else inline.
func TestPageCSPAllowsItsInlineCode(t *testing.T) {
	rec := httptest.NewRecorder()
	testHandler(t, false).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q", csp)
	}
	page := rec.Body.String()
	for _, tag := range []struct{ open, close, directive string }{{"<script>", "</script>", "script-src"}, {"<style>", "</style>", "style-src"}} {
		re := regexp.MustCompile("(?s)" + regexp.QuoteMeta(tag.open) + "(.*?)" + regexp.QuoteMeta(tag.close))
		ms := re.FindAllStringSubmatch(page, -1)
		if len(ms) == 0 {
			t.Fatalf("no %s in the page", tag.open)
		}
		for _, m := range ms {
			sum := sha256.Sum256([]byte(m[1]))
			src := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			if !strings.Contains(csp, tag.directive+" "+src) && !strings.Contains(csp, " "+src) {
				t.Errorf("%s of the served page (%s) is not allowed by %q", tag.open, src, csp)
			}
		}
	}
	for _, h := range []string{"X-Frame-Options", "X-Content-Type-Options"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("%s missing", h)
		}
	}
}

func TestMetricsNeedReadToken(t *testing.T) {
	for _, tc := range []struct {
		needs bool
		auth  string
		want  int
	}{{false, "", 200}, {true, "", 401}, {true, "Bearer wrong", 401}, {true, "Bearer tok-a", 200}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		testHandler(t, tc.needs).ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("read_requires_token %v, %q: %d, want %d", tc.needs, tc.auth, rec.Code, tc.want)
		}
	}
}
