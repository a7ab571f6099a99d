package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// dialPair returns a client upConn and the server side of one loopback TCP
// connection.
func dialPair(t *testing.T) (*upConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	pc := &upConn{conn: c, br: bufio.NewReaderSize(nil, 4<<10), bw: bufio.NewWriterSize(nil, 4<<10)}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	pc.raw, pc.rawStepFn = raw, pc.rawStep
	pc.br.Reset(pc)
	pc.bw.Reset(pc)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return pc, srv
}

// serveOne reads one request with its body from srv and answers "ok".
func serveOne(t *testing.T, srv net.Conn, gotBody chan<- int) {
	br := bufio.NewReader(srv)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Error(err)
		close(gotBody)
		return
	}
	n, _ := io.Copy(io.Discard, req.Body)
	gotBody <- int(n)
	io.WriteString(srv, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

func TestKeptRequestIsWrittenByTheAnswersRead(t *testing.T) {
	for _, size := range []int{0, 100, 8 << 10, 256 << 10} {
		pc, srv := dialPair(t)
		if size >= 8<<10 {
			// Small socket buffers, so the kept bytes do not fit at once
			// and the rest goes the ordinary way.
			pc.conn.(*net.TCPConn).SetWriteBuffer(32 << 10)
			srv.(*net.TCPConn).SetReadBuffer(32 << 10)
		}
		got := make(chan int, 1)
		go serveOne(t, srv, got)
		body := bytes.Repeat([]byte("x"), size)
		req, _ := http.NewRequest("POST", "http://backend/v2/clusters", bytes.NewReader(body))
		if err := req.Write(pc.bw); err != nil {
			t.Fatal(err)
		}
		pc.deferLast()
		if err := pc.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if size < 4<<10 && pc.written != 0 {
			t.Fatalf("size %d: %d bytes written before the read", size, pc.written)
		}
		res, err := readAnswer(pc.br, req, nil)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != "ok" || <-got != size {
			t.Fatalf("size %d: %d %q", size, res.StatusCode, b)
		}
		if pc.pending != nil || pc.writeFailed {
			t.Fatalf("size %d: pending %d, writeFailed %v", size, len(pc.pending), pc.writeFailed)
		}
	}
}

func TestKeptRequestToAResetConnectionFailsAsAWrite(t *testing.T) {
	pc, srv := dialPair(t)
	srv.(*net.TCPConn).SetLinger(0)
	srv.Close() // a reset: the backend dropped the idle connection
	time.Sleep(50 * time.Millisecond)
	req, _ := http.NewRequest("GET", "http://backend/", nil)
	req.Write(pc.bw)
	pc.deferLast()
	pc.bw.Flush()
	_, err := readAnswer(pc.br, req, nil)
	if err == nil {
		t.Fatal("an answer from a reset connection")
	}
	// Either the write failed, or the reset was read as no answer at all:
	// leanRoundTrip retries both on a fresh connection.
	if !pc.writeFailed && !errors.Is(err, errNoAnswer) {
		t.Fatalf("error %v (written %d) is neither a failed write nor no answer", err, pc.written)
	}
}
