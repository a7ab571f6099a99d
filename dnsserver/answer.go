package dnsserver

import (
	"errors"
	"net"
	"net/netip"
	"slices"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// maxChain bounds how many in-zone CNAMEs one answer follows, so a loop of
// CNAMEs ends.
const maxChain = 8

// response is the scratch space of one query: the reply and the backing
// storage of the records synthesized for it. Responses are pooled, so that
// building an answer allocates nothing once the pool is warm. A response
// serves one query at a time; reset drops every reference it holds, so a
// pooled response keeps no snapshot alive.
type response struct {
	msg      dns.Msg
	question [1]dns.Question
	// answer, ns and extra back the sections of msg.
	answer, ns, extra []dns.RR
	// a and aaaa hold GSLB address records: their owner is the query name
	// (in the query's case, or the name a wildcard matched), so they are
	// written per query into these arrays instead of being shared.
	a    []dns.A
	aaaa []dns.AAAA
	// name is the lower-cased name being looked up.
	name []byte
	opt  dns.OPT
	opts [4]dns.EDNS0
	ecs  dns.EDNS0_SUBNET
	nsid dns.EDNS0_NSID
	ede  dns.EDNS0_EDE
	tsig dns.TSIG
	// cookie is the COOKIE option of the response; cookieOut its value,
	// set by the cookie check before the answer is built (cookies.go).
	cookie    dns.EDNS0_COOKIE
	cookieOut string
	hasEDE    bool
	signed    bool
	soa       dns.SOA
	hinfo     dns.HINFO
	buf       []byte

	// What the answer turned out to be, for the size limit and metrics.
	edns     edns
	qtype    int // label index
	referral bool
	scope    int  // ScopeBits of the GSLB decision
	scoped   bool // whether a GSLB decision was made
	gslb     []*dcData
	refused  *serviceData
}

func newResponse() *response {
	return &response{
		answer: make([]dns.RR, 0, 16),
		ns:     make([]dns.RR, 0, 4),
		extra:  make([]dns.RR, 0, 8),
		a:      make([]dns.A, 0, 8),
		aaaa:   make([]dns.AAAA, 0, 8),
		name:   make([]byte, 0, 256),
		gslb:   make([]*dcData, 0, 4),
		buf:    make([]byte, 4096),
		qtype:  qtypeNone,
	}
}

// maxKeep bounds the section arrays a pooled response keeps after a query
// that needed more than the usual, so one huge answer does not pin memory.
const maxKeep = 256

// reset empties r for the next query. It clears only the entries the query
// used: the sections' lengths cover them, because truncation clears what it
// cuts (see cut).
func (r *response) reset() {
	m := &r.msg
	r.answer = adopt(r.answer, m.Answer)
	r.ns = adopt(r.ns, m.Ns)
	r.extra = adopt(r.extra, m.Extra)
	clear(r.a)
	clear(r.aaaa)
	clear(r.gslb)
	*m = dns.Msg{}
	r.question[0] = dns.Question{}
	r.opt, r.ecs, r.soa, r.hinfo = dns.OPT{}, dns.EDNS0_SUBNET{}, dns.SOA{}, dns.HINFO{}
	r.nsid, r.ede, r.tsig, r.cookie = dns.EDNS0_NSID{}, dns.EDNS0_EDE{}, dns.TSIG{}, dns.EDNS0_COOKIE{}
	r.cookieOut, r.hasEDE, r.signed = "", false, false
	clear(r.opts[:])
	r.edns, r.qtype, r.referral, r.scope, r.scoped, r.refused = edns{}, qtypeNone, false, 0, false, nil
}

// adopt clears the used part of a section and returns the array to reuse:
// the section's own if it grew (within maxKeep), else the pooled one.
func adopt(pooled, used []dns.RR) []dns.RR {
	clear(used)
	if cap(used) > cap(pooled) && cap(used) <= maxKeep {
		return used[:0]
	}
	return pooled
}

// cut empties a section, clearing the references it drops.
func cut(section []dns.RR) []dns.RR {
	clear(section)
	return section[:0]
}

// begin starts the reply to req: header bits that must echo the query, and
// the question as asked, in its case (RFC 1035 section 7.3; DNS 0x20).
func (r *response) begin(req *dns.Msg) *dns.Msg {
	m := &r.msg
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.Compress = true
	m.Answer, m.Ns, m.Extra = r.answer[:0], r.ns[:0], r.extra[:0]
	r.a, r.aaaa, r.gslb = r.a[:0], r.aaaa[:0], r.gslb[:0]
	if len(req.Question) == 1 {
		r.question[0] = req.Question[0]
		m.Question = r.question[:]
		r.qtype = qtypeLabel(req.Question[0].Qtype)
	}
	return m
}

// answer builds the response to req from v into r. client is the address
// the answer is tailored for unless the query carries a Client Subnet. v is
// nil when there is no routing snapshot yet. Every response, errors
// included, is built here and in finish, so that header bits, the question
// and the OPT record follow the same rules everywhere.
//
// It allocates nothing except copies of static records that must be renamed
// (to the query's case, or to a name a wildcard matched).
func answer(v *view, req *dns.Msg, client netip.Addr, r *response) {
	m := r.begin(req)
	defer r.finishSigned(v, req)
	e, rcode := parseEDNS(req)
	r.edns = e
	switch {
	case e.present && e.version != 0:
		// BADVERS wins over every other check of the query (RFC 6891
		// section 6.1.3); the OPT record finish adds carries it.
		m.Rcode = dns.RcodeBadVers
		return
	case len(req.Question) != 1:
		m.Rcode = dns.RcodeFormatError
		m.Question = nil
		return
	case req.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
		return
	case rcode != dns.RcodeSuccess:
		m.Rcode = rcode
		return
	case len(req.Answer) > 1 || len(req.Ns) > 1 || len(req.Extra) > 2:
		m.Rcode = dns.RcodeFormatError // no query has that much beyond its question
		return
	}
	if t := req.IsTsig(); t != nil && (t.Algorithm == "" || t.Hdr.Class != dns.ClassANY) {
		m.Rcode = dns.RcodeFormatError // a TSIG record without data, or not of class ANY (RFC 8945 section 4.2)
		return
	} else if t != nil {
		// We hold no TSIG keys, so every key is unknown: NOTAUTH with an
		// unsigned TSIG record saying BADKEY (RFC 8945 section 5.2.2).
		m.Rcode = dns.RcodeNotAuth
		r.tsig = dns.TSIG{
			Hdr:        dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
			Algorithm:  t.Algorithm,
			TimeSigned: t.TimeSigned,
			Fudge:      t.Fudge,
			OrigId:     req.Id,
			Error:      dns.RcodeBadKey,
		}
		r.signed = true
		return
	}
	if v == nil {
		m.Rcode = dns.RcodeServerFailure
		return
	}
	q := r.question[0]
	switch {
	case q.Qtype == dns.TypeOPT:
		m.Rcode = dns.RcodeFormatError // a pseudo-type, never a question
		return
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused // we are authoritative for one IN zone only
		r.explain(dns.ExtendedErrorCodeNotAuthoritative, "only class IN is served")
		return
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// The zone is generated per query from live health; there is no
		// transferable copy of it.
		m.Rcode = dns.RcodeRefused
		r.explain(dns.ExtendedErrorCodeProhibited, "no zone transfers: answers follow live health")
		return
	}
	z := v.zone
	r.name = appendLower(r.name[:0], q.Name)
	if z.origin == "" || !inZone(r.name, z.origin) {
		m.Rcode = dns.RcodeRefused
		r.explain(dns.ExtendedErrorCodeNotAuthoritative, "outside the zone")
		return
	}
	if e.ecs != nil && e.ecsAddr.IsValid() {
		client = e.ecsAddr
	}
	v.resolve(r, q, client)
}

// explain attaches an Extended DNS Error (RFC 8914) to the response; it
// goes out only to EDNS queries. The text is static: no allocation.
func (r *response) explain(code uint16, text string) {
	r.ede = dns.EDNS0_EDE{InfoCode: code, ExtraText: text}
	r.hasEDE = true
}

// finish adds the OPT record to a reply to an EDNS query: our UDP size, the
// DO bit echoed (RFC 3225), the Client Subnet echoed with the scope the
// answer holds for (RFC 7871 section 7.2.1), the NSID when asked (RFC
// 5001), a server cookie (RFC 7873), an Extended DNS Error (RFC 8914); and
// the TSIG record of a TSIG error, last.
func (r *response) finish(v *view) {
	if r.edns.present {
		size := uint16(config.DefaultUDPSize)
		if v != nil {
			size = v.zone.settings.udpSize
		}
		r.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: size}
		r.opt.Option = r.opts[:0]
		if r.edns.do {
			r.opt.SetDo()
		}
		if ecs := r.edns.ecs; ecs != nil {
			r.ecs = *ecs
			r.ecs.SourceScope = 0
			if r.scoped {
				r.ecs.SourceScope = ecsScope(r.scope, ecs)
			}
			r.opt.Option = append(r.opt.Option, &r.ecs)
		}
		if r.edns.nsid && v != nil && v.zone.nsid != "" {
			r.nsid = dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: v.zone.nsid}
			r.opt.Option = append(r.opt.Option, &r.nsid)
		}
		if r.cookieOut != "" {
			r.cookie = dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: r.cookieOut}
			r.opt.Option = append(r.opt.Option, &r.cookie)
		}
		if r.hasEDE {
			r.opt.Option = append(r.opt.Option, &r.ede)
		}
		r.msg.Extra = append(r.msg.Extra, &r.opt)
	}
	if r.signed {
		r.msg.Extra = append(r.msg.Extra, &r.tsig)
	}
}

