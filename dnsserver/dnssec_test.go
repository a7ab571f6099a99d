package dnsserver

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// signedFixture is the test server with a DNSSEC signer for the zone.
func signedFixture(t *testing.T, extra string) (*fixture, *dnssec.Signer) {
	t.Helper()
	f := start(t, extra)
	k, err := dnssec.GenerateKey(zoneName)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := dnssec.New(zoneName, []*dnssec.Key{k}, dnssec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetSigner(sg)
	f.srv.Prepare(f.engine.Snapshot())
	return f, sg
}

func withDO(size uint16) func(*dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(size, true) }
}

// verifySigned checks that every RRset of the answer and authority
// sections carries an RRSIG that verifies against the zone's DNSKEY, and
// returns the number of RRsets checked.
func verifySigned(t *testing.T, sg *dnssec.Signer, m *dns.Msg) int {
	t.Helper()
	key := sg.DNSKEYs()[0].(*dns.DNSKEY)
	checked := 0
	for _, section := range [][]dns.RR{m.Answer, m.Ns} {
		sets := map[[2]string][]dns.RR{}
		sigs := map[[2]string][]*dns.RRSIG{}
		for _, rr := range section {
			h := rr.Header()
			name := strings.ToLower(h.Name)
			if sig, ok := rr.(*dns.RRSIG); ok {
				k := [2]string{name, dns.TypeToString[sig.TypeCovered]}
				sigs[k] = append(sigs[k], sig)
				continue
			}
			k := [2]string{name, dns.TypeToString[h.Rrtype]}
			sets[k] = append(sets[k], rr)
		}
		for k, set := range sets {
			ok := false
			for _, sig := range sigs[k] {
				if sig.KeyTag != key.KeyTag() {
					continue
				}
				if err := sig.Verify(key, set); err != nil {
					t.Errorf("%v: RRSIG does not verify: %v", k, err)
					continue
				}
				if !sig.ValidityPeriod(time.Now()) {
					t.Errorf("%v: RRSIG not valid now", k)
					continue
				}
				ok = true
			}
			if !ok {
				t.Errorf("%v: no verifying RRSIG in\n%v", k, m)
			}
			checked++
		}
	}
	return checked
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

func TestDNSSECAnswersVerify(t *testing.T) {
	f, sg := signedFixture(t, "")
	down := func() {
		f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc1", Service: "api", Endpoint: "127.0.0.1:1", Up: false, Reason: "test"})
		f.srv.Prepare(f.engine.Snapshot())
	}
	tests := []struct {
		name   string
		before func()
		qname  string
		qtype  uint16
		// answer is the type the answer must hold (0: a denial).
		answer uint16
		nsec   bool
	}{
		{name: "apex SOA", qname: zoneName, qtype: dns.TypeSOA, answer: dns.TypeSOA},
		{name: "apex NS", qname: zoneName, qtype: dns.TypeNS, answer: dns.TypeNS},
		{name: "apex DNSKEY", qname: zoneName, qtype: dns.TypeDNSKEY, answer: dns.TypeDNSKEY},
		{name: "static TXT", qname: "txt." + zoneName, qtype: dns.TypeTXT, answer: dns.TypeTXT},
		{name: "static MX", qname: zoneName, qtype: dns.TypeMX, answer: dns.TypeMX},
		{name: "CNAME chain", qname: "WWW." + zoneName, qtype: dns.TypeA, answer: dns.TypeA},
		{name: "wildcard", qname: "x.wild." + zoneName, qtype: dns.TypeTXT, answer: dns.TypeTXT},
		{name: "GSLB all DCs", qname: "all." + zoneName, qtype: dns.TypeA, answer: dns.TypeA},
		{name: "GSLB 0x20", qname: "ApI." + zoneName, qtype: dns.TypeA, answer: dns.TypeA},
		{name: "GSLB AAAA", qname: "api." + zoneName, qtype: dns.TypeAAAA, answer: dns.TypeAAAA},
		{name: "NODATA static", qname: "txt." + zoneName, qtype: dns.TypeA, nsec: true},
		{name: "NODATA GSLB", qname: "near." + zoneName, qtype: dns.TypeAAAA, nsec: true},
		{name: "NXDOMAIN", qname: "nothere." + zoneName, qtype: dns.TypeA, nsec: true},
		{name: "refuse: every DC down", qname: "strict." + zoneName, qtype: dns.TypeA, nsec: true},
		{name: "GSLB after failover", before: down, qname: "api." + zoneName, qtype: dns.TypeA, answer: dns.TypeA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			for _, network := range []string{"udp", "tcp"} {
				r := f.exchange(t, network, query(tt.qname, tt.qtype, withDO(1232)))
				if r.Rcode != dns.RcodeSuccess || r.Truncated {
					t.Fatalf("%s: rcode %s TC %v\n%v", network, dns.RcodeToString[r.Rcode], r.Truncated, r)
				}
				if opt := r.IsEdns0(); opt == nil || !opt.Do() {
					t.Errorf("%s: no DO in the response OPT", network)
				}
				if tt.answer != 0 && !hasType(r.Answer, tt.answer) {
					t.Errorf("%s: no %s in the answer\n%v", network, dns.TypeToString[tt.answer], r)
				}
				if tt.nsec {
					var nsec *dns.NSEC
					for _, rr := range r.Ns {
						if n, ok := rr.(*dns.NSEC); ok {
							nsec = n
						}
					}
					if nsec == nil || !strings.EqualFold(nsec.Hdr.Name, tt.qname) {
						t.Fatalf("%s: no compact NSEC at %s\n%v", network, tt.qname, r)
					}
					for _, bt := range nsec.TypeBitMap {
						if bt == tt.qtype {
							t.Errorf("%s: the NSEC bitmap holds the denied type: %v", network, nsec)
						}
					}
				}
				if n := verifySigned(t, sg, r); n == 0 {
					t.Errorf("%s: nothing signed", network)
				}
			}
		})
	}
	// After the failover the answer names dc2 only.
	r := f.exchange(t, "udp", query("api."+zoneName, dns.TypeA, withDO(1232)))
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.String() != "192.0.2.2" {
			t.Errorf("after failover: %v", a)
		}
	}
}

