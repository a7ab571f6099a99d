package dnsserver

import (
	"slices"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/dnssec"
)

// SetSigner makes s sign every answer to a query with the DO bit set with
// sg (nil: no DNSSEC), and serve its DNSKEY RRset at the apex. The instance
// calls it at start and on every reload that loads the keys again. The view
// is rebuilt for the next query, so the zone data and the signer always
// come from one call.
func (s *Server) SetSigner(sg *dnssec.Signer) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.signer.Store(sg)
	s.view.Store(nil)
}

// Signer returns the signer SetSigner set, nil if none.
func (s *Server) Signer() *dnssec.Signer { return s.signer.Load() }

// addDNSKEYs publishes the signer's DNSKEY RRset at the apex of z, a zone
// being built (not yet shared).
func (z *zone) addDNSKEYs(sg *dnssec.Signer) {
	z.signer = sg
	if sg == nil || z.apex == nil || sg.Zone() != z.origin {
		return
	}
	z.apex.dropType(dns.TypeDNSKEY) // a static DNSKEY would contradict the keys that sign
	for _, rr := range sg.DNSKEYs() {
		z.apex.add(rr)
	}
}

// sign signs the response to req when the zone has a signer and req set DO
// (dnssec.SignResponse): every RRset gets its RRSIGs, and NXDOMAIN and
// NODATA become compact denials (RFC 9824). It runs after finish added the
// OPT record and before pack fits the answer to the client's UDP size, so
// truncation sees the signed answer. A referral is signed as a parent
// signs a delegation (signReferral). A TSIG error is not signed.
func (r *response) sign(v *view, req *dns.Msg) {
	if v == nil || v.zone.signer == nil || !r.edns.do || r.signed {
		return
	}
	m := &r.msg
	if r.referral {
		if err := r.signReferral(v); err != nil {
			r.signFailed()
		}
		return
	}
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return // an error carries no data to sign
	}
	sg := v.zone.signer
	qtype := r.question[0].Qtype
	err := sg.SignResponse(req, m, func(name string) []uint16 { return v.typesAt(name, qtype) })
	if err != nil {
		r.signFailed()
	}
}

// signFailed turns a response whose signing failed (it does not, short of a
// broken key) into SERVFAIL: an unsigned answer would be bogus to a
// validator.
func (r *response) signFailed() {
	m := &r.msg
	m.Rcode = dns.RcodeServerFailure
	m.Answer, m.Ns, m.Extra = cut(m.Answer), cut(m.Ns), r.keepOPT(m.Extra)
	clear(r.gslb)
	r.gslb, r.refused = r.gslb[:0], nil
}

// signReferral signs a referral the way a parent does (RFC 4035 section
// 3.1.4): the NS set and glue stay unsigned (the child's data); the DS set
// at the cut goes along, signed, or, when the zone has none, an NSEC at the
// cut (bitmap NS, RRSIG, NSEC, next name \000.cut) proves there is no DS,
// so validators treat the child as unsigned rather than bogus. CNAMEs and
// DNAMEs that led to the referral are signed like any answer.
func (r *response) signReferral(v *view) error {
	sg := v.zone.signer
	m := &r.msg
	var answer []dns.RR
	for _, rr := range m.Answer {
		sigs, err := sg.Sign([]dns.RR{rr})
		if err != nil {
			return err
		}
		answer = append(append(answer, rr), sigs...)
	}
	m.Answer = answer
	var cutName string
	for _, rr := range m.Ns {
		if rr.Header().Rrtype == dns.TypeNS {
			cutName = rr.Header().Name
			break
		}
	}
	if cutName == "" {
		return nil
	}
	n := v.zone.nodes[string(appendLower(nil, cutName))]
	var proof []dns.RR
	if n != nil {
		proof = n.rrs(dns.TypeDS)
	}
	if len(proof) == 0 {
		proof = []dns.RR{&dns.NSEC{
			Hdr:        hdr(cutName, dns.TypeNSEC, v.zone.negSOA.Hdr.Ttl),
			NextDomain: `\000.` + dns.CanonicalName(cutName),
			TypeBitMap: []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC},
		}}
	}
	sigs, err := sg.Sign(proof)
	if err != nil {
		return err
	}
	m.Ns = append(append(m.Ns, proof...), sigs...)
	return nil
}

