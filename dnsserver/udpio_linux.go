//go:build linux

package dnsserver

import (
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a worker reads a batch of datagrams with one recvmmsg and writes
// the replies with one sendmmsg, through the socket's RawConn, so the
// runtime's poller still does the waiting. The sockets are non-blocking, so
// the calls never sleep in the kernel and are made as raw system calls: a
// batch's sendmmsg takes long enough that, announced to the scheduler, it
// would have the runtime hand the worker's P to another thread and take it
// back for every batch. Each datagram's address and control messages are
// kept as the kernel wrote them and reused for the reply, so a batch
// allocates nothing.

// mmsghdr is struct mmsghdr: a msghdr and the length the call transferred.
// (Go pads it to the alignment of Msghdr, as C does.)
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const (
	// oobSize holds the destination-address control messages of both
	// families (IP_PKTINFO and IPV6_PKTINFO) that a dual-stack wildcard
	// socket may receive with one datagram.
	oobSize = 128
	// replyOOBSize holds the one control message of a reply.
	replyOOBSize = 64
)

type mmsgIO struct {
	rc      syscall.RawConn
	pktinfo bool

	bufs  []byte // batch buffers of udpReadSize
	rhdr  []mmsghdr
	riov  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for a sockaddr_in too
	oob   []byte                  // batch control buffers of oobSize

	whdr []mmsghdr
	wiov []unix.Iovec
	woob []byte // batch control buffers of replyOOBSize

	// The system calls, made once so that a batch allocates no closure,
	// and their arguments and results.
	recvFn, sendFn func(fd uintptr) bool
	hdrs           []mmsghdr // what to send
	n              int
	errno          syscall.Errno
}

func newPacketIO(sock *udpSocket) (packetIO, int, error) {
	rc, err := sock.conn.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	const batch = udpBatch
	m := &mmsgIO{
		rc:      rc,
		pktinfo: sock.pktinfo,
		bufs:    make([]byte, batch*udpReadSize),
		rhdr:    make([]mmsghdr, batch),
		riov:    make([]unix.Iovec, batch),
		names:   make([]unix.RawSockaddrInet6, batch),
		whdr:    make([]mmsghdr, batch),
		wiov:    make([]unix.Iovec, batch),
	}
	if m.pktinfo {
		m.oob = make([]byte, batch*oobSize)
		m.woob = make([]byte, batch*replyOOBSize)
	}
	for i := range batch {
		m.riov[i].Base = &m.bufs[i*udpReadSize]
		m.riov[i].SetLen(udpReadSize)
		h := &m.rhdr[i].hdr
		h.Iov = &m.riov[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		if m.pktinfo {
			h.Control = &m.oob[i*oobSize]
		}
		w := &m.whdr[i].hdr
		w.Iov = &m.wiov[i]
		w.SetIovlen(1)
	}
	m.recvFn = func(fd uintptr) bool {
		for {
			n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rhdr[0])), uintptr(len(m.rhdr)), 0, 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing queued: wait in the poller
			}
			m.n, m.errno = int(n), errno
			return true
		}
	}
	m.sendFn = func(fd uintptr) bool {
		for {
			n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)), 0, 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // the send buffer is full: wait in the poller
			}
			m.n, m.errno = int(n), errno
			return true
		}
	}
	return m, batch, nil
}

func (m *mmsgIO) read() (int, error) {
	for i := range m.rhdr {
		// The kernel shortens these to what it wrote.
		h := &m.rhdr[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if m.pktinfo {
			h.SetControllen(oobSize)
		}
		h.Flags = 0
	}
	if err := m.rc.Read(m.recvFn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", m.errno)
	}
	return m.n, nil
}

func (m *mmsgIO) query(i int) ([]byte, netip.Addr) {
	p := m.bufs[i*udpReadSize:]
	return p[:m.rhdr[i].n], sockaddrAddr(&m.names[i], m.rhdr[i].hdr.Namelen)
}

// sockaddrAddr returns the address of a sockaddr_in or sockaddr_in6, IPv4
// in its plain form.
func sockaddrAddr(sa *unix.RawSockaddrInet6, n uint32) netip.Addr {
	switch {
	case sa.Family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	case sa.Family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(sa4.Addr)
	}
	return netip.Addr{}
}

func (m *mmsgIO) write(rs []reply) error {
	for j, r := range rs {
		in := &m.rhdr[r.i].hdr
		h := &m.whdr[j].hdr
		m.wiov[j].Base = unsafe.SliceData(r.b)
		m.wiov[j].SetLen(len(r.b))
		h.Name, h.Namelen = in.Name, in.Namelen // back to the sender
		h.Control = nil
		h.SetControllen(0)
		if m.pktinfo {
			oob := m.woob[j*replyOOBSize : (j+1)*replyOOBSize]
			if n := replyOOB(oob, m.oob[r.i*oobSize:][:in.Controllen]); n > 0 {
				h.Control = &oob[0]
				h.SetControllen(n)
			}
		}
	}
	for sent := 0; sent < len(rs); {
		m.hdrs = m.whdr[sent:len(rs)]
		if err := m.rc.Write(m.sendFn); err != nil {
			return err
		}
		if m.errno != 0 {
			sent++ // the first message failed; go on after it
			continue
		}
		sent += max(m.n, 1)
	}
	m.hdrs = nil
	return nil
}

// replyOOB writes into b the control message that makes a reply leave from
// the address its query was sent to, as oob (the query's control messages)
// names it, and returns its length, 0 if oob names none. As miekg/dns does,
// it prefers the IPv6 destination (on a dual-stack socket, the IPv4-mapped
// form for an IPv4 query) and answers an IPv4 destination with IP_PKTINFO,
// with no interface, since IPV6_PKTINFO cannot carry one.
func replyOOB(b, oob []byte) int {
	var dst4, dst6 netip.Addr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			dst6 = netip.AddrFrom16(pi.Addr)
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			dst4 = netip.AddrFrom4(pi.Addr)
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	dst := dst6
	if !dst.IsValid() {
		dst = dst4
	}
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	switch {
	case !dst.IsValid():
		return 0
	case dst.Unmap().Is4():
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Spec_dst = dst.Unmap().As4()
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	default:
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Addr = dst.As16()
		return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
}
