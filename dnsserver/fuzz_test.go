package dnsserver

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what is written.
type recorder struct {
	remote net.Addr
	out    []byte
	writes int
}

func (w *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *recorder) RemoteAddr() net.Addr      { return w.remote }
func (w *recorder) WriteMsg(m *dns.Msg) error { b, err := m.Pack(); w.Write(b); return err }
func (w *recorder) Write(b []byte) (int, error) {
	w.out = append(w.out[:0], b...)
	w.writes++
	return len(b), nil
}
func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// serveTCPPacket is the TCP query path from raw bytes, as miekg/dns's
// server runs it (header check with our accept function, unpack, handler),
// so that the fuzzer reaches serve without sockets. It reports whether the
// packet got to our handler.
func serveTCPPacket(s *Server, packet []byte, w *recorder) bool {
	if len(packet) < headerSize {
		return false // miekg drops it
	}
	if acceptHeader(header(packet)) != dns.MsgAccept {
		return false // miekg answers FORMERR or NOTIMP from the header, or drops it
	}
	req := new(dns.Msg)
	if err := req.Unpack(packet); err != nil {
		return false // miekg answers FORMERR
	}
	s.serve(w, req, tcp)
	return true
}

// miekgUDP is the reference for our UDP path: miekg/dns's own server, with
// our accept function and handler, as the server ran UDP before it had a
// loop of its own, reading from an in-memory packet connection. exchange
// returns what it sends for a packet, nil for nothing.
type miekgUDP struct {
	conn   *memConn
	events chan []byte // one per packet: the response, or nil for none
}

func newMiekgUDP(tb testing.TB, s *Server) *miekgUDP {
	ref := &miekgUDP{events: make(chan []byte, 1)}
	ref.conn = &memConn{in: make(chan []byte), out: ref.events, stop: make(chan struct{})}
	started := make(chan struct{})
	srv := &dns.Server{
		PacketConn: ref.conn,
		UDPSize:    udpReadSize,
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			rec := &recorder{remote: w.RemoteAddr()}
			handler{s, udp}.ServeDNS(rec, req)
			if rec.writes == 0 {
				ref.events <- nil
				return
			}
			ref.events <- rec.out
		}),
		MsgAcceptFunc: func(dh dns.Header) dns.MsgAcceptAction {
			action := acceptHeader(dh)
			if action == dns.MsgIgnore {
				ref.events <- nil
			}
			return action
		},
		MsgInvalidFunc: func(m []byte, _ error) {
			if len(m) < headerSize {
				ref.events <- nil // dropped; otherwise FORMERR is written
			}
		},
		NotifyStartedFunc: func() { close(started) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	<-started
	tb.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return ref
}

// exchange has miekg's server read packet from a client at from.
func (ref *miekgUDP) exchange(tb testing.TB, packet []byte, from netip.AddrPort) []byte {
	tb.Helper()
	ref.conn.remote = net.UDPAddrFromAddrPort(from)
	ref.conn.in <- packet
	select {
	case b := <-ref.events:
		return b
	case <-time.After(5 * time.Second):
		tb.Fatal("miekg/dns's server neither answered nor dropped the packet")
		return nil
	}
}

// memConn is a net.PacketConn over channels for miekgUDP. remote, the
// sender of the next packet, is set before the packet is sent on in, which
// orders the write before miekg's read of it.
type memConn struct {
	in       chan []byte
	out      chan []byte
	stop     chan struct{}
	stopOnce sync.Once
	remote   *net.UDPAddr
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), c.remote, nil // a long datagram is cut, as by a socket
	case <-c.stop:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *memConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.out <- append([]byte(nil), b...)
	return len(b), nil
}

