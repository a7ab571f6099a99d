package dnsserver

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// want is what a response must look like. Records are compared as
// "owner TTL class type data"; an SOA record only as "owner TTL SOA", its
// serial being the build time.
type want struct {
	rcode  int
	aa, tc bool
	answer []string
	ns     []string
	extra  []string // without the OPT record
}

func summarize(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		switch rr.(type) {
		case *dns.OPT:
			continue
		case *dns.SOA:
			out = append(out, h.Name+" "+strconv.Itoa(int(h.Ttl))+" SOA")
		default:
			out = append(out, strings.Join(strings.Fields(rr.String()), " "))
		}
	}
	return out
}

func check(t *testing.T, got *dns.Msg, w want) {
	t.Helper()
	if got.Rcode != w.rcode {
		t.Errorf("rcode = %s, want %s", dns.RcodeToString[got.Rcode], dns.RcodeToString[w.rcode])
	}
	if got.Authoritative != w.aa {
		t.Errorf("AA = %v, want %v", got.Authoritative, w.aa)
	}
	if got.Truncated != w.tc {
		t.Errorf("TC = %v, want %v", got.Truncated, w.tc)
	}
	if got.RecursionAvailable {
		t.Error("RA set by an authoritative-only server")
	}
	for _, sec := range []struct {
		name      string
		got, want []string
	}{
		{"answer", summarize(got.Answer), w.answer},
		{"authority", summarize(got.Ns), w.ns},
		{"additional", summarize(got.Extra), w.extra},
	} {
		g, ww := slices.Clone(sec.got), slices.Clone(sec.want)
		slices.Sort(g)
		slices.Sort(ww)
		if !slices.Equal(g, ww) {
			t.Errorf("%s section:\n got %q\nwant %q", sec.name, sec.got, sec.want)
		}
	}
}

const negSOA = "gslb.example.com. 45 SOA" // TTL min(3600, negative_ttl 45s)

