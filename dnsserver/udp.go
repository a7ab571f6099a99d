package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/coopr-gslb/coopr-gslb/config"
	"golang.org/x/net/ipv6"
)

// UDP is served by our own loop rather than miekg/dns's server, which
// starts a goroutine per packet and makes two system calls for each. Every
// socket has udpWorkers goroutines; on Linux each reads up to udpBatch
// queries with one system call (recvmmsg), answers them and sends the
// responses with one more (sendmmsg). While one worker answers, another
// waits on the socket, so the socket is read without pause. miekg/dns
// still does all the wire-format work (Msg.Unpack, Msg.PackBuffer); TCP
// stays with its server.
const (
	udpWorkers = 2
	udpBatch   = 16
)

// packetIO is one worker's reading and writing of its socket, with the
// scratch space that takes. It is not safe for concurrent use; the workers
// of a socket have one each.
type packetIO interface {
	// read waits for datagrams and reads as many as are there, up to its
	// batch size, returning how many.
	read() (int, error)
	// query returns datagram i of the last read and its sender's address.
	query(i int) (p []byte, from netip.Addr)
	// write sends the replies: each to the sender of the datagram it
	// answers, from the address that datagram was sent to on a pktinfo
	// socket. A reply the system refuses is skipped: the client's loss,
	// as with a single write.
	write(rs []reply) error
}

// reply is the response to datagram i of the last read.
type reply struct {
	i int
	b []byte
}

// udpSocket is one of the server's UDP sockets.
type udpSocket struct {
	conn *net.UDPConn
	// pktinfo is set on a wildcard address: each query's destination
	// address is read from its control messages and becomes the source of
	// the reply, so that a multi-homed host answers from the address that
	// was asked (as miekg/dns does).
	pktinfo bool
}

func newUDPSocket(pc net.PacketConn) (*udpSocket, error) {
	c, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, errors.New("dnsserver: UDP socket is not a *net.UDPConn")
	}
	u := &udpSocket{conn: c}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.IsUnspecified() {
		// As miekg/dns: ask for both families' destination addresses and
		// take the one the socket supports (a dual-stack socket takes
		// both). Where neither is supported (Windows), replies leave from
		// the address the system picks, as they do from miekg/dns there.
		err6 := ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.pktinfo = err4 == nil || err6 == nil
	}
	return u, nil
}

// udpSlot is the scratch space of one datagram of a batch.
type udpSlot struct {
	req dns.Msg
	r   *response
	// used marks r as holding a query's state, to be reset.
	used bool
	// served marks a response of our answer path, whose latency is
	// observed once it is written.
	served bool
}

// udpWorker is one of the goroutines serving a socket. It is not safe for
// concurrent use; nothing in it is shared.
type udpWorker struct {
	s       *Server
	io      packetIO
	cache   *answerCache
	slots   []udpSlot
	replies []reply
}

func newUDPWorker(s *Server, sock *udpSocket) (*udpWorker, error) {
	io, batch, err := newPacketIO(sock)
	if err != nil {
		return nil, err
	}
	w := &udpWorker{s: s, io: io, cache: newAnswerCache(), slots: make([]udpSlot, batch), replies: make([]reply, 0, batch)}
	for i := range w.slots {
		w.slots[i].r = newResponse()
	}
	return w, nil
}

// serve answers queries until the server shuts down.
func (w *udpWorker) serve() {
	s := w.s
	failing := false // logged an error of the reads failing now
	for {
		n, err := w.io.read()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if !failing && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Warn("dns: reading UDP queries", "error", err)
				failing = true
			}
			// A persistent error must not spin the loop.
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		failing = false
		start := time.Now()
		w.replies = w.replies[:0]
		for i := range n {
			p, from := w.io.query(i)
			if b := w.handle(p, from, &w.slots[i], start); b != nil {
				w.replies = append(w.replies, reply{i, b})
			}
		}
		if len(w.replies) > 0 {
			if err := w.io.write(w.replies); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("dns: writing UDP responses", "error", err)
			}
		}
		took := time.Since(start).Seconds()
		for i := range n {
			sl := &w.slots[i]
			if sl.served {
				s.metrics.durations[udp].Observe(took)
				sl.served = false
			}
			if sl.used {
				sl.r.reset()
				sl.used = false
			}
		}
	}
}

// handle answers the datagram p from client and returns the response, nil
// for none. A panic is logged and the datagram dropped, as on TCP.
func (w *udpWorker) handle(p []byte, client netip.Addr, sl *udpSlot, now time.Time) (b []byte) {
	s := w.s
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("dns: panic answering a query", "panic", p, "stack", string(debug.Stack()))
			s.metrics.query(udp, qtypeNone, rcodeDropped)
			// The state of the slot and of the cache is suspect.
			sl.r, sl.used, sl.served, b = newResponse(), false, false, nil
			w.cache = newAnswerCache()
		}
	}()
	sl.used = true
	b, sl.served = s.handlePacket(p, client, now, w.cache, &sl.req, sl.r)
	return b
}

