package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// edns is what a query's OPT record (RFC 6891) asks for.
type edns struct {
	present bool
	version uint8
	udpSize uint16
	do      bool
	// ecs is the query's Client Subnet option (RFC 7871), nil if none;
	// ecsAddr is its address, valid when the source prefix is not empty.
	ecs     *dns.EDNS0_SUBNET
	ecsAddr netip.Addr
	// nsid is set when the query asks for the name-server identifier.
	nsid bool
	// cookie is the query's COOKIE option in hex (as miekg holds it):
	// the 8-byte client cookie, then the server cookie if any.
	cookie string
}

// parseEDNS reads the OPT record of req. It returns FORMERR for a query with
// more than one OPT record (RFC 6891 section 6.1.1), an OPT record not owned
// by the root, or a Client Subnet option that is repeated or has address
// bits set beyond its source prefix (RFC 7871 section 7.1.1).
func parseEDNS(req *dns.Msg) (edns, int) {
	var e edns
	for _, rr := range req.Extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			continue
		}
		if e.present || opt.Hdr.Name != "." {
			// An error response to an EDNS query still carries OPT
			// (RFC 6891 section 6.1.1).
			return edns{present: true, version: opt.Version(), udpSize: opt.UDPSize()}, dns.RcodeFormatError
		}
		e.present = true
		e.version = opt.Version()
		e.udpSize = opt.UDPSize()
		e.do = opt.Do()
		bad := false
		for _, o := range opt.Option {
			switch o := o.(type) {
			case *dns.EDNS0_SUBNET:
				if e.ecs != nil {
					bad = true
					break
				}
				addr, ok := ecsAddress(o)
				if !ok {
					bad = true
					break
				}
				e.ecs, e.ecsAddr = o, addr
			case *dns.EDNS0_NSID:
				e.nsid = true
			case *dns.EDNS0_COOKIE:
				// 8 bytes of client cookie, optionally 8 to 32 of server
				// cookie (RFC 7873 section 5.2.2); anything else is
				// malformed. Hex doubles the lengths.
				if n := len(o.Cookie); e.cookie != "" || (n != 16 && (n < 32 || n > 80 || n%2 != 0)) {
					bad = true
					break
				}
				e.cookie = o.Cookie
			}
			// Other options (padding, ...) are ignored, as RFC 6891 allows.
		}
		if bad {
			return edns{present: true, version: e.version, udpSize: e.udpSize, do: e.do}, dns.RcodeFormatError
		}
	}
	return e, dns.RcodeSuccess
}

// ecsAddress returns the client address an ECS option carries (invalid for
// an empty source prefix) and whether the option is well formed.
func ecsAddress(ecs *dns.EDNS0_SUBNET) (netip.Addr, bool) {
	bits := int(ecs.SourceNetmask)
	var addr netip.Addr
	switch ecs.Family {
	case 0:
		return netip.Addr{}, bits == 0
	case 1:
		a, ok := netip.AddrFromSlice(ecs.Address.To4())
		if !ok || bits > 32 {
			return netip.Addr{}, false
		}
		addr = a
	case 2:
		a, ok := netip.AddrFromSlice(ecs.Address.To16())
		if !ok || bits > 128 {
			return netip.Addr{}, false
		}
		addr = a
	default:
		return netip.Addr{}, false
	}
	p, err := addr.Prefix(bits)
	if err != nil || p.Addr() != addr {
		return netip.Addr{}, false
	}
	if bits == 0 {
		// The resolver asks us not to tailor the answer to its clients.
		return netip.Addr{}, true
	}
	return addr, true
}

// ecsScope is the SCOPE PREFIX-LENGTH to return for a decision whose
// ScopeBits are scope: 0 when the answer is the same for every client, the
// query's source prefix length when the decision depended on the client
// without a narrower or wider network to name (-1), else the network's
// length, at most the family's address length.
func ecsScope(scope int, ecs *dns.EDNS0_SUBNET) uint8 {
	if ecs.SourceNetmask == 0 {
		return 0 // the answer was not tailored to a client network
	}
	if scope < 0 {
		return ecs.SourceNetmask
	}
	maxBits := 128
	if ecs.Family == 1 {
		maxBits = 32
	}
	return uint8(min(scope, maxBits))
}

// udpLimit is the largest UDP response the client accepts: its advertised
// EDNS size (never below 512, RFC 6891 section 6.2.5) capped by ours, or
// 512 without EDNS (RFC 1035).
func udpLimit(e edns, ours uint16) int {
	if !e.present {
		return dns.MinMsgSize
	}
	return max(dns.MinMsgSize, int(min(e.udpSize, ours)))
}
