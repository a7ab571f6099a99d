package dnsserver

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"

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

// servePacket is the query path from raw bytes, as miekg/dns's server runs
// it (header check with our accept function, unpack, handler), so that the
// fuzzer reaches serve without sockets. It reports whether the packet got
// to our handler.
func servePacket(s *Server, packet []byte, t transport, w *recorder) bool {
	if len(packet) < 12 {
		return false // miekg drops it
	}
	dh := dns.Header{
		Id:      binary.BigEndian.Uint16(packet[0:]),
		Bits:    binary.BigEndian.Uint16(packet[2:]),
		Qdcount: binary.BigEndian.Uint16(packet[4:]),
		Ancount: binary.BigEndian.Uint16(packet[6:]),
		Nscount: binary.BigEndian.Uint16(packet[8:]),
		Arcount: binary.BigEndian.Uint16(packet[10:]),
	}
	if acceptHeader(dh) != dns.MsgAccept {
		return false // miekg answers FORMERR or NOTIMP from the header, or drops it
	}
	req := new(dns.Msg)
	if err := req.Unpack(packet); err != nil {
		return false // miekg answers FORMERR
	}
	s.serve(w, req, t)
	return true
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

	good := packet(tb, query("api.gslb.example.com.", dns.TypeA, withECS("10.0.0.0/12")))
	seeds = append(seeds,
		good[:len(good)-1], good[:20], good[:12], good[:5],
		append(append([]byte(nil), good[:12]...), 0xC0, 0x0C, 0, 1, 0, 1), // a pointer to itself
		[]byte(strings.Repeat("\xff", 64)),
	)
	return seeds
}

// FuzzServeDNS feeds arbitrary packets through the query path and checks
// that every one either gets no response or a well-formed one that echoes
// the query and fits the transport.
func FuzzServeDNS(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	s, _ := inProcess(f)
	f.Fuzz(func(t *testing.T, packet []byte, overTCP bool) {
		tr := udp
		if overTCP {
			tr = tcp
		}
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 5353}}
		if !servePacket(s, packet, tr, w) {
			return
		}
		if w.writes != 1 {
			t.Fatalf("%d writes, want 1", w.writes)
		}
		var req, resp dns.Msg
		if err := req.Unpack(packet); err != nil {
			t.Fatal(err)
		}
		if err := resp.Unpack(w.out); err != nil {
			t.Fatalf("response does not unpack: %v\n%x", err, w.out)
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
		if tr == udp {
			e, _ := parseEDNS(&req)
			if limit := udpLimit(e, 1232); len(w.out) > limit {
				t.Fatalf("UDP response of %d bytes, limit %d", len(w.out), limit)
			}
		}
		if resp.Rcode == dns.RcodeSuccess && resp.Authoritative && len(resp.Answer) == 0 && len(resp.Ns) == 0 && !resp.Truncated && req.Question[0].Qtype != dns.TypeANY {
			t.Fatalf("authoritative NOERROR with neither answer nor SOA:\n%v", &resp)
		}
	})
}
