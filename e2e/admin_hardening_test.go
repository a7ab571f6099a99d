package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminListenerHardening: the admin listener closes idle keep-alive
// connections and silent ones, refuses a Host that is not its own (DNS
// rebinding), sends the security headers, and with read_requires_token
// wants the token for /metrics too.
func TestAdminListenerHardening(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte("alice "+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startGSLB(t, twoDCConfig(fleet, "", "", admin, fmt.Sprintf(
		"admin:\n  idle_timeout: 1s\n  read_timeout: 1s\n  read_requires_token: true\n  token_file: %q\n", tokenFile)), admin)

	get := func(path, host, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+admin+path, nil)
		if host != "" {
			req.Host = host
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	_, port, _ := net.SplitHostPort(admin)
	for _, tc := range []struct {
		path, host, token string
		want              int
	}{
		{"/api/v1/status", "attacker.example:" + port, testToken, http.StatusMisdirectedRequest},
		{"/", "attacker.example", "", http.StatusMisdirectedRequest},
		{"/metrics", "rebind.attacker.example", testToken, http.StatusMisdirectedRequest},
		{"/api/v1/status", "", testToken, http.StatusOK},
		{"/api/v1/status", "localhost:" + port, testToken, http.StatusOK},
		{"/api/v1/status", "[::1]", testToken, http.StatusOK},
		{"/metrics", "", "", http.StatusUnauthorized},
		{"/metrics", "", testToken, http.StatusOK},
		{"/healthz", "attacker.example", "", http.StatusOK},
	} {
		if res := get(tc.path, tc.host, tc.token); res.StatusCode != tc.want {
			t.Errorf("GET %s Host %q token %v: %d, want %d", tc.path, tc.host, tc.token != "", res.StatusCode, tc.want)
		}
	}

	page := get("/", "", "")
	if page.StatusCode != 200 {
		t.Fatalf("GET /: %d", page.StatusCode)
	}
	csp := page.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if v := page.Header.Get("X-Frame-Options"); v != "DENY" {
		t.Errorf("X-Frame-Options %q, want DENY", v)
	}
	if v := page.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", v)
	}

	// An idle keep-alive connection is closed after idle_timeout (1s).
	c, err := net.Dial("tcp", admin)
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
	if res.Close {
		t.Fatal("the server closed after the first request; it should keep the connection until idle")
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(10 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("idle admin connection not closed within 10s: %v", err)
	}
	if d := time.Since(start); d < 700*time.Millisecond || d > 5*time.Second {
		t.Errorf("idle admin connection closed after %s, want about idle_timeout 1s", d)
	}

	// A connection that never sends a request is closed after read_timeout.
	silent, err := net.Dial("tcp", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start = time.Now()
	silent.SetReadDeadline(start.Add(10 * time.Second))
	if _, err := bufio.NewReader(silent).ReadByte(); err != io.EOF {
		t.Fatalf("silent admin connection not closed within 10s: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("silent admin connection closed after %s, want about read_timeout 1s", d)
	}
}