// typesAt lists the types that exist at name (as written in an answer),
// for the bitmap of a NODATA proof: never the type asked for, which the
// proof denies. A GSLB hostname has A and AAAA when any of its datacenters
// has an address of that family.
func (v *view) typesAt(name string, qtype uint16) []uint16 {
	z := v.zone
	n, kind := z.find(appendLower(nil, name))
	if n == nil || (kind != foundName && kind != foundWildcard) {
		return nil
	}
	var types []uint16
	for _, set := range n.sets {
		types = append(types, set.rrtype)
	}
	if n.cname != nil {
		types = append(types, dns.TypeCNAME)
	}
	if n.service >= 0 && n.service < len(z.services) {
		for _, dd := range z.services[n.service].dcs {
			if len(dd.v4) > 0 {
				types = append(types, dns.TypeA)
			}
			if len(dd.v6) > 0 {
				types = append(types, dns.TypeAAAA)
			}
		}
	}
	slices.Sort(types)
	types = slices.Compact(types)
	return slices.DeleteFunc(types, func(t uint16) bool { return t == qtype })
}

// maxPresignDCs bounds the datacenters of a service whose every subset is
// pre-signed (2^n sets per family); beyond it, only each datacenter alone
// and all of them together are, and other subsets are signed on first use.
const maxPresignDCs = 5

// presignSets lists the RRsets the view can answer with: every static
// RRset, the SOA as answer and as negative answer (at the service TTLs of
// NODATA), and the A and AAAA RRsets of every subset of each service's
// datacenters at the service's current TTL (which failover_budget changes
// with the snapshot).
func (v *view) presignSets() [][]dns.RR {
	z := v.zone
	if z.origin == "" {
		return nil
	}
	var sets [][]dns.RR
	sets = append(sets, []dns.RR{z.soa}, []dns.RR{z.negSOA})
	for _, n := range z.nodes {
		if n.cut != nil && n.cut != n {
			continue // below a delegation: glue, never signed
		}
		for _, set := range n.sets {
			if n.cut == n && set.rrtype != dns.TypeDS {
				continue // a delegation point: only the DS is ours
			}
			sets = append(sets, set.rrs)
		}
		if n.cname != nil {
			sets = append(sets, []dns.RR{n.cname})
		}
		if n.service < 0 || n.service >= len(v.services) || v.services[n.service] == nil {
			continue
		}
		svc := v.services[n.service]
		ttl := svc.TTL
		neg := *z.negSOA
		neg.Hdr.Ttl = min(neg.Hdr.Ttl, ttl)
		sets = append(sets, []dns.RR{&neg})
		dcs := make([]*dcData, 0, len(z.services[n.service].dcs))
		for _, dd := range z.services[n.service].dcs {
			dcs = append(dcs, dd)
		}
		for _, sub := range subsets(dcs) {
			var a, aaaa []dns.RR
			for _, dd := range sub {
				for _, ip := range dd.v4 {
					a = append(a, &dns.A{Hdr: hdr(n.name, dns.TypeA, ttl), A: ip})
				}
				for _, ip := range dd.v6 {
					aaaa = append(aaaa, &dns.AAAA{Hdr: hdr(n.name, dns.TypeAAAA, ttl), AAAA: ip})
				}
			}
			sets = append(sets, a, aaaa)
		}
	}
	return sets
}

// subsets returns the non-empty subsets of dcs, or, past maxPresignDCs,
// each one alone and all together.
func subsets(dcs []*dcData) [][]*dcData {
	var out [][]*dcData
	if len(dcs) > maxPresignDCs {
		for _, dd := range dcs {
			out = append(out, []*dcData{dd})
		}
		return append(out, dcs)
	}
	for mask := 1; mask < 1<<len(dcs); mask++ {
		var sub []*dcData
		for i, dd := range dcs {
			if mask&(1<<i) != 0 {
				sub = append(sub, dd)
			}
		}
		out = append(out, sub)
	}
	return out
}

// presign signs ahead what view v can answer with, so that no query signs.
func (s *Server) presign(v *view) {
	sg := v.zone.signer
	if sg == nil {
		return
	}
	if err := sg.Presign(v.presignSets()); err != nil {
		s.log.Warn("dnssec: cannot pre-sign the zone's answers; signing on demand", "error", err)
	}
}
