package dnssec

import (
	"slices"
	"testing"

	"github.com/miekg/dns"
)

const soaLine = "coopr.example.com. 3600 IN SOA ns1.coopr.example.com. hostmaster.coopr.example.com. 7 3600 600 604800 60"

func query(name string, qtype uint16, do, co bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if do || co {
		m.SetEdns0(1232, do)
		if co {
			m.IsEdns0().SetCo()
		}
	}
	return m
}

func negative(t *testing.T, req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.Authoritative = true
	resp.Ns = rrs(t, soaLine)
	resp.SetEdns0(1232, false)
	return resp
}

// sets groups a section into RRsets and their RRSIGs by owner and type.
func sets(section []dns.RR) (map[[2]string][]dns.RR, map[[2]string][]dns.RR) {
	data, sigs := map[[2]string][]dns.RR{}, map[[2]string][]dns.RR{}
	for _, r := range section {
		h := r.Header()
		if sig, ok := r.(*dns.RRSIG); ok {
			k := [2]string{dns.CanonicalName(h.Name), dns.TypeToString[sig.TypeCovered]}
			sigs[k] = append(sigs[k], r)
			continue
		}
		if h.Rrtype == dns.TypeOPT {
			continue
		}
		k := [2]string{dns.CanonicalName(h.Name), dns.TypeToString[h.Rrtype]}
		data[k] = append(data[k], r)
	}
	return data, sigs
}

func verifySection(t *testing.T, s *Signer, section []dns.RR) {
	t.Helper()
	data, sigs := sets(section)
	for k, set := range data {
		verify(t, s, set, sigs[k], newClock().Now())
	}
}

func TestCompactDenial(t *testing.T) {
	cases := []struct {
		name      string
		qname     string
		qtype     uint16
		rcode     int
		co        bool
		types     []uint16
		wantRcode int
		wantTypes []uint16
	}{
		{"nxdomain", "nope.coopr.example.com.", dns.TypeA, dns.RcodeNameError, false, nil,
			dns.RcodeSuccess, []uint16{dns.TypeRRSIG, dns.TypeNSEC, TypeNXNAME}},
		{"nxdomain with CO keeps the rcode", "nope.coopr.example.com.", dns.TypeA, dns.RcodeNameError, true, nil,
			dns.RcodeNameError, []uint16{dns.TypeRRSIG, dns.TypeNSEC, TypeNXNAME}},
		{"nxdomain 0x20", "NoPe.cOOpr.example.com.", dns.TypeAAAA, dns.RcodeNameError, false, nil,
			dns.RcodeSuccess, []uint16{dns.TypeRRSIG, dns.TypeNSEC, TypeNXNAME}},
		{"nodata", "api.coopr.example.com.", dns.TypeMX, dns.RcodeSuccess, false, []uint16{dns.TypeAAAA, dns.TypeA},
			dns.RcodeSuccess, []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeRRSIG, dns.TypeNSEC}},
		{"nodata at apex", "coopr.example.com.", dns.TypeA, dns.RcodeSuccess, true, []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeDNSKEY},
			dns.RcodeSuccess, []uint16{dns.TypeNS, dns.TypeSOA, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY}},
		{"empty non-terminal", "ent.coopr.example.com.", dns.TypeA, dns.RcodeSuccess, false, nil,
			dns.RcodeSuccess, []uint16{dns.TypeRRSIG, dns.TypeNSEC}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSigner(t, newClock(), Options{})
			req := query(tc.qname, tc.qtype, true, tc.co)
			resp := negative(t, req, tc.rcode)
			if err := s.SignResponse(req, resp, func(string) []uint16 { return tc.types }); err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.wantRcode])
			}
			if len(resp.Answer) != 0 {
				t.Errorf("answer section %v, want empty", resp.Answer)
			}
			data, sigs := sets(resp.Ns)
			nk := [2]string{dns.CanonicalName(tc.qname), "NSEC"}
			if len(data[nk]) != 1 {
				t.Fatalf("authority %v: want one NSEC at %s", resp.Ns, tc.qname)
			}
			nsec := data[nk][0].(*dns.NSEC)
			if nsec.Hdr.Name != tc.qname {
				t.Errorf("NSEC owner %q, want the query's %q", nsec.Hdr.Name, tc.qname)
			}
			if want := `\000.` + dns.CanonicalName(tc.qname); nsec.NextDomain != want {
				t.Errorf("NSEC next %q, want %q", nsec.NextDomain, want)
			}
			if !slices.Equal(nsec.TypeBitMap, tc.wantTypes) {
				t.Errorf("NSEC bitmap %v, want %v", nsec.TypeBitMap, tc.wantTypes)
			}
			if nsec.Hdr.Ttl != 60 {
				t.Errorf("NSEC TTL %d, want min(SOA TTL, minimum) = 60", nsec.Hdr.Ttl)
			}
			if len(sigs[[2]string{zone, "SOA"}]) != 1 {
				t.Error("SOA in the authority section is not signed")
			}
			verifySection(t, s, resp.Ns)
			opt := resp.IsEdns0()
			if !opt.Do() || opt.Co() != tc.co {
				t.Errorf("response OPT DO=%v CO=%v, want DO and CO=%v", opt.Do(), opt.Co(), tc.co)
			}
			// The answer survives the wire: miekg packs the NXNAME bit and \000 label.
			wire, err := resp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			back := new(dns.Msg)
			if err := back.Unpack(wire); err != nil {
				t.Fatal(err)
			}
			verifySection(t, s, back.Ns)
		})
	}
}

