//go:build !linux

package dnsserver

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Elsewhere than Linux a worker reads and writes one datagram per call,
// with the standard library, and golang.org/x/net reads and writes the
// destination-address control messages where the system has them.

// oobSize holds the destination-address control messages of a datagram.
const oobSize = 128

type msgIO struct {
	c       *net.UDPConn
	pktinfo bool
	buf     []byte
	oob     []byte
	n, oobn int
	from    netip.AddrPort
}

func newPacketIO(sock *udpSocket) (packetIO, int, error) {
	m := &msgIO{c: sock.conn, pktinfo: sock.pktinfo, buf: make([]byte, udpReadSize)}
	if m.pktinfo {
		m.oob = make([]byte, oobSize)
	}
	return m, 1, nil
}

func (m *msgIO) read() (int, error) {
	n, oobn, _, from, err := m.c.ReadMsgUDPAddrPort(m.buf, m.oob)
	if err != nil {
		return 0, err
	}
	m.n, m.oobn, m.from = n, oobn, from
	return 1, nil
}

func (m *msgIO) query(int) ([]byte, netip.Addr) { return m.buf[:m.n], m.from.Addr().Unmap() }

func (m *msgIO) write(rs []reply) error {
	for _, r := range rs {
		var oob []byte
		if m.pktinfo {
			oob = replyOOB(m.oob[:m.oobn])
		}
		if _, _, err := m.c.WriteMsgUDPAddrPort(r.b, oob, m.from); err != nil {
			return err
		}
	}
	return nil
}

// replyOOB returns the control message that makes a reply leave from the
// address the query was sent to, nil if oob does not name it. As miekg/dns
// does, it reads the IPv6 destination first (on a dual-stack socket it is
// the IPv4-mapped form for an IPv4 query) and answers an IPv4 destination
// with the IPv4 control message, since the IPv6 one cannot carry it.
func replyOOB(oob []byte) []byte {
	var dst net.IP
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		dst = cm6.Dst
	} else {
		var cm4 ipv4.ControlMessage
		if cm4.Parse(oob) == nil && cm4.Dst != nil {
			dst = cm4.Dst
		}
	}
	switch {
	case dst == nil:
		return nil
	case dst.To4() != nil:
		return (&ipv4.ControlMessage{Src: dst}).Marshal()
	default:
		return (&ipv6.ControlMessage{Src: dst}).Marshal()
	}
}
