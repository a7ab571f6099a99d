package dnsserver

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// conformanceExtra adds what the conformance tests need to the test zone.
const conformanceExtra = `    - "redir 300 IN DNAME target.example.net."
    - "inzone 300 IN DNAME sub"
    - "child 300 IN DS 12345 13 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE"
    - "tochild 300 IN CNAME www.child"
  nsid: coopr-test-1`

// opt returns the EDNS option of type T in m, nil if none.
func optOf[T dns.EDNS0](m *dns.Msg) T {
	var zero T
	if o := m.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if t, ok := e.(T); ok {
				return t
			}
		}
	}
	return zero
}

func TestErrorsCopyOnlyRDAndCDAndCarryOPT(t *testing.T) {
	f := start(t, "")
	noQuestion := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	noQuestion.Question = nil
	twoQuestions := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	badOwner := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	badOwner.IsEdns0().Hdr.Name = "x."
	twoECS := query("api.gslb.example.com.", dns.TypeA, withECS("10.1.0.0/16"), withECS("10.2.0.0/16"))
	badVersionAndECS := query("api.gslb.example.com.", dns.TypeA, withECS("10.1.0.0/16"), withECS("10.2.0.0/16"))
	badVersionAndECS.IsEdns0().SetVersion(1)
	for _, tc := range []struct {
		name     string
		opcode   int
		m        *dns.Msg
		rcode    int
		question bool
	}{
		{"opcode 15", 15, query("gslb.example.com.", dns.TypeSOA, withEDNS(1232)), dns.RcodeNotImplemented, true},
		{"NOTIFY", dns.OpcodeNotify, query("gslb.example.com.", dns.TypeSOA, withEDNS(1232)), dns.RcodeNotImplemented, true},
		{"UPDATE", dns.OpcodeUpdate, query("gslb.example.com.", dns.TypeSOA, withEDNS(1232)), dns.RcodeNotImplemented, true},
		{"QDCOUNT 0", dns.OpcodeQuery, noQuestion, dns.RcodeFormatError, false},
		{"QDCOUNT 2", dns.OpcodeQuery, twoQuestions, dns.RcodeFormatError, false},
		{"OPT owner not root", dns.OpcodeQuery, badOwner, dns.RcodeFormatError, true},
		{"two ECS options", dns.OpcodeQuery, twoECS, dns.RcodeFormatError, true},
		{"BADVERS wins over a malformed ECS", dns.OpcodeQuery, badVersionAndECS, dns.RcodeBadVers, true},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				m := tc.m.Copy()
				m.Opcode = tc.opcode
				m.RecursionDesired, m.CheckingDisabled = true, true
				m.Truncated, m.RecursionAvailable, m.AuthenticatedData = true, true, true
				r := exchangeRaw(t, f, network, m)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !r.RecursionDesired || !r.CheckingDisabled || r.Truncated || r.RecursionAvailable || r.AuthenticatedData {
					t.Errorf("header bits: %v; want RD and CD only", &r.MsgHdr)
				}
				if r.IsEdns0() == nil {
					t.Error("no OPT in the error response to an EDNS query")
				}
				if got := len(r.Question) == 1; got != tc.question {
					t.Errorf("question kept %v, want %v", got, tc.question)
				}
			})
		}
	}
}

// exchangeRaw sends m as it is (no ID or header fix-ups) and returns the
// response.
func exchangeRaw(t *testing.T, f *fixture, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	conn, err := c.Dial(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := conn.ReadMsg()
	if err != nil && r == nil {
		t.Fatal(err)
	}
	return r
}

func TestTSIGUnknownKeyIsBADKEY(t *testing.T) {
	f := start(t, "")
	m := query("api.gslb.example.com.", dns.TypeA)
	m.SetTsig("nokey.", dns.HmacSHA256, 300, time.Now().Unix())
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 2 * time.Second,
			TsigSecret: map[string]string{"nokey.": "c2VjcmV0c2VjcmV0c2VjcmV0"}}
		r, _, err := c.Exchange(m.Copy(), f.addr)
		if r == nil {
			t.Fatalf("%s: %v", network, err)
		}
		if r.Rcode != dns.RcodeNotAuth {
			t.Errorf("%s: rcode %s, want NOTAUTH", network, dns.RcodeToString[r.Rcode])
		}
		ts := r.IsTsig()
		if ts == nil || ts.Error != dns.RcodeBadKey || ts.MACSize != 0 || ts.Hdr.Name != "nokey." {
			t.Errorf("%s: TSIG %v, want an unsigned one with BADKEY", network, ts)
		}
		if len(r.Answer) != 0 {
			t.Errorf("%s: answered a query signed with an unknown key", network)
		}
	}
}