func TestSignResponsePositive(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	req := query("Api.Coopr.Example.Com.", dns.TypeA, true, false)
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Answer = rrs(t, "Api.Coopr.Example.Com. 20 IN A 192.0.2.10", "Api.Coopr.Example.Com. 20 IN A 192.0.2.20")
	resp.Ns = rrs(t, "coopr.example.com. 3600 IN NS ns1.coopr.example.com.")
	resp.Extra = rrs(t, "ns1.coopr.example.com. 3600 IN A 192.0.2.53")
	resp.SetEdns0(1232, true)
	if err := s.SignResponse(req, resp, nil); err != nil {
		t.Fatal(err)
	}
	for name, sec := range map[string][]dns.RR{"answer": resp.Answer, "authority": resp.Ns, "additional": resp.Extra} {
		data, sigs := sets(sec)
		for k := range data {
			if len(sigs[k]) == 0 {
				t.Errorf("%s: %v is not signed", name, k)
			}
		}
		verifySection(t, s, sec)
	}
	if _, ok := resp.Answer[2].(*dns.RRSIG); !ok {
		t.Errorf("answer %v: RRSIG should follow its RRset", resp.Answer)
	}
	if resp.Extra[len(resp.Extra)-1].Header().Rrtype != dns.TypeOPT {
		t.Error("OPT must stay last in the additional section")
	}
}

func TestSignResponseWithoutDOChangesNothing(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	for _, req := range []*dns.Msg{query("nope.coopr.example.com.", dns.TypeA, false, false), query("nope.coopr.example.com.", dns.TypeA, false, true)} {
		resp := negative(t, req, dns.RcodeNameError)
		before := resp.Copy().String()
		if err := s.SignResponse(req, resp, nil); err != nil {
			t.Fatal(err)
		}
		if resp.String() != before {
			t.Fatalf("answer without DO changed:\n%s\nwas\n%s", resp, before)
		}
	}
}

// TestNXDomainNotCached: random nonexistent names do not fill the cache of
// real data; their NSECs are kept apart in the bounded NX cache.
func TestNXDomainNotCached(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	for _, n := range []string{"a", "b", "c", "d"} {
		req := query(n+".coopr.example.com.", dns.TypeA, true, false)
		if err := s.SignResponse(req, negative(t, req, dns.RcodeNameError), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.CacheLen(); got != 1 {
		t.Fatalf("cache holds %d entries after 4 NXDOMAINs, want 1 (the SOA)", got)
	}
	nx := 0
	for _, sh := range s.nx {
		nx += sh.len()
	}
	if nx != 4 {
		t.Fatalf("NX cache holds %d entries after 4 NXDOMAINs, want 4", nx)
	}
	// Signing the same nonexistent name again is a hit in the NX cache.
	before := s.signs.Load()
	req := query("a.coopr.example.com.", dns.TypeA, true, false)
	if err := s.SignResponse(req, negative(t, req, dns.RcodeNameError), nil); err != nil {
		t.Fatal(err)
	}
	if s.signs.Load() != before {
		t.Error("a repeated nonexistent name was signed again")
	}
}

// TestCNAMEToNoData: the denial is at the end of the CNAME chain.
func TestCNAMEToNoData(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	req := query("www.coopr.example.com.", dns.TypeMX, true, false)
	resp := negative(t, req, dns.RcodeSuccess)
	resp.Answer = rrs(t, "www.coopr.example.com. 300 IN CNAME api.coopr.example.com.")
	var asked []string
	if err := s.SignResponse(req, resp, func(n string) []uint16 { asked = append(asked, n); return []uint16{dns.TypeA} }); err != nil {
		t.Fatal(err)
	}
	data, _ := sets(resp.Ns)
	nsec := data[[2]string{"api.coopr.example.com.", "NSEC"}]
	if len(nsec) != 1 || !slices.Equal(asked, []string{"api.coopr.example.com."}) {
		t.Fatalf("authority %v (typesAt asked for %v): want the NSEC at the CNAME target", resp.Ns, asked)
	}
	verifySection(t, s, resp.Answer)
	verifySection(t, s, resp.Ns)

	// A CNAME to a name with the data is a positive answer: no NSEC.
	req = query("www.coopr.example.com.", dns.TypeA, true, false)
	resp = new(dns.Msg)
	resp.SetReply(req)
	resp.Answer = rrs(t, "www.coopr.example.com. 300 IN CNAME api.coopr.example.com.", "api.coopr.example.com. 20 IN A 192.0.2.10")
	if err := s.SignResponse(req, resp, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range append(resp.Answer, resp.Ns...) {
		if r.Header().Rrtype == dns.TypeNSEC {
			t.Fatalf("NSEC in a positive answer: %v", r)
		}
	}
	verifySection(t, s, resp.Answer)
}

// TestPresignedAnswerAllocs guards the hot path: a pre-signed answer costs
// a few small allocations (the RRSIG copies, the section slice), no signing.
func TestPresignedAnswerAllocs(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	set := rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10", "api.coopr.example.com. 20 IN A 192.0.2.20")
	if err := s.Presign([][]dns.RR{set}); err != nil {
		t.Fatal(err)
	}
	req := query("api.coopr.example.com.", dns.TypeA, true, false)
	resp := new(dns.Msg)
	signs := s.signs.Load()
	allocs := testing.AllocsPerRun(100, func() {
		resp.Answer = append(resp.Answer[:0], set...)
		if err := s.SignResponse(req, resp, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 12 {
		t.Errorf("%v allocations per pre-signed answer, want <= 12", allocs)
	}
	if s.signs.Load() != signs {
		t.Error("a pre-signed answer was signed again")
	}
}
