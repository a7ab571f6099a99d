package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestPlainServerClientLeavesStream: behind the plain server, a client that
// leaves an event stream ends the upstream exchange too (the request's
// context ends the Transport's), so the backend is not left streaming to
// nobody.
func TestPlainServerClientLeavesStream(t *testing.T) {
	backendGone := make(chan struct{})
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the proxy closed its connection
		close(backendGone)
	})
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{noFront: true})
	srv := e.proxy.PlainServer()
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /events HTTP/1.1\r\nHost: api.coopr.test\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil || line != "data: 1\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	c.Close()
	select {
	case <-backendGone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend still streams 10s after the client left")
	}
	// The proxy answered and logged the request.
	eventually(t, "the access log line", func() bool { return len(e.accessLog()) == 1 })
	if err := srv.Shutdown(t.Context()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}