func TestDNAMEDSAndCNAMEIntoDelegation(t *testing.T) {
	f := start(t, conformanceExtra)
	tests := []struct {
		name string
		q    *dns.Msg
		want want
	}{
		{"DNAME out of zone: DNAME and synthesized CNAME", query("a.b.redir.gslb.example.com.", dns.TypeA), want{aa: true, answer: []string{
			"redir.gslb.example.com. 300 IN DNAME target.example.net.",
			"a.b.redir.gslb.example.com. 300 IN CNAME a.b.target.example.net."}}},
		{"DNAME in zone: followed", query("txt.inzone.gslb.example.com.", dns.TypeTXT), want{aa: true, answer: []string{
			"inzone.gslb.example.com. 300 IN DNAME sub.gslb.example.com.",
			"txt.inzone.gslb.example.com. 300 IN CNAME txt.sub.gslb.example.com."},
			ns: []string{"gslb.example.com. 45 SOA"}, rcode: dns.RcodeNameError}},
		{"DNAME owner itself", query("redir.gslb.example.com.", dns.TypeDNAME), want{aa: true, answer: []string{
			"redir.gslb.example.com. 300 IN DNAME target.example.net."}}},
		{"static DS at the delegation point", query("child.gslb.example.com.", dns.TypeDS), want{aa: true, answer: []string{
			"child.gslb.example.com. 300 IN DS 12345 13 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE"}}},
		{"CNAME into a delegation: referral after it", query("tochild.gslb.example.com.", dns.TypeA), want{aa: true,
			answer: []string{"tochild.gslb.example.com. 300 IN CNAME www.child.gslb.example.com."},
			ns:     []string{"child.gslb.example.com. 300 IN NS ns.child.gslb.example.com."},
			extra:  []string{"ns.child.gslb.example.com. 300 IN A 192.0.2.100"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, f.exchange(t, "udp", tt.q), tt.want)
		})
	}
}

func TestNSID(t *testing.T) {
	f := start(t, conformanceExtra)
	m := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	r := f.exchange(t, "udp", m)
	n := optOf[*dns.EDNS0_NSID](r)
	if n == nil || n.Nsid != hex.EncodeToString([]byte("coopr-test-1")) {
		t.Errorf("NSID %v, want coopr-test-1", n)
	}
	// Not asked, not given.
	if n := optOf[*dns.EDNS0_NSID](f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withEDNS(1232)))); n != nil {
		t.Errorf("NSID %v to a query that did not ask", n)
	}
}

func TestExtendedErrors(t *testing.T) {
	f := start(t, "")
	outside := f.exchange(t, "udp", query("example.org.", dns.TypeA, withEDNS(1232)))
	if e := optOf[*dns.EDNS0_EDE](outside); outside.Rcode != dns.RcodeRefused || e == nil || e.InfoCode != dns.ExtendedErrorCodeNotAuthoritative {
		t.Errorf("outside the zone: rcode %s EDE %v, want REFUSED with Not Authoritative", dns.RcodeToString[outside.Rcode], e)
	}
	refused := f.exchange(t, "udp", query("strict.gslb.example.com.", dns.TypeA, withEDNS(1232)))
	if e := optOf[*dns.EDNS0_EDE](refused); e == nil || e.ExtraText == "" {
		t.Errorf("when_all_down: refuse: no EDE in %v", refused)
	}
	for _, ep := range []struct{ dc, ep string }{{"dc1", "127.0.0.1:1"}, {"dc2", "127.0.0.1:2"}} {
		f.engine.UpdateEndpoint(routing.EndpointUpdate{DC: ep.dc, Service: "api", Endpoint: ep.ep, Up: false})
	}
	all := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withEDNS(1232)))
	if e := optOf[*dns.EDNS0_EDE](all); len(all.Answer) == 0 || e == nil || e.ExtraText == "" {
		t.Errorf("serve_all with every DC down: answer %v EDE %v, want addresses and an EDE", all.Answer, e)
	}
	healthy := f.exchange(t, "udp", query("near.gslb.example.com.", dns.TypeA, withEDNS(1232)))
	if e := optOf[*dns.EDNS0_EDE](healthy); e != nil {
		t.Errorf("EDE %v on a healthy answer", e)
	}
}

func withCookie(c string) func(*dns.Msg) {
	return func(m *dns.Msg) {
		if m.IsEdns0() == nil {
			m.SetEdns0(1232, false)
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: c})
	}
}

