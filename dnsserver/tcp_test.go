package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// writeTCP writes one length-prefixed message.
func writeTCP(t testing.TB, c net.Conn, m *dns.Msg) {
	t.Helper()
	b := packet(t, m)
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
		t.Fatal(err)
	}
}

// readTCP reads one length-prefixed message.
func readTCP(c net.Conn, timeout time.Duration) (*dns.Msg, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

func TestTCPPipelining(t *testing.T) {
	f := start(t, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"api.gslb.example.com.", "txt.gslb.example.com.", "nope.gslb.example.com.", "all.gslb.example.com."}
	ids := map[uint16]string{}
	for _, name := range names {
		q := query(name, dns.TypeA)
		ids[q.Id] = name
		writeTCP(t, c, q) // all written before any is read
	}
	for range names {
		m, err := readTCP(c, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ids[m.Id] != m.Question[0].Name {
			t.Errorf("response %d is for %s, want %s", m.Id, m.Question[0].Name, ids[m.Id])
		}
		delete(ids, m.Id)
	}
	if len(ids) != 0 {
		t.Errorf("unanswered: %v", ids)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	f := start(t, "  tcp_idle_timeout: 300ms")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(c, time.Second); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = readTCP(c, 3*time.Second)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read error %v, want EOF (closed by the server)", err)
	}
	if d := time.Since(began); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("closed after %v, want about 300ms", d)
	}

	// A connection that never sends a query is closed as well.
	c2, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := readTCP(c2, 3*time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection: read error %v, want EOF", err)
	}
}

func TestTCPConnectionLimitClosesTheOldestIdle(t *testing.T) {
	f := start(t, "  tcp_max_connections: 2\n  tcp_max_connections_per_network: 2")
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
		if _, err := readTCP(c, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		time.Sleep(5 * time.Millisecond) // distinct activity times
	}
	// A third connection at the cap makes room: the one idle longest
	// (the first) is closed, the newcomer answered.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(c, 2*time.Second); err != nil {
		t.Fatalf("third connection not answered: %v", err)
	}
	if _, err := readTCP(conns[0], 2*time.Second); err == nil {
		t.Error("the oldest idle connection is still open")
	}
	writeTCP(t, conns[1], query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(conns[1], 2*time.Second); err != nil {
		t.Errorf("the newer connection was closed: %v", err)
	}
}

func TestTCPFloodDoesNotLockOut(t *testing.T) {
	f := start(t, "  tcp_max_connections: 50\n  tcp_idle_timeout: 30s")
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 200 {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			continue
		}
		flood = append(flood, c)
		switch i % 3 {
		case 0: // idle
		case 1:
			c.Write([]byte{0, 0}) // a zero-length frame
		case 2:
			c.Write([]byte{0, 40, 1, 2, 3}) // a frame never completed
		}
	}
	// Zero-length frames close their connection at once (EOF, or a reset
	// when it was evicted first).
	if _, err := readTCP(flood[1], 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("zero-length frame: read error %v, want the connection closed", err)
	}
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(c, 2*time.Second); err != nil {
		t.Fatalf("a legitimate client after a flood: %v", err)
	}
}

func TestTCPMalformedGetsFormerrWithRDAndCDOnly(t *testing.T) {
	f := start(t, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := query("api.gslb.example.com.", dns.TypeA, withECS("10.0.0.0/12"))
	m.RecursionDesired, m.CheckingDisabled, m.Truncated, m.RecursionAvailable, m.AuthenticatedData = true, true, true, true, true
	b := packet(t, m)
	b[len(b)-3] = 0xFF // the ECS option claims more bytes than there are
	c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	r, err := readTCP(c, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeFormatError || !r.RecursionDesired || !r.CheckingDisabled || r.Truncated || r.RecursionAvailable || r.AuthenticatedData {
		t.Errorf("got %v, want FORMERR copying only RD and CD", r)
	}
}

func TestSeveralUDPSockets(t *testing.T) {
	f := start(t, "  udp_sockets: 4")
	if got := len(f.srv.udp); got != 4 {
		t.Errorf("%d UDP sockets, want 4", got)
	}
	// Many client sockets spread over the server's sockets by hash.
	for range 32 {
		wantAddrs(t, f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA)), "192.0.2.1")
	}
	if f.srv.UDPAddr().Port != f.srv.TCPAddr().Port {
		t.Errorf("UDP port %d, TCP port %d: want one port", f.srv.UDPAddr().Port, f.srv.TCPAddr().Port)
	}
}