// finishSigned finishes the response and then signs it (sign, dnssec.go).
func (r *response) finishSigned(v *view, req *dns.Msg) {
	r.finish(v)
	r.sign(v, req)
}

// resolve answers q, a name inside the zone, following in-zone CNAMEs.
func (v *view) resolve(r *response, q dns.Question, client netip.Addr) {
	z := v.zone
	m := &r.msg
	m.Authoritative = true
	owner := q.Name
	n, kind := z.find(r.name)
	var seen [maxChain]*node // the chain so far, to stop at a loop
	for hops := 0; ; hops++ {
		switch kind {
		case foundReferral:
			if hops == 0 && q.Qtype == dns.TypeDS && string(r.name) == n.name {
				// DS lives on the parent side of a cut, which is us (RFC 4035
				// section 3.1.4.1): the static DS set, or NODATA.
				if ds := n.rrs(dns.TypeDS); len(ds) > 0 {
					r.addSet(owner, ds)
				} else {
					m.Ns = append(m.Ns, z.negSOA)
				}
				return
			}
			// A referral, also after a CNAME that leads into the delegated
			// subzone (RFC 1034 section 4.3.2 step 3b): the CNAME stays
			// authoritative, the NS set and glue follow it.
			m.Authoritative = hops > 0
			r.referral = true
			m.Ns = append(m.Ns, n.ns...)
			m.Extra = append(m.Extra, n.glue...)
			return
		case foundDNAME:
			// RFC 6672 section 3.2: the DNAME, and a CNAME synthesized from
			// it to the name with the DNAME's owner replaced by its target.
			dn := n.dname
			target, ok := canonicalName(owner[:len(owner)-len(n.name)] + dn.Target)
			if !ok {
				m.Rcode = dns.RcodeYXDomain // the new name is too long
				m.Answer = append(m.Answer, dn)
				return
			}
			m.Answer = append(m.Answer, dn, &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME, dn.Hdr.Ttl), Target: target})
			if q.Qtype == dns.TypeCNAME || hops+1 >= maxChain {
				return
			}
			r.name = append(r.name[:0], target...)
			if !inZone(r.name, z.origin) {
				return // out of zone: the resolver follows it
			}
			owner = target
			n, kind = z.find(r.name)
			continue
		case foundNothing:
			// The rcode describes the last name of a CNAME chain (RFC 6604).
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, z.negSOA)
			return
		}
		if q.Qtype == dns.TypeANY {
			if len(n.sets) == 0 && n.service < 0 {
				m.Ns = append(m.Ns, z.negSOA) // an empty non-terminal has nothing at all
				return
			}
			// RFC 8482: one small synthesized record instead of everything,
			// so ANY is no amplifier.
			r.hinfo = dns.HINFO{Hdr: hdr(owner, dns.TypeHINFO, anyTTL), Cpu: "RFC8482"}
			m.Answer = append(m.Answer, &r.hinfo)
			return
		}
		if n.cname != nil && q.Qtype != dns.TypeCNAME {
			r.addSet(owner, n.rrs(dns.TypeCNAME))
			seen[hops] = n
			target := n.cname.Target
			r.name = append(r.name[:0], target...)
			if hops+1 >= maxChain || !inZone(r.name, z.origin) {
				return // out of zone: the resolver follows it
			}
			owner = target
			n, kind = z.find(r.name)
			if n != nil && slices.Contains(seen[:hops+1], n) {
				return // a loop: every CNAME of it is in the answer once
			}
			continue
		}
		if n.service >= 0 && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) {
			v.gslb(r, owner, n.service, q.Qtype, client)
			return
		}
		rrs := n.rrs(q.Qtype)
		if len(rrs) == 0 {
			m.Ns = append(m.Ns, z.negSOA) // NODATA (RFC 2308 section 2.2)
			return
		}
		r.addSet(owner, rrs)
		if q.Qtype == dns.TypeNS {
			m.Extra = append(m.Extra, n.glue...)
		}
		return
	}
}