func (c *memConn) Close() error                     { c.stopOnce.Do(func() { close(c.stop) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (c *memConn) SetDeadline(t time.Time) error    { return c.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadDeadline wakes the reader for a deadline in the past, which is how
// miekg/dns stops its server; the per-read deadlines it sets are ignored.
func (c *memConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.Close()
	}
	return nil
}

func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	add := func(m *dns.Msg) { seeds = append(seeds, packet(tb, m)) }
	for _, name := range []string{
		"api.gslb.example.com.", "API.GSLB.example.com.", "x.apps.gslb.example.com.", "all.gslb.example.com.",
		"near.gslb.example.com.", "strict.gslb.example.com.", "www.gslb.example.com.", "loop1.gslb.example.com.",
		"dangling.gslb.example.com.", "ext.gslb.example.com.", "gslb.example.com.", "child.gslb.example.com.",
		"a.child.gslb.example.com.", "foo.wild.gslb.example.com.", "nope.gslb.example.com.", "big.gslb.example.com.",
		"ent.sub.gslb.example.com.", "example.org.", `a\.gslb.example.com.`, ".",
	} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeNS, dns.TypeANY, dns.TypeDS} {
			add(query(name, qt))
		}
		add(query(name, dns.TypeA, withEDNS(4096)))
		add(query(name, dns.TypeTXT, withEDNS(600)))
		add(query(name, dns.TypeA, withECS("10.2.3.0/24")))
		add(query(name, dns.TypeA, withECS("2001:db8::/48")))
	}
	add(query("api.gslb.example.com.", dns.TypeA, withEDNS(1232), func(m *dns.Msg) { m.IsEdns0().SetVersion(3) }))
	add(query("gslb.example.com.", dns.TypeAXFR))
	add(query("gslb.example.com.", dns.TypeOPT))
	chaos := query("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	add(chaos)
	two := query("api.gslb.example.com.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	add(two)

	for _, opcode := range []int{dns.OpcodeNotify, dns.OpcodeUpdate, dns.OpcodeStatus, 3, 15} {
		m := query("gslb.example.com.", dns.TypeSOA)
		m.Opcode, m.RecursionDesired, m.CheckingDisabled = opcode, true, true
		add(m)
	}
	odd := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	odd.Zero, odd.Truncated, odd.AuthenticatedData, odd.CheckingDisabled, odd.RecursionAvailable = true, true, true, true, true
	add(odd)
	odd.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	odd.Ns = odd.Answer
	add(odd) // an answer is tolerated, an answer and an authority record too
	odd.Answer = append(odd.Answer, odd.Answer[0])
	add(odd) // two answers are rejected on the header
	resp := query("api.gslb.example.com.", dns.TypeA)
	resp.Response = true
	add(resp)
	// Cookies (client only, with a server cookie, malformed), NSID, TSIG.
	add(query("api.gslb.example.com.", dns.TypeA, withCookie("0102030405060708")))
	add(query("api.gslb.example.com.", dns.TypeA, withCookie("010203040506070801000000000000010000000000000000")))
	add(query("api.gslb.example.com.", dns.TypeA, withCookie("0102")))
	nsid := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	nsid.IsEdns0().Option = append(nsid.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	add(nsid)
	tsig := query("api.gslb.example.com.", dns.TypeA)
	tsig.SetTsig("nokey.", dns.HmacSHA256, 300, 1700000000)
	tsig.Extra = append(tsig.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "nokey.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.HmacSHA256, TimeSigned: 1700000000, Fudge: 300, MACSize: 4, MAC: "00000000", OrigId: tsig.Id})
	tsig.Extra = tsig.Extra[1:]
	add(tsig)

	good := packet(tb, query("api.gslb.example.com.", dns.TypeA, withECS("10.0.0.0/12")))
	seeds = append(seeds,
		good[:len(good)-1], good[:20], good[:12], good[:5],
		append(append([]byte(nil), good[:12]...), 0xC0, 0x0C, 0, 1, 0, 1), // a pointer to itself
		[]byte(strings.Repeat("\xff", 64)),
		append(append([]byte(nil), good...), strings.Repeat("\x00", udpReadSize)...), // longer than a read
	)
	// The question is read, the additional section is broken: miekg's
	// FORMERR echoes the question.
	broken := append([]byte(nil), good...)
	broken[len(broken)-3] = 0xFF // the ECS option claims more bytes than there are
	seeds = append(seeds, broken)
	return seeds
}

// fuzzClients are the sources a fuzzed query comes from: outside every
// client network, inside each of dc1's and dc2's, and IPv6.
var fuzzClients = []netip.AddrPort{
	netip.MustParseAddrPort("198.51.100.7:5353"),
	netip.MustParseAddrPort("10.1.2.3:5353"),
	netip.MustParseAddrPort("10.2.3.4:5353"),
	netip.MustParseAddrPort("[2001:db8::7]:5353"),
}

// FuzzServeDNS feeds arbitrary packets through the query paths. Over UDP
// it runs our loop's handlePacket with a worker's cache, reusing its
// scratch space from packet to packet as a worker does, three times (with
// other IDs, the last from the cache), and requires the very
// bytes miekg/dns's server sent for the packet when it served UDP for us.
// Over both transports every packet must get either no response or a
// well-formed one that echoes the query and fits the transport.
func FuzzServeDNS(f *testing.F) {
	for i, seed := range fuzzSeeds(f) {
		for from := range len(fuzzClients) {
			f.Add(seed, false, uint8(from)) // the cache serves the same bytes from every client
		}
		f.Add(seed, true, uint8(i))
	}
	s, _ := inProcess(f)
	ref := newMiekgUDP(f, s)
	cache := newAnswerCache()
	var scratch dns.Msg
	r := newResponse()
	f.Fuzz(func(t *testing.T, packet []byte, overTCP bool, source uint8) {
		from := fuzzClients[int(source)%len(fuzzClients)]
		var out []byte
		if overTCP {
			w := &recorder{remote: net.UDPAddrFromAddrPort(from)}
			if !serveTCPPacket(s, packet, w) {
				return
			}
			if w.writes != 1 {
				t.Fatalf("%d writes, want 1", w.writes)
			}
			out = w.out
		} else {
			var p []byte
			var served bool
			original := packet
			for i, mask := range []byte{0, 0x5a, 0xa5} {
				if mask != 0 && len(original) >= 2 {
					// The same query with another ID: the cache admits it
					// the second time and answers from it the third. (The
					// ID may still change the query, when a compression
					// pointer points into it.)
					packet = append([]byte(nil), original...)
					packet[1] ^= mask
				}
				// A second try: a server cookie carries the time in seconds,
				// which may tick between the two servers' answers.
				for attempt := 0; attempt < 2; attempt++ {
					want := ref.exchange(t, packet, from)
					p = packet[:min(len(packet), udpReadSize)] // what a socket read gives
					var b []byte
					b, served = s.handlePacket(p, from.Addr().Unmap(), time.Now(), cache, &scratch, r)
					out = append([]byte(nil), b...)
					r.reset()
					var parsed dns.Msg
					if parsed.Unpack(packet) != nil {
						// miekg answers FORMERR copying TC, RA and AD too; we
						// copy RD and CD only (see reject), so compare that.
						want = nil
						if len(packet) >= headerSize && acceptHeader(header(packet)) == dns.MsgAccept {
							want = r.reject(&parsed, header(packet).Arcount > 0)
							want = append([]byte(nil), want...)
							r.reset()
						}
					}
					if bytes.Equal(out, want) {
						break
					}
					if attempt > 0 {
						t.Fatalf("response %d differs from miekg/dns's server:\n got %x\nwant %x", i+1, out, want)
					}
				}
			}
			if out == nil {
				return
			}
			if !served {
				var resp dns.Msg
				if err := resp.Unpack(out); err != nil {
					t.Fatalf("error response does not unpack: %v\n%x", err, out)
				}
				h := header(p)
				if !resp.Response || resp.Id != h.Id || len(resp.Answer)+len(resp.Ns) != 0 || len(resp.Extra) > 1 ||
					resp.Truncated || resp.RecursionAvailable || resp.AuthenticatedData ||
					resp.RecursionDesired != (h.Bits&(1<<8) != 0) || resp.CheckingDisabled != (h.Bits&(1<<4) != 0) ||
					(resp.Rcode != dns.RcodeFormatError && resp.Rcode != dns.RcodeNotImplemented) {
					t.Fatalf("error response is not an empty FORMERR or NOTIMP for the query:\n%v", &resp)
				}
				return
			}
			packet = p
		}
		var req, resp dns.Msg
		if err := req.Unpack(packet); err != nil {
			t.Fatal(err)
		}
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("response does not unpack: %v\n%x", err, out)
		}
		if !resp.Response || resp.Id != req.Id || resp.Opcode != req.Opcode {
			t.Fatalf("response header does not match the query:\n%v", &resp)
		}
		if len(req.Question) != 1 {
			// The header promised one question, the packet ended first.
			if resp.Rcode != dns.RcodeFormatError {
				t.Fatalf("rcode %s for a query without a question, want FORMERR", dns.RcodeToString[resp.Rcode])
			}
			return
		}
		if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
			t.Fatalf("question %v, want %v echoed", resp.Question, req.Question)
		}
		if !overTCP {
			e, _ := parseEDNS(&req)
			if limit := udpLimit(e, 1232); len(out) > limit {
				t.Fatalf("UDP response of %d bytes, limit %d", len(out), limit)
			}
		}
		if resp.Rcode == dns.RcodeSuccess && resp.Authoritative && len(resp.Answer) == 0 && len(resp.Ns) == 0 && !resp.Truncated && req.Question[0].Qtype != dns.TypeANY {
			t.Fatalf("authoritative NOERROR with neither answer nor SOA:\n%v", &resp)
		}
	})
}