func TestShutdown(t *testing.T) {
	f := start(t, "")
	ctx := context.Background()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
		if _, _, err := c.Exchange(query("api.gslb.example.com.", dns.TypeA), f.addr); err == nil {
			t.Errorf("answered over %s after shutdown", network)
		}
	}
	if err := f.srv.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown: %v, want ErrClosed", err)
	}

	idle, err := New(Options{Snapshot: f.engine.Snapshot})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
}

func TestShutdownWithOpenConnections(t *testing.T) {
	f := start(t, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(c, time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("shutdown waited %v for an idle connection", d)
	}
}

// TestWildcardAddress serves on wildcard addresses, where each UDP reply
// must leave from the address its query was sent to (IP_PKTINFO,
// IPV6_PKTINFO): the clients' sockets are connected, so a reply from any
// other address, such as 127.0.0.1 for a query to 127.0.0.2, never reaches
// them.
func TestWildcardAddress(t *testing.T) {
	f := start(t, "")
	targets := []string{"127.0.0.1", "127.0.0.2"}
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		c.Close()
		targets = append(targets, "::1")
	}
	for _, wildcard := range []string{"0.0.0.0:0", "[::]:0"} {
		srv, err := New(Options{Addr: wildcard, Snapshot: f.engine.Snapshot})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown(context.Background())
		for _, target := range targets {
			local := &fixture{addr: net.JoinHostPort(target, strconv.Itoa(srv.UDPAddr().Port))}
			for _, network := range []string{"udp", "tcp"} {
				t.Run(wildcard+" "+network+" to "+target, func(t *testing.T) {
					wantAddrs(t, local.exchange(t, network, query("api.gslb.example.com.", dns.TypeA)), "192.0.2.1")
				})
			}
		}
	}
}

func TestTCPZeroLengthFrameCloses(t *testing.T) {
	f := start(t, "")
	for _, frame := range [][]byte{{0, 0}, {0, 5, 1, 2, 3, 4, 5}} {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(frame)
		if _, err := readTCP(c, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("frame %x: read error %v, want the connection closed", frame, err)
		}
		c.Close()
	}
}

func TestTCPPartialFramesDoNotResetIdleTimer(t *testing.T) {
	f := start(t, "  tcp_idle_timeout: 400ms")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := packet(t, query("api.gslb.example.com.", dns.TypeA))
	frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
	began := time.Now()
	// Dribble a byte every 100ms: the connection must still close at the
	// idle timeout.
	done := make(chan struct{})
	defer func() { c.Close(); <-done }()
	go func() {
		defer close(done)
		for i := 0; i < len(frame)-1; i++ {
			if _, err := c.Write(frame[i : i+1]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if _, err := readTCP(c, 3*time.Second); err == nil {
		t.Fatal("a query never completed was answered")
	}
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Errorf("closed after %v, want about the 400ms idle timeout", d)
	}
}

// TestTCPQueryDuringShutdownAnswered: a client connected just before
// Shutdown (as to the old process of a SIGUSR2 upgrade) whose query arrives
// as Shutdown begins gets its answer, not a connection closed unanswered.
func TestTCPQueryDuringShutdownAnswered(t *testing.T) {
	f := start(t, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The connection is accepted (a first query proves it) before Shutdown.
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	if _, err := readTCP(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(context.Background()) }()
	for !f.srv.stopping.Load() {
		time.Sleep(time.Millisecond) // bounded: Shutdown sets it first thing
	}
	writeTCP(t, c, query("api.gslb.example.com.", dns.TypeA))
	m, err := readTCP(c, 2*time.Second)
	if err != nil {
		t.Fatalf("query sent as Shutdown began: %v (closed unanswered)", err)
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		t.Errorf("answer during shutdown: %s with %d answers", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
