package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHostileRequests sends the proxy's plain-HTTP listener requests no
// browser would: each gets an error status or a closed connection, never a
// hang, and the process keeps serving.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	g := startGSLB(t, proxyConfig(t, fleet, admin, httpAddr, ""), admin)

	const host = "Host: api.coopr.example.com\r\n"
	for _, tc := range []struct {
		name, raw string
		want      int // 0: the connection may just close
	}{
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400},
		{"no Host", "GET /v2/clusters HTTP/1.1\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0},
		{"bad version", "GET / HTTP/9.9\r\n" + host + "\r\n", 0},
		{"header too large", "GET / HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431},
		{"header name with space", "GET / HTTP/1.1\r\n" + host + "Bad Name: x\r\n\r\n", 400},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", 400},
		{"two lengths", "POST /v2/clusters HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"bad length", "POST /v2/clusters HTTP/1.1\r\n" + host + "Content-Length: -5\r\n\r\n", 400},
		{"unknown coding", "POST /v2/clusters HTTP/1.1\r\n" + host + "Transfer-Encoding: rot13\r\n\r\n", 501},
		{"bad chunk", "POST /v2/clusters HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 0},
		{"truncated body", "POST /v2/clusters HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\nshort", 0},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"absolute URI to another host", "GET http://evil.example.net/ HTTP/1.1\r\nHost: evil.example.net\r\n\r\n", 421},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", httpAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				_, _ = io.WriteString(c, tc.raw)
				if tc.name == "truncated body" {
					c.(*net.TCPConn).CloseWrite()
				}
			}()
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err != nil && tc.want != 0:
				t.Fatalf("no answer (%v), want %d", err, tc.want)
			case err != nil:
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the connection hung")
				}
			case tc.want != 0 && res.StatusCode != tc.want:
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			case res.StatusCode < 400:
				t.Fatalf("status %d: a hostile request was served", res.StatusCode)
			}
		})
	}

	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
	req.Host = "api.coopr.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("after the hostile requests: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the hostile requests: status %d", resp.StatusCode)
	}
	if g.cmd.ProcessState != nil {
		t.Fatal("the process exited")
	}
}
