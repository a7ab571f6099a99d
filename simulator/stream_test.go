package simulator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestWebSocketEcho(t *testing.T) {
	for _, role := range []string{RoleServer, RoleUI} {
		t.Run(role, func(t *testing.T) {
			s := startServer(t, Options{DC: "east", Role: role})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+s.Addr()+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			if resp.Header.Get(HeaderDC) != "east" {
				t.Errorf("upgrade answer lacks %s", HeaderDC)
			}
			big := bytes.Repeat([]byte("x"), 100<<10)
			msgs := []struct {
				typ  websocket.MessageType
				data []byte
			}{{websocket.MessageText, []byte("hello")}, {websocket.MessageBinary, []byte{0, 1, 2}}, {websocket.MessageBinary, big}}
			for _, m := range msgs {
				if err := c.Write(ctx, m.typ, m.data); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
					t.Fatalf("echo of %d bytes: type %v, %d bytes, %v", len(m.data), typ, len(got), err)
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

func TestSSEFlushesEachEvent(t *testing.T) {
	s := startServer(t, Options{})
	start := time.Now()
	resp, err := newClient(5 * time.Second).Get(s.URL() + "/sse?n=4&interval=150ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	var firstAt time.Duration
	for i := 1; i <= 4; i++ {
		line, err := br.ReadString('\n')
		if err != nil || line != "data: tick "+strconv.Itoa(i)+"\n" {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
		if i == 1 {
			firstAt = time.Since(start)
		}
		if blank, _ := br.ReadString('\n'); blank != "\n" {
			t.Fatalf("event %d not terminated by a blank line: %q", i, blank)
		}
	}
	total := time.Since(start)
	// All four events take at least 450ms; the first must not wait for them.
	if total < 450*time.Millisecond || firstAt > total/2 {
		t.Errorf("first event after %v of %v: events are not flushed one by one", firstAt, total)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("data after the last event: %q", rest)
	}
}

func TestLargeUploadAndDownload(t *testing.T) {
	s := startServer(t, Options{})
	const n = 10 << 20
	c := newClient(30 * time.Second)

	body := make([]byte, n)
	rand.Read(body)
	sum := sha256.Sum256(body)
	resp, err := c.Post(s.URL()+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	up := decode[struct {
		Bytes  int64
		SHA256 string
	}](t, string(b))
	if up.Bytes != n || up.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("upload reply %+v", up)
	}

	resp, err = c.Get(s.URL() + "/download?bytes=" + strconv.Itoa(n))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.ContentLength != n || !bytes.Equal(got, DownloadBody(n)) {
		t.Errorf("download: %d bytes (Content-Length %d), %v", len(got), resp.ContentLength, err)
	}
	for _, bad := range []string{"", "-1", "x", "99999999999"} {
		if r := do(t, "GET", s.URL()+"/download?bytes="+bad, "", nil); r.code != http.StatusBadRequest {
			t.Errorf("download bytes=%q: %d, want 400", bad, r.code)
		}
	}
}

func TestUIRole(t *testing.T) {
	s := startServer(t, Options{DC: "west", Role: RoleUI})
	r := do(t, "GET", s.URL()+"/", "", nil)
	if r.code != 200 || !strings.Contains(r.body, `<strong id="dc">west</strong>`) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("index: %d %q", r.code, r.body)
	}
	for _, path := range []string{"/v2/clusters", "/download?bytes=1", "/other"} {
		if r := do(t, "GET", s.URL()+path, "", nil); r.code != http.StatusNotFound {
			t.Errorf("ui %s: %d, want 404", path, r.code)
		}
	}
	if r := do(t, "GET", s.URL()+"/echo", "", nil); r.code != 200 {
		t.Errorf("ui /echo: %d", r.code)
	}
}
