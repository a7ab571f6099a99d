package simulator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

const (
	// maxDownload bounds /download so a typo cannot stream forever.
	maxDownload = 1 << 30
	// wsReadLimit allows WebSocket messages far above the library's 32 KiB
	// default, so proxies can be tested with large frames.
	wsReadLimit = 16 << 20
	// defaultSSEInterval is the gap between server-sent events.
	defaultSSEInterval = 100 * time.Millisecond
)

// downloadPattern holds whole cycles of the /download byte pattern (byte i is
// i mod 251), so writing any prefix of it keeps the pattern continuous. A
// prime cycle makes dropped or reordered chunks visible to a checksum.
var downloadPattern = func() []byte {
	b := make([]byte, 251*128)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// DownloadBody returns the n bytes GET /download?bytes=n sends, so a test can
// compare what came through a proxy.
func DownloadBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

type echoReply struct {
	DC         string      `json:"dc"`
	Endpoint   string      `json:"endpoint"`
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Query      string      `json:"query,omitempty"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr"`
	Proto      string      `json:"proto"`
	Headers    http.Header `json:"headers"`
	BodyBytes  int64       `json:"body_bytes"`
}

// handleEcho answers any method with what the endpoint received, so proxy
// tests can check that headers such as Coopr-UserID pass through untouched.
func (s *Server) handleEcho(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	writeJSON(w, http.StatusOK, echoReply{
		DC:         s.dc,
		Endpoint:   s.addr,
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		Proto:      r.Proto,
		Headers:    r.Header,
		BodyBytes:  n,
	})
}

// handleDownload streams ?bytes=N bytes of a fixed pattern (see DownloadBody).
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > maxDownload {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bytes must be an integer from 0 to %d", maxDownload))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		chunk := downloadPattern[:min(n, int64(len(downloadPattern)))]
		if _, err := w.Write(chunk); err != nil {
			return
		}
		n -= int64(len(chunk))
	}
}

// handleUpload reads the whole body and reports its size and SHA-256.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
}

// handleSSE sends "data: tick N" events, flushing each so a buffering proxy
// shows up as late events. ?n= stops after n events (default: until the
// client leaves); ?interval= changes the 100ms gap.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q, "n", 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	interval := defaultSSEInterval
	if v := q.Get("interval"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval <= 0 {
			writeError(w, http.StatusBadRequest, "interval must be a positive Go duration")
			return
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 1; limit == 0 || i <= limit; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// handleWS echoes every WebSocket message back with its type.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	// Origin checks belong to the real UI; here they would only get in the
	// way of proxies that rewrite Host.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has already answered the client
	}
	defer c.CloseNow()
	c.SetReadLimit(wsReadLimit)
	ctx := r.Context()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// handleUIIndex serves the UI's landing page, naming the DC so a person
// looking through the load balancer sees where the session landed.
func (s *Server) handleUIIndex(w http.ResponseWriter, r *http.Request) {
	dc := html.EscapeString(s.dc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><title>Coopr UI (%s)</title></head>
<body><h1>Coopr UI</h1>
<p>Datacenter: <strong id="dc">%s</strong></p>
<p>Endpoint: <code id="endpoint">%s</code> (%s)</p>
</body></html>
`, dc, dc, html.EscapeString(s.addr), html.EscapeString(s.name))
}