func TestDNSSECNoDOUnchanged(t *testing.T) {
	f, _ := signedFixture(t, "")
	plain := start(t, "")
	for _, q := range []struct {
		name  string
		qtype uint16
		opts  []func(*dns.Msg)
	}{
		{"api." + zoneName, dns.TypeA, nil},
		{"api." + zoneName, dns.TypeA, []func(*dns.Msg){withEDNS(1232)}},
		{"nothere." + zoneName, dns.TypeA, []func(*dns.Msg){withEDNS(1232)}},
		{"txt." + zoneName, dns.TypeA, nil},
		{zoneName, dns.TypeSOA, nil},
	} {
		got := f.exchange(t, "udp", query(q.name, q.qtype, q.opts...))
		want := plain.exchange(t, "udp", query(q.name, q.qtype, q.opts...))
		for _, sec := range [][]dns.RR{got.Answer, got.Ns, got.Extra} {
			if hasType(sec, dns.TypeRRSIG) || hasType(sec, dns.TypeNSEC) {
				t.Errorf("%s: DNSSEC records without DO:\n%v", q.name, got)
			}
		}
		if got.Rcode != want.Rcode || len(got.Answer) != len(want.Answer) || len(got.Ns) != len(want.Ns) {
			t.Errorf("%s: signed server answers\n%v\nunsigned server\n%v", q.name, got, want)
		}
	}
	// The apex publishes the DNSKEY RRset, to every client.
	r := f.exchange(t, "udp", query(zoneName, dns.TypeDNSKEY))
	if !hasType(r.Answer, dns.TypeDNSKEY) || hasType(r.Answer, dns.TypeRRSIG) {
		t.Errorf("DNSKEY without DO:\n%v", r)
	}
}