func TestAnswers(t *testing.T) {
	f := start(t, bigTXT())
	ns1A, ns1AAAA := "ns1.gslb.example.com. 3600 IN A 192.0.2.53", "ns1.gslb.example.com. 3600 IN AAAA 2001:db8::53"
	tests := []struct {
		name    string
		net     string
		q       *dns.Msg
		want    want
		optSize uint16 // when non-zero, the response's OPT must advertise it
	}{
		{name: "gslb A", q: query("api.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"api.gslb.example.com. 30 IN A 192.0.2.1"}}},
		{name: "gslb AAAA", q: query("api.gslb.example.com.", dns.TypeAAAA),
			want: want{aa: true, answer: []string{"api.gslb.example.com. 30 IN AAAA 2001:db8::1"}}},
		{name: "gslb over TCP", net: "tcp", q: query("api.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"api.gslb.example.com. 30 IN A 192.0.2.1"}}},
		{name: "case is folded and echoed", q: query("ApI.GsLb.ExAmPlE.CoM.", dns.TypeA),
			want: want{aa: true, answer: []string{"ApI.GsLb.ExAmPlE.CoM. 30 IN A 192.0.2.1"}}},
		{name: "gslb wildcard", q: query("x.apps.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"x.apps.gslb.example.com. 30 IN A 192.0.2.1"}}},
		{name: "gslb wildcard, deeper", q: query("a.B.apps.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"a.B.apps.gslb.example.com. 30 IN A 192.0.2.1"}}},
		{name: "wildcard parent is an empty non-terminal", q: query("apps.gslb.example.com.", dns.TypeA),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "all policy answers every DC", q: query("all.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"all.gslb.example.com. 20 IN A 192.0.2.1", "all.gslb.example.com. 20 IN A 192.0.2.2"}}},
		{name: "no address of the family is NODATA with the answer's TTL", q: query("all.gslb.example.com.", dns.TypeAAAA),
			want: want{aa: true, ns: []string{"gslb.example.com. 20 SOA"}}},
		{name: "other types of a gslb name are NODATA", q: query("api.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "refused service is NODATA with its short TTL", q: query("strict.gslb.example.com.", dns.TypeA),
			want: want{aa: true, ns: []string{"gslb.example.com. 5 SOA"}}},
		{name: "nearest without ECS falls back to failover", q: query("near.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"near.gslb.example.com. 20 IN A 192.0.2.1"}}},
		{name: "nearest with ECS", q: query("near.gslb.example.com.", dns.TypeA, withECS("10.2.3.0/24")),
			want: want{aa: true, answer: []string{"near.gslb.example.com. 20 IN A 192.0.2.2"}}},
		{name: "CNAME is chased in zone", q: query("www.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"www.gslb.example.com. 300 IN CNAME api.gslb.example.com.", "api.gslb.example.com. 30 IN A 192.0.2.1"}}},
		{name: "CNAME query is not chased", q: query("www.gslb.example.com.", dns.TypeCNAME),
			want: want{aa: true, answer: []string{"www.gslb.example.com. 300 IN CNAME api.gslb.example.com."}}},
		{name: "CNAME out of zone", q: query("ext.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"ext.gslb.example.com. 300 IN CNAME coopr.example.org."}}},
		{name: "CNAME loop ends", q: query("loop1.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{"loop1.gslb.example.com. 300 IN CNAME loop2.gslb.example.com.", "loop2.gslb.example.com. 300 IN CNAME loop1.gslb.example.com."}}},
		{name: "CNAME to nothing is NXDOMAIN", q: query("dangling.gslb.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{"dangling.gslb.example.com. 300 IN CNAME nothere.gslb.example.com."}, ns: []string{negSOA}}},
		{name: "static TXT", q: query("txt.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`txt.gslb.example.com. 60 IN TXT "hello"`}}},
		{name: "static TXT in the query's case", q: query("TXT.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`TXT.gslb.example.com. 60 IN TXT "hello"`}}},
		{name: "NODATA", q: query("txt.gslb.example.com.", dns.TypeA),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "NXDOMAIN", q: query("nope.gslb.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, ns: []string{negSOA}}},
		{name: "NXDOMAIN below an existing name", q: query("a.b.c.txt.gslb.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, ns: []string{negSOA}}},
		{name: "SOA", q: query("gslb.example.com.", dns.TypeSOA),
			want: want{aa: true, answer: []string{"gslb.example.com. 3600 SOA"}}},
		{name: "NS with glue for in-zone names", q: query("gslb.example.com.", dns.TypeNS),
			want: want{aa: true, answer: []string{"gslb.example.com. 3600 IN NS ns1.gslb.example.com.", "gslb.example.com. 3600 IN NS ns2.other.example.net."},
				extra: []string{ns1A, ns1AAAA}}},
		{name: "nameserver address", q: query("ns1.gslb.example.com.", dns.TypeA),
			want: want{aa: true, answer: []string{ns1A}}},
		{name: "MX", q: query("gslb.example.com.", dns.TypeMX),
			want: want{aa: true, answer: []string{"gslb.example.com. 300 IN MX 10 mail.gslb.example.com."}}},
		{name: "CAA", q: query("gslb.example.com.", dns.TypeCAA),
			want: want{aa: true, answer: []string{`gslb.example.com. 300 IN CAA 0 issue "letsencrypt.org"`}}},
		{name: "SRV", q: query("_api._tcp.gslb.example.com.", dns.TypeSRV),
			want: want{aa: true, answer: []string{"_api._tcp.gslb.example.com. 300 IN SRV 0 0 443 api.gslb.example.com."}}},
		{name: "empty non-terminal is NODATA", q: query("ent.sub.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "empty non-terminal, higher", q: query("sub.gslb.example.com.", dns.TypeA),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "below an empty non-terminal", q: query("deep.ent.sub.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`deep.ent.sub.gslb.example.com. 300 IN TXT "deep"`}}},
		{name: "referral at a delegation", q: query("child.gslb.example.com.", dns.TypeA),
			want: want{ns: []string{"child.gslb.example.com. 300 IN NS ns.child.gslb.example.com."}, extra: []string{"ns.child.gslb.example.com. 300 IN A 192.0.2.100"}}},
		{name: "referral below a delegation", q: query("www.child.gslb.example.com.", dns.TypeA),
			want: want{ns: []string{"child.gslb.example.com. 300 IN NS ns.child.gslb.example.com."}, extra: []string{"ns.child.gslb.example.com. 300 IN A 192.0.2.100"}}},
		{name: "glue is not served as an answer", q: query("ns.child.gslb.example.com.", dns.TypeA),
			want: want{ns: []string{"child.gslb.example.com. 300 IN NS ns.child.gslb.example.com."}, extra: []string{"ns.child.gslb.example.com. 300 IN A 192.0.2.100"}}},
		{name: "DS at a delegation is ours", q: query("child.gslb.example.com.", dns.TypeDS),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "static wildcard", q: query("foo.wild.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`foo.wild.gslb.example.com. 60 IN TXT "wildcard"`}}},
		{name: "static wildcard, deeper", q: query("a.b.wild.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`a.b.wild.gslb.example.com. 60 IN TXT "wildcard"`}}},
		{name: "existing name beats the wildcard", q: query("known.wild.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: []string{`known.wild.gslb.example.com. 60 IN TXT "known"`}}},
		{name: "no wildcard below an existing name", q: query("x.known.wild.gslb.example.com.", dns.TypeTXT),
			want: want{rcode: dns.RcodeNameError, aa: true, ns: []string{negSOA}}},
		{name: "wildcard NODATA", q: query("foo.wild.gslb.example.com.", dns.TypeA),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "ANY is minimal", q: query("api.gslb.example.com.", dns.TypeANY),
			want: want{aa: true, answer: []string{`api.gslb.example.com. 3600 IN HINFO "RFC8482" ""`}}},
		{name: "ANY of an empty non-terminal", q: query("sub.gslb.example.com.", dns.TypeANY),
			want: want{aa: true, ns: []string{negSOA}}},
		{name: "ANY of a missing name", q: query("nope.gslb.example.com.", dns.TypeANY),
			want: want{rcode: dns.RcodeNameError, aa: true, ns: []string{negSOA}}},
		{name: "out of zone is refused", q: query("coopr.example.org.", dns.TypeA),
			want: want{rcode: dns.RcodeRefused}},
		{name: "a sibling suffix is out of zone", q: query("xgslb.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeRefused}},
		{name: "an escaped dot is not a label boundary", q: query(`a\.gslb.example.com.`, dns.TypeA),
			want: want{rcode: dns.RcodeRefused}},
		{name: "CHAOS is refused", q: func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), want: want{rcode: dns.RcodeRefused}},
		{name: "AXFR is refused", net: "tcp", q: query("gslb.example.com.", dns.TypeAXFR),
			want: want{rcode: dns.RcodeRefused}},
		{name: "IXFR is refused", net: "tcp", q: query("gslb.example.com.", dns.TypeIXFR),
			want: want{rcode: dns.RcodeRefused}},
		{name: "too large for UDP is truncated", q: query("big.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, tc: true}},
		{name: "too large for the client's EDNS size is truncated", q: query("big.gslb.example.com.", dns.TypeTXT, withEDNS(600)),
			want: want{aa: true, tc: true}, optSize: 1232},
		{name: "fits the EDNS size", q: query("big.gslb.example.com.", dns.TypeTXT, withEDNS(4096)),
			want: want{aa: true, answer: bigAnswer()}, optSize: 1232},
		{name: "TCP is not truncated", net: "tcp", q: query("big.gslb.example.com.", dns.TypeTXT),
			want: want{aa: true, answer: bigAnswer()}},
		{name: "EDNS is echoed with our size", q: query("api.gslb.example.com.", dns.TypeA, withEDNS(4096)),
			want: want{aa: true, answer: []string{"api.gslb.example.com. 30 IN A 192.0.2.1"}}, optSize: 1232},
		{name: "unknown EDNS version is BADVERS", q: query("api.gslb.example.com.", dns.TypeA, withEDNS(4096), func(m *dns.Msg) {
			m.IsEdns0().SetVersion(1)
		}), want: want{rcode: dns.RcodeBadVers}, optSize: 1232},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			network := tt.net
			if network == "" {
				network = "udp"
			}
			got := f.exchange(t, network, tt.q)
			check(t, got, tt.want)
			if len(got.Question) != 1 || got.Question[0] != tt.q.Question[0] {
				t.Errorf("question = %v, want %v echoed", got.Question, tt.q.Question)
			}
			opt := got.IsEdns0()
			switch {
			case tt.q.IsEdns0() == nil && opt != nil:
				t.Error("OPT in the response to a query without EDNS")
			case tt.optSize != 0 && opt == nil:
				t.Error("no OPT in the response to an EDNS query")
			case tt.optSize != 0 && opt.UDPSize() != tt.optSize:
				t.Errorf("OPT UDP size = %d, want %d", opt.UDPSize(), tt.optSize)
			case opt != nil && opt.Version() != 0:
				t.Errorf("OPT version = %d, want 0", opt.Version())
			}
		})
	}
}

func bigAnswer() []string {
	var out []string
	for i := range 5 {
		out = append(out, `big.gslb.example.com. 60 IN TXT "`+strings.Repeat(string(rune('a'+i)), 200)+`"`)
	}
	return out
}

func TestNoSnapshotIsServerFailure(t *testing.T) {
	srv, err := New(Options{Addr: "127.0.0.1:0", Snapshot: func() *routing.Snapshot { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	f := &fixture{srv: srv, addr: srv.Addr()}
	check(t, f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA)), want{rcode: dns.RcodeServerFailure})
}