// addSet appends rrs to the answer section under owner. Records whose owner
// differs are copied, never renamed in place: the zone's records are shared
// by every query.
func (r *response) addSet(owner string, rrs []dns.RR) {
	for _, rr := range rrs {
		if rr.Header().Name != owner {
			rr = dns.Copy(rr)
			rr.Header().Name = owner
		}
		r.msg.Answer = append(r.msg.Answer, rr)
	}
}

// gslb answers an A or AAAA query for a service hostname with the DNS answer
// of the routing decision for client (routing.Service.Route decides which
// datacenters it carries).
func (v *view) gslb(r *response, owner string, si int, qtype uint16, client netip.Addr) {
	z := v.zone
	m := &r.msg
	sd, svc := z.services[si], v.services[si]
	if svc == nil {
		m.Ns = append(m.Ns, z.negSOA)
		return
	}
	d := svc.Route(routing.Request{Client: client}, nil)
	r.scope, r.scoped = d.ScopeBits, true
	if d.ScopeBits != 0 && len(sd.networks) > 0 {
		r.scope = sd.scope(client, d.ScopeBits, v.targetDC(d.DNS))
	}
	if d.AllDown {
		if len(d.Targets) == 0 {
			r.explain(dns.ExtendedErrorCodeOther, "every datacenter is down (when_all_down: refuse)")
		} else {
			r.explain(dns.ExtendedErrorCodeOther, "every datacenter is down; answering all of them (when_all_down: serve_all)")
		}
	}
	if len(d.Targets) == 0 {
		// Nothing may serve (when_all_down: refuse). NODATA rather than
		// SERVFAIL: SERVFAIL sends resolvers to our other nameservers,
		// which know no better, and reads as our failure; NXDOMAIN would
		// deny that the name exists. NODATA says "no address now", and it
		// is cached no longer than a positive answer would be (the
		// service's dns_ttl), so recovery shows as fast as any change.
		r.soa = *z.negSOA
		r.soa.Hdr.Ttl = min(r.soa.Hdr.Ttl, svc.TTL)
		m.Ns = append(m.Ns, &r.soa)
		r.refused = sd
		return
	}
	before := len(m.Answer)
	for _, t := range d.DNS {
		dd := v.targets[t]
		if dd == nil {
			continue
		}
		n := len(m.Answer)
		if qtype == dns.TypeA {
			r.addA(owner, svc.TTL, dd.v4)
		} else {
			r.addAAAA(owner, svc.TTL, dd.v6)
		}
		if len(m.Answer) > n {
			r.gslb = append(r.gslb, dd)
		}
	}
	if len(m.Answer) == before {
		// No address of this family: NODATA, cached no longer than the
		// other family's answer, so that it follows a failover as fast.
		r.soa = *z.negSOA
		r.soa.Hdr.Ttl = min(r.soa.Hdr.Ttl, svc.TTL)
		m.Ns = append(m.Ns, &r.soa)
	}
}

