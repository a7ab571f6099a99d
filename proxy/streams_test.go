package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
}

// sse sends "data: N" events until the client leaves; the second comes only
// after the first was received, proving the proxy flushed it.
func sse(next <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			if rc.Flush() != nil {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}
}

func TestWebSocket(t *testing.T) {
	west := newBackend(t, "west", wsEcho)
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.front.URL, "http")+"/ws", &websocket.DialOptions{Host: "api.coopr.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if res.Header.Get("X-Coopr-GSLB-DC") != "west" {
		t.Errorf("101 lacks the DC header: %v", res.Header)
	}
	c.SetReadLimit(1 << 20)
	for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}

	// The DC going down closes the stream so the client reconnects elsewhere.
	e.setUp("west", "api", west.addr(), false)
	readCtx, readCancel := context.WithTimeout(ctx, 3*time.Second)
	defer readCancel()
	if _, _, err := c.Read(readCtx); err == nil || readCtx.Err() != nil {
		t.Fatalf("WebSocket to a DC that went down was not closed: %v", err)
	}
	c.CloseNow()
	eventually(t, "101 logged", func() bool {
		for _, l := range e.accessLog() {
			if l["status"] == 101.0 {
				return true
			}
		}
		return false
	})
}

func TestSSE(t *testing.T) {
	next := make(chan struct{})
	west := newBackend(t, "west", sse(next))
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
	res := e.do("GET", "api.coopr.test", "/events", nil, nil)
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	br := bufio.NewReader(res.Body)
	readEvent := func() string {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event: %v", err)
		}
		_, _ = br.ReadString('\n')
		return strings.TrimSpace(line)
	}
	// Each event arrives before the backend sends the next: nothing buffers.
	for i := 1; i <= 3; i++ {
		if ev := readEvent(); ev != "data: "+strconv.Itoa(i) {
			t.Fatalf("event %q, want %d", ev, i)
		}
		next <- struct{}{}
	}

	// A reload keeps the stream open.
	e.engine.SetConfig(e.cfg)
	time.Sleep(3 * streamCheckInterval)
	if ev := readEvent(); ev != "data: 4" {
		t.Fatalf("after a reload: %q", ev)
	}

	// West going down ends it.
	e.setUp("west", "api", west.addr(), false)
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("SSE stream to a DC that went down was not closed")
	}
	// The client reconnects and lands in east.
	if _, body, _ := e.call("GET", "api.coopr.test", "/events", nil, nil); body != "east" {
		t.Fatalf("reconnect served by %q", body)
	}
}

func TestLargeBodies(t *testing.T) {
	const size = 10 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	sum := sha256.Sum256(payload)
	west := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "POST":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		default:
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = w.Write(payload)
		}
	})
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})

	code, body, _ := e.call("POST", "api.coopr.test", "/upload", bytes.NewReader(payload), nil)
	if want := fmt.Sprintf("%d %x", size, sum); code != 200 || body != want {
		t.Fatalf("upload: got %d %q, want %q", code, body, want)
	}
	code, body, _ = e.call("GET", "api.coopr.test", "/download", nil, nil)
	if code != 200 || sha256.Sum256([]byte(body)) != sum {
		t.Fatalf("download: got %d, %d bytes", code, len(body))
	}
}