func TestCookies(t *testing.T) {
	f := start(t, "  rrl: {responses_per_second: 1, slip: 1}")
	const client = "0102030405060708"
	// Malformed (over TCP, which RRL leaves alone): FORMERR.
	if r := f.exchange(t, "tcp", query("api.gslb.example.com.", dns.TypeA, withCookie("0102"))); r.Rcode != dns.RcodeFormatError {
		t.Errorf("malformed cookie: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	r := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withCookie(client)))
	c := optOf[*dns.EDNS0_COOKIE](r)
	if c == nil || len(c.Cookie) != 48 || c.Cookie[:16] != client {
		t.Fatalf("cookie %v, want the client cookie and a 16-byte server cookie", c)
	}
	good := c.Cookie
	// With the valid server cookie, RRL lets the client through however fast it asks.
	for i := range 20 {
		r := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withCookie(good)))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || r.Truncated {
			t.Fatalf("query %d with a valid cookie: %v", i, r)
		}
	}
	// Without one, the client is limited; with a client cookie, it is told
	// BADCOOKIE and the cookie to use.
	var sawBad bool
	for range 20 {
		r := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withCookie(client)))
		if r.Rcode == dns.RcodeBadCookie {
			if c := optOf[*dns.EDNS0_COOKIE](r); c == nil || len(c.Cookie) != 48 {
				t.Fatalf("BADCOOKIE without a new server cookie: %v", r)
			}
			sawBad = true
			break
		}
	}
	if !sawBad {
		t.Error("a rate-limited client cookie never got BADCOOKIE")
	}
	// A forged server cookie is no pass.
	forged := client + "01000000" + hex.EncodeToString([]byte{0, 0, 0, 1}) + "0000000000000000"
	var limited bool
	for range 20 {
		r := f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withCookie(forged)))
		if r.Rcode == dns.RcodeBadCookie || r.Truncated {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("a forged server cookie passed RRL")
	}
}

func TestCookiesOffAndSharedSecret(t *testing.T) {
	off := start(t, "  cookies: false")
	r := off.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA, withCookie("0102030405060708")))
	if c := optOf[*dns.EDNS0_COOKIE](r); c != nil {
		t.Errorf("cookies: false, got %v", c)
	}
	// Two servers sharing a secret accept each other's cookies.
	a, b := start(t, ""), start(t, "")
	a.srv.SetCookieSecret([]byte("0123456789abcdef0123456789abcdef"))
	b.srv.SetCookieSecret([]byte("0123456789abcdef0123456789abcdef"))
	v := a.srv.current()
	r1 := newResponse()
	q := query("api.gslb.example.com.", dns.TypeA, withCookie("0102030405060708"))
	now := time.Now()
	client := netip.MustParseAddr("192.0.2.77")
	a.srv.checkCookie(v, q, client, now, r1)
	q2 := query("api.gslb.example.com.", dns.TypeA, withCookie(r1.cookieOut))
	if !b.srv.checkCookie(b.srv.current(), q2, client, now.Add(time.Minute), newResponse()) {
		t.Error("a cookie of one instance is not valid at another sharing the secret")
	}
	if b.srv.checkCookie(b.srv.current(), q2, netip.MustParseAddr("192.0.2.78"), now, newResponse()) {
		t.Error("a cookie is valid for another client address")
	}
	if b.srv.checkCookie(b.srv.current(), q2, client, now.Add(2*time.Hour), newResponse()) {
		t.Error("a cookie two hours old is still valid")
	}
	other := start(t, "")
	if other.srv.checkCookie(other.srv.current(), q2, client, now, newResponse()) {
		t.Error("a cookie is valid at an instance with another secret")
	}
}

// TestUnparseableECSIsFormerrWithOPT: an ECS option miekg cannot unpack (a
// source prefix longer than the address) fails the whole message; the
// FORMERR still carries OPT and the question.
func TestUnparseableECSIsFormerrWithOPT(t *testing.T) {
	f := start(t, "")
	b := packet(t, query("api.gslb.example.com.", dns.TypeA, withECS("10.0.0.0/8")))
	// The option ends with FAMILY(2) SOURCE(1) SCOPE(1) ADDRESS(1 byte for /8).
	b[len(b)-3] = 40
	resp := f.rawExchange(t, b, time.Second)
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeFormatError || m.IsEdns0() == nil || len(m.Question) != 1 {
		t.Errorf("got %v, want FORMERR with OPT and the question", &m)
	}
}