func (r *response) addA(owner string, ttl uint32, ips []net.IP) {
	for _, ip := range ips {
		r.a = append(r.a, dns.A{Hdr: hdr(owner, dns.TypeA, ttl), A: ip})
		r.msg.Answer = append(r.msg.Answer, &r.a[len(r.a)-1])
	}
}

func (r *response) addAAAA(owner string, ttl uint32, ips []net.IP) {
	for _, ip := range ips {
		r.aaaa = append(r.aaaa, dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA, ttl), AAAA: ip})
		r.msg.Answer = append(r.msg.Answer, &r.aaaa[len(r.aaaa)-1])
	}
}

// findKind says what a lookup found.
type findKind int

const (
	foundName     findKind = iota // the name exists (its node)
	foundWildcard                 // a wildcard matches the name (the wildcard's node)
	foundReferral                 // the name is at or below a delegation (the cut's node)
	foundDNAME                    // the name is below a DNAME (the DNAME owner's node)
	foundNothing                  // the name does not exist
)

// find looks name up (lower case, inside the zone) per RFC 1034 section
// 4.3.2 and RFC 4592: the name itself, else the closest existing ancestor,
// whose wildcard child, if any, matches.
func (z *zone) find(name []byte) (*node, findKind) {
	if n := z.nodes[string(name)]; n != nil {
		if n.cut != nil {
			return n.cut, foundReferral
		}
		return n, foundName
	}
	// No name is deeper than maxDepth labels, so neither is any ancestor
	// worth looking up.
	p := name
	for skip := countLabels(name) - z.maxDepth; skip > 0; skip-- {
		p = parent(p)
	}
	if len(p) == len(name) {
		p = parent(p)
	}
	for ; p != nil && len(p) >= len(z.origin); p = parent(p) {
		n := z.nodes[string(p)]
		if n == nil {
			continue
		}
		if n.cut != nil {
			return n.cut, foundReferral
		}
		if n.dname != nil {
			return n, foundDNAME
		}
		if n.wild != nil {
			return n.wild, foundWildcard
		}
		return n, foundNothing
	}
	return nil, foundNothing
}