// handlePacket is the UDP query path from a datagram to the response to
// send, nil for none. It does what miekg/dns's server did before handing a
// query to us: a datagram shorter than a header is dropped, a header
// acceptHeader rejects is answered FORMERR or NOTIMP (or dropped), a packet
// that does not unpack is answered FORMERR. served reports that the answer
// path produced the response (so its latency is to be observed); it is
// false for those error responses and when nothing is sent.
//
// c, if not nil, is the caller's cache (see answerCache); req and r are its
// scratch space: the response is built in r and the returned slice is
// backed by r's buffer, valid until r is reset.
func (s *Server) handlePacket(p []byte, client netip.Addr, now time.Time, c *answerCache, req *dns.Msg, r *response) (b []byte, served bool) {
	if len(p) < headerSize {
		s.metrics.query(udp, qtypeNone, rcodeDropped)
		return nil, false
	}
	h := header(p)
	switch action := s.acceptCounted(udp, h); action {
	case dns.MsgAccept:
	case dns.MsgReject, dns.MsgRejectNotImplemented:
		*req = dns.Msg{}
		req.Unpack(p[:headerSize]) // the header alone, which cannot fail
		return r.reject(req, false), false
	default:
		return nil, false
	}
	v := s.current()
	if !plainQuery(p, h) || v == nil {
		c = nil
	}
	var q *cachedQuery
	if c != nil {
		q = c.query(v, p[2:])
	}
	if q != nil {
		req = &q.req
		req.Id = h.Id
	} else {
		*req = dns.Msg{}
		if err := req.Unpack(p); err != nil {
			s.metrics.query(udp, qtypeNone, rcodeLabel(dns.RcodeFormatError))
			return r.reject(req, h.Arcount > 0), false
		}
		if c != nil {
			q = c.add(p[2:], req)
		}
	}
	b = s.respond(v, req, q, client, udp, now, r)
	return b, b != nil
}

// plainQuery reports whether p is a query whose meaning cannot depend on
// its ID: one question, its name without compression pointers, and at most
// an OPT record, owned by the root. A compression pointer may point into
// the ID, so a query that has one cannot be remembered by the bytes after
// the ID (see answerCache).
func plainQuery(p []byte, h dns.Header) bool {
	if h.Qdcount != 1 || h.Ancount != 0 || h.Nscount != 0 || h.Arcount > 1 {
		return false
	}
	off := headerSize
	for {
		if off >= len(p) {
			return false
		}
		l := int(p[off])
		if l == 0 {
			break
		}
		if l&0xC0 != 0 {
			return false // a pointer, or a label type no one uses
		}
		off += 1 + l
	}
	off += 1 + 4 // the root label, type and class
	if h.Arcount == 0 {
		return off <= len(p)
	}
	return off+3 <= len(p) && p[off] == 0 && binary.BigEndian.Uint16(p[off+1:]) == dns.TypeOPT
}

// headerSize is the length of the DNS message header.
const headerSize = 12

// header decodes the header of p, which is at least headerSize long.
func header(p []byte) dns.Header {
	return dns.Header{
		Id:      binary.BigEndian.Uint16(p[0:]),
		Bits:    binary.BigEndian.Uint16(p[2:]),
		Qdcount: binary.BigEndian.Uint16(p[4:]),
		Ancount: binary.BigEndian.Uint16(p[6:]),
		Nscount: binary.BigEndian.Uint16(p[8:]),
		Arcount: binary.BigEndian.Uint16(p[10:]),
	}
}

// reject packs the FORMERR response to a packet that does not unpack:
// its ID, opcode, RD and CD (RFC 1035 section 4.1.1, RFC 4035 section
// 3.2.3) and its question if that was read; with an OPT record of ours
// when the query has an additional record (which the error is usually in:
// an option miekg cannot read), so the client does not conclude we lack
// EDNS (RFC 6891 section 6.1.1). It returns nil if that does not pack.
func (r *response) reject(req *dns.Msg, edns bool) []byte {
	m := dns.Msg{}
	m.Id, m.Response, m.Opcode = req.Id, true, req.Opcode
	m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	m.Rcode = dns.RcodeFormatError
	if len(req.Question) == 1 {
		m.Question = req.Question
	}
	if edns {
		m.SetEdns0(config.DefaultUDPSize, false)
	}
	b, err := m.PackBuffer(r.buf)
	if err != nil {
		return nil
	}
	return b
}
