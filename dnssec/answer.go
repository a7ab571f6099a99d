package dnssec

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// TypeNXNAME is the pseudo-type of RFC 9824 §3.2: set in the NSEC type
// bitmap of a compact denial, it says the name does not exist at all.
const TypeNXNAME uint16 = 128

// WantsDNSSEC reports whether req asks for DNSSEC records (EDNS DO bit).
func WantsDNSSEC(req *dns.Msg) bool {
	opt := req.IsEdns0()
	return opt != nil && opt.Do()
}

// WantsCompact reports whether req signals that it understands compact
// denial answers with the NXDOMAIN rcode (the EDNS CO flag, RFC 9824 §4).
func WantsCompact(req *dns.Msg) bool {
	opt := req.IsEdns0()
	return opt != nil && opt.Co()
}

// SignResponse turns the complete answer resp to req into a signed one. It
// does nothing when req has no DO bit, so the server may call it for every
// answer; without DO the answer stays exactly as built.
//
// With DO:
//   - a negative answer (NXDOMAIN, or NODATA: NOERROR with the SOA in the
//     authority section and no record of the query type at the name the
//     answer ends at, the query name or the last target of its CNAME chain)
//     becomes a compact denial (RFC 9824): rcode NOERROR (NXDOMAIN kept when
//     the query had the CO flag) and, in the authority section, an NSEC at
//     that name whose next name is \000.NAME and whose bitmap is NSEC, RRSIG
//     and NXNAME for a nonexistent name, or NSEC, RRSIG and typesAt(NAME)
//     for NODATA. The SOA's TTL gives the NSEC's (RFC 9077).
//   - every RRset in the answer, authority and additional sections (OPT
//     excepted) gets its RRSIGs right after it.
//   - resp's OPT record, if any, gets the DO bit and, when the query had
//     it, the CO bit.
//
// typesAt is called only for NODATA, with the denied name as written in the
// answer: it returns the types that exist there (none for an empty
// non-terminal). If nil, the bitmap holds NSEC and RRSIG only. SignResponse leaves truncation to
// the caller: it grows resp, so the server must fit resp to the client's
// UDP size (setting TC) after this call, never before.
func (s *Signer) SignResponse(req, resp *dns.Msg, typesAt func(name string) []uint16) error {
	if !WantsDNSSEC(req) || len(req.Question) == 0 {
		return nil
	}
	co := WantsCompact(req)
	if opt := resp.IsEdns0(); opt != nil {
		opt.SetDo()
		if co {
			opt.SetCo()
		}
	}
	q := req.Question[0]
	name := finalName(q, resp.Answer)
	ttl, hasSOA := negativeTTL(resp.Ns)
	nx := resp.Rcode == dns.RcodeNameError
	nodata := resp.Rcode == dns.RcodeSuccess && hasSOA && !answered(q, name, resp.Answer)
	var nsec *dns.NSEC
	if (nx || nodata) && dns.IsSubDomain(s.zone, dns.CanonicalName(name)) {
		var types []uint16
		if nodata && typesAt != nil {
			types = typesAt(name)
		}
		nsec = s.compactNSEC(name, ttl, nx, types)
		resp.Ns = append(resp.Ns, nsec)
		if nx && !co {
			resp.Rcode = dns.RcodeSuccess
		}
	}
	var err error
	if resp.Answer, err = s.signSection(resp.Answer, nil); err != nil {
		return err
	}
	// A nonexistent name's NSEC is unique to that name: it is cached apart
	// (Signer.nx), so random names cannot flush the cache of real data.
	var uncached dns.RR
	if nx {
		uncached = nsec
	}
	if resp.Ns, err = s.signSection(resp.Ns, uncached); err != nil {
		return err
	}
	if resp.Extra, err = s.signSection(resp.Extra, nil); err != nil {
		return err
	}
	return nil
}

// compactNSEC returns the NSEC record of a compact denial at qname (RFC 9824
// §3): next name \000.qname; bitmap NSEC, RRSIG and NXNAME when nx, else
// NSEC, RRSIG and types.
func (s *Signer) compactNSEC(qname string, ttl uint32, nx bool, types []uint16) *dns.NSEC {
	bitmap := []uint16{dns.TypeRRSIG, dns.TypeNSEC}
	if nx {
		bitmap = append(bitmap, TypeNXNAME)
	} else {
		bitmap = append(bitmap, types...)
	}
	slices.Sort(bitmap)
	bitmap = slices.Compact(bitmap)
	return &dns.NSEC{
		Hdr:        dns.RR_Header{Name: qname, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: ttl},
		NextDomain: `\000.` + dns.CanonicalName(qname),
		TypeBitMap: bitmap,
	}
}

// negativeTTL is the TTL of denial records: the lesser of the SOA's TTL and
// its MINIMUM field (RFC 9077). ok is false without a SOA.
func negativeTTL(ns []dns.RR) (ttl uint32, ok bool) {
	for _, rr := range ns {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

// finalName follows the CNAME chain of answer from the query name and
// returns the name it ends at.
func finalName(q dns.Question, answer []dns.RR) string {
	name := q.Name
	if q.Qtype == dns.TypeCNAME {
		return name
	}
	for range 16 { // a bound against loops
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = c.Target
				break
			}
		}
		if next == "" {
			return name
		}
		name = next
	}
	return name
}

// answered reports whether answer holds a record of the query type at name.
func answered(q dns.Question, name string, answer []dns.RR) bool {
	for _, rr := range answer {
		h := rr.Header()
		if strings.EqualFold(h.Name, name) && (h.Rrtype == q.Qtype || q.Qtype == dns.TypeANY) {
			return true
		}
	}
	return false
}

// signSection returns rrs with RRSIGs after each RRset (same owner, ignoring
// case, type and class). Records of one RRset need not be adjacent. OPT,
// RRSIG and TSIG records are kept unsigned. The RRset holding uncached is
// signed without touching the cache.
func (s *Signer) signSection(rrs []dns.RR, uncached dns.RR) ([]dns.RR, error) {
	if len(rrs) == 0 {
		return rrs, nil
	}
	type setKey struct {
		name  string
		typ   uint16
		class uint16
	}
	var order []setKey
	sets := map[setKey][]dns.RR{}
	var tail []dns.RR
	for _, rr := range rrs {
		h := rr.Header()
		switch h.Rrtype {
		case dns.TypeOPT, dns.TypeRRSIG, dns.TypeTSIG:
			tail = append(tail, rr)
			continue
		}
		k := setKey{dns.CanonicalName(h.Name), h.Rrtype, h.Class}
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	out := make([]dns.RR, 0, len(rrs)+len(order)+len(tail))
	for _, k := range order {
		set := sets[k]
		cache := s.lazy
		if uncached != nil && slices.Contains(set, uncached) {
			cache = s.nx
		}
		sigs, err := s.signCached(set, cache)
		if err != nil {
			return nil, err
		}
		out = append(out, set...)
		out = append(out, sigs...)
	}
	return append(out, tail...), nil
}