// errTooLarge reports a response that does not fit even a TCP message.
var errTooLarge = errors.New("dnsserver: response larger than 65535 bytes")

// pack packs the reply for transport t. A UDP reply larger than the client
// accepts first sheds its additional section (optional, except the glue of
// a referral, RFC 9471); if it still does not fit it goes out empty with TC
// set, so the client retries over TCP (RFC 2181 section 9).
func (r *response) pack(t transport, ourSize uint16) ([]byte, error) {
	limit := dns.MaxMsgSize
	if t == udp {
		limit = udpLimit(r.edns, ourSize)
	}
	b, err := r.packBuffer()
	if err != nil || len(b) <= limit {
		return b, err
	}
	if t == tcp {
		return nil, errTooLarge
	}
	m := &r.msg
	if !r.referral && len(m.Extra) > r.optCount() {
		m.Extra = r.keepOPT(m.Extra)
		if b, err = r.packBuffer(); err != nil || len(b) <= limit {
			return b, err
		}
	}
	m.Truncated = true
	m.Answer, m.Ns, m.Extra = cut(m.Answer), cut(m.Ns), r.keepOPT(m.Extra)
	return r.packBuffer()
}

func (r *response) packBuffer() ([]byte, error) {
	b, err := r.msg.PackBuffer(r.buf)
	if err == nil && cap(b) > cap(r.buf) && cap(b) <= dns.MaxMsgSize+1 {
		r.buf = b[:cap(b)] // keep a grown buffer for the next query
	}
	return b, err
}

func (r *response) optCount() int {
	if r.edns.present {
		return 1
	}
	return 0
}

// keepOPT returns extra with only our OPT record left.
func (r *response) keepOPT(extra []dns.RR) []dns.RR {
	extra = cut(extra)
	if r.edns.present {
		extra = append(extra, &r.opt)
	}
	return extra
}