// A response that fits the client's UDP size unsigned but not signed is
// truncated with DO, and the TCP retry gets it complete and signed.
func TestDNSSECTruncatesAfterSigning(t *testing.T) {
	mid := "    - \"mid 60 IN TXT \\\"" + strings.Repeat("m", 380) + "\\\"\"\n"
	f, sg := signedFixture(t, mid)
	q := func(do bool) *dns.Msg {
		m := query("mid."+zoneName, dns.TypeTXT)
		m.SetEdns0(512, do)
		return m
	}
	if r := f.exchange(t, "udp", q(false)); r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("unsigned answer over UDP at 512: \n%v", r)
	}
	r := f.exchange(t, "udp", q(true))
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("signed answer over UDP at 512 not truncated:\n%v", r)
	}
	if opt := r.IsEdns0(); opt == nil || !opt.Do() {
		t.Errorf("truncated answer without DO in its OPT:\n%v", r)
	}
	r = f.exchange(t, "tcp", q(true))
	if r.Truncated || !hasType(r.Answer, dns.TypeTXT) || !hasType(r.Answer, dns.TypeRRSIG) {
		t.Fatalf("TCP answer:\n%v", r)
	}
	verifySigned(t, sg, r)
}

// A new signer (a reload with another key) is served from the next query.
func TestDNSSECSetSignerSwapsKeys(t *testing.T) {
	f, first := signedFixture(t, "")
	k, err := dnssec.GenerateKey(zoneName)
	if err != nil {
		t.Fatal(err)
	}
	second, err := dnssec.New(zoneName, []*dnssec.Key{k}, dnssec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetSigner(second)
	r := f.exchange(t, "udp", query(zoneName, dns.TypeDNSKEY, withDO(1232)))
	if len(r.Answer) < 1 || r.Answer[0].(*dns.DNSKEY).KeyTag() != k.DNSKEY.KeyTag() {
		t.Fatalf("DNSKEY after SetSigner (first key %d):\n%v", first.DNSKEYs()[0].(*dns.DNSKEY).KeyTag(), r)
	}
	verifySigned(t, second, r)
	f.srv.SetSigner(nil)
	if r := f.exchange(t, "udp", query(zoneName, dns.TypeDNSKEY, withDO(1232))); len(r.Answer) != 0 {
		t.Fatalf("DNSKEY after SetSigner(nil):\n%v", r)
	}
}

// Prepare pre-signs every RRset a snapshot can answer with: answers for
// any subset of datacenters, static records and the apex sign nothing on
// the query path (the lazy cache does not grow).
func TestDNSSECPreparePresignsGSLBAnswers(t *testing.T) {
	f, sg := signedFixture(t, "")
	ask := func() {
		t.Helper()
		for _, q := range []struct {
			name  string
			qtype uint16
		}{
			{"api." + zoneName, dns.TypeA}, {"api." + zoneName, dns.TypeAAAA}, {"all." + zoneName, dns.TypeA},
			{"near." + zoneName, dns.TypeA}, {zoneName, dns.TypeSOA}, {zoneName, dns.TypeNS}, {zoneName, dns.TypeDNSKEY},
			{"txt." + zoneName, dns.TypeTXT}, {"www." + zoneName, dns.TypeA},
		} {
			before := sg.CacheLen()
			r := f.exchange(t, "udp", query(q.name, q.qtype, withDO(1232)))
			verifySigned(t, sg, r)
			// A NODATA proof's NSEC is signed once, then cached.
			if len(r.Answer) > 0 && sg.CacheLen() != before {
				t.Errorf("%s %s: signed on the query path:\n%v", q.name, dns.TypeToString[q.qtype], r)
			}
		}
	}
	ask()
	// Failover: api and all now answer with dc2 only, another subset.
	for _, svc := range []string{"api", "every"} {
		f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc1", Service: svc, Endpoint: "127.0.0.1:1", Up: false, Reason: "test"})
	}
	f.srv.Prepare(f.engine.Snapshot())
	ask()
}

// Signing changes nothing about RRL and cookies: a DO query with a valid
// server cookie passes the limiter and gets a signed answer with a fresh
// cookie; one without a cookie is limited (slipped: TC, nothing signed).
func TestDNSSECWithRRLAndCookies(t *testing.T) {
	f, sg := signedFixture(t, "  rrl: {responses_per_second: 1, slip: 1}")
	const client = "0102030405060708"
	r := f.exchange(t, "udp", query("api."+zoneName, dns.TypeA, withDO(1232), withCookie(client)))
	c := optOf[*dns.EDNS0_COOKIE](r)
	if c == nil || len(c.Cookie) != 48 {
		t.Fatalf("no server cookie on a signed answer:\n%v", r)
	}
	for i := range 10 {
		r := f.exchange(t, "udp", query("api."+zoneName, dns.TypeA, withDO(1232), withCookie(c.Cookie)))
		if r.Rcode != dns.RcodeSuccess || r.Truncated || optOf[*dns.EDNS0_COOKIE](r) == nil {
			t.Fatalf("query %d with a valid cookie:\n%v", i, r)
		}
		verifySigned(t, sg, r)
	}
	limited := false
	for range 20 {
		r := f.exchange(t, "udp", query("api."+zoneName, dns.TypeA, withDO(1232)))
		if r.Truncated {
			limited = true
			if len(r.Answer)+len(r.Ns) != 0 {
				t.Errorf("a slipped answer carries records:\n%v", r)
			}
			break
		}
	}
	if !limited {
		t.Error("DO queries without cookies were never rate limited")
	}
}

// A referral is signed as a parent signs a delegation: NS and glue
// unsigned, an NSEC at the cut proving there is no DS (bitmap NS, RRSIG,
// NSEC), signed; a static DS at the cut goes along signed instead.
func TestDNSSECReferral(t *testing.T) {
	f, sg := signedFixture(t, "    - \"signed 300 IN NS ns.signed\"\n    - \"ns.signed 300 IN A 192.0.2.101\"\n    - \"signed 300 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\"\n")
	key := sg.DNSKEYs()[0].(*dns.DNSKEY)
	for _, tc := range []struct {
		qname, cut string
		proof      uint16
	}{
		{"www.child." + zoneName, "child." + zoneName, dns.TypeNSEC},
		{"www.signed." + zoneName, "signed." + zoneName, dns.TypeDS},
	} {
		r := f.exchange(t, "tcp", query(tc.qname, dns.TypeA, withDO(1232)))
		if r.Authoritative || !hasType(r.Ns, dns.TypeNS) {
			t.Fatalf("%s: not a referral:\n%v", tc.qname, r)
		}
		var proof []dns.RR
		var sig *dns.RRSIG
		for _, rr := range r.Ns {
			switch rr := rr.(type) {
			case *dns.RRSIG:
				if rr.TypeCovered == dns.TypeNS {
					t.Errorf("%s: the delegation NS set is signed:\n%v", tc.qname, r)
				}
				if rr.TypeCovered == tc.proof {
					sig = rr
				}
			default:
				if rr.Header().Rrtype == tc.proof {
					proof = append(proof, rr)
				}
			}
		}
		if len(proof) == 0 || sig == nil || !strings.EqualFold(proof[0].Header().Name, tc.cut) {
			t.Fatalf("%s: no signed %s at %s:\n%v", tc.qname, dns.TypeToString[tc.proof], tc.cut, r)
		}
		if err := sig.Verify(key, proof); err != nil {
			t.Errorf("%s: %v", tc.qname, err)
		}
		if nsec, ok := proof[0].(*dns.NSEC); ok {
			want := []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC}
			if len(nsec.TypeBitMap) != len(want) || nsec.NextDomain != "\\000."+tc.cut {
				t.Errorf("%s: NSEC %v", tc.qname, nsec)
			}
		}
		if hasType(r.Extra, dns.TypeRRSIG) {
			t.Errorf("%s: glue signed:\n%v", tc.qname, r)
		}
	}
}
