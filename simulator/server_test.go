package simulator

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStatusAnswersLikeCooprServer(t *testing.T) {
	for _, role := range []string{RoleServer, RoleUI} {
		t.Run(role, func(t *testing.T) {
			s := startServer(t, Options{DC: "east", Role: role})
			r := do(t, "GET", s.URL()+"/status", "", nil)
			if r.code != http.StatusOK || r.body != "OK\n" {
				t.Fatalf("got %d %q, want 200 %q", r.code, r.body, "OK\n")
			}
			// Go's client strips Connection: close, so read the raw answer.
			if raw := rawGet(t, s.Addr(), "/status"); !strings.Contains(raw, "\r\nConnection: close\r\n") {
				t.Errorf("no Connection: close in\n%s", raw)
			}
			if got := r.header.Get(HeaderDC); got != "east" {
				t.Errorf("%s = %q, want east", HeaderDC, got)
			}
			if got := r.header.Get(HeaderEndpoint); got != s.Addr() {
				t.Errorf("%s = %q, want %q", HeaderEndpoint, got, s.Addr())
			}
			if s.Requests() != 2 {
				t.Errorf("Requests() = %d, want 2", s.Requests())
			}
		})
	}
}

func TestStartDefaultsAndValidation(t *testing.T) {
	s := startServer(t, Options{})
	if s.DC() != "dc1" || s.Role() != RoleServer || s.Name() != "dc1-server" {
		t.Errorf("defaults: dc %q role %q name %q", s.DC(), s.Role(), s.Name())
	}
	if s.IDStart() != 1 || s.IDIncrement() != 1 {
		t.Errorf("partition defaults: start %d inc %d, want 1 1", s.IDStart(), s.IDIncrement())
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.URL() != "http://"+s.Addr() {
		t.Errorf("Addr %q URL %q", s.Addr(), s.URL())
	}
	for _, bad := range []Options{{Role: "db"}, {IDIncrement: -1}, {Addr: "256.0.0.1:0"}} {
		if s, err := Start(bad); err == nil {
			s.Close()
			t.Errorf("Start(%+v) succeeded, want error", bad)
		}
	}
}

func TestCloseIsIdempotentAndEndsStreams(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := newClient(5 * time.Second).Get(s.URL() + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: tick 1\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	done := make(chan struct{})
	go func() {
		s.Close()
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return while a stream was open")
	}
	for i := 0; i < 100; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			return
		}
	}
	t.Fatal("stream still running after Close")
}

// rawGet sends a bare HTTP/1.1 request and returns the answer as sent.
func rawGet(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
	b, err := io.ReadAll(c) // the server closes, as Connection: close promises
	if err != nil {
		t.Fatalf("reading raw answer: %v", err)
	}
	return string(b)
}
