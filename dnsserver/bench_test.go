package dnsserver

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// inProcess returns a server that is not listening, for calling the answer
// path directly.
func inProcess(tb testing.TB) (*Server, *routing.Engine) {
	tb.Helper()
	engine := routing.New(parseConfig(tb, ""), routing.Options{})
	for _, dc := range []string{"dc1", "dc2"} {
		ep := map[string]string{"dc1": "127.0.0.1:1", "dc2": "127.0.0.1:2"}[dc]
		for _, svc := range []string{"api", "near", "every"} {
			engine.UpdateEndpoint(routing.EndpointUpdate{DC: dc, Service: svc, Endpoint: ep, Up: true})
		}
	}
	s, err := New(Options{Snapshot: engine.Snapshot, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	return s, engine
}

var client = netip.MustParseAddr("198.51.100.7")

// TestAnswerAllocations guards the hot path: building these answers
// allocates nothing.
func TestAnswerAllocations(t *testing.T) {
	s, _ := inProcess(t)
	for _, tc := range []struct {
		name string
		q    *dns.Msg
	}{
		{"gslb A", query("api.gslb.example.com.", dns.TypeA)},
		{"gslb A, mixed case", query("API.gslb.Example.com.", dns.TypeA)},
		{"gslb wildcard", query("x.apps.gslb.example.com.", dns.TypeA)},
		{"gslb all", query("all.gslb.example.com.", dns.TypeA)},
		{"nearest with ECS", query("near.gslb.example.com.", dns.TypeA, withECS("10.2.0.0/24"))},
		{"CNAME chase", query("www.gslb.example.com.", dns.TypeA)},
		{"static", query("txt.gslb.example.com.", dns.TypeTXT)},
		{"NXDOMAIN", query("nope.gslb.example.com.", dns.TypeA)},
		{"NXDOMAIN, many labels", query("a.b.c.d.e.f.g.h.nope.gslb.example.com.", dns.TypeA)},
		{"NODATA", query("txt.gslb.example.com.", dns.TypeA)},
		{"referral", query("www.child.gslb.example.com.", dns.TypeA)},
		{"refused", query("example.org.", dns.TypeA)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponse()
			got := testing.AllocsPerRun(200, func() {
				answer(s.current(), tc.q, client, r)
				r.reset()
			})
			if got != 0 {
				t.Errorf("%v allocations per answer, want 0", got)
			}
		})
	}
}

func benchmarkAnswer(b *testing.B, q *dns.Msg) {
	s, _ := inProcess(b)
	r := newResponse()
	b.ReportAllocs()
	for b.Loop() {
		answer(s.current(), q, client, r)
		r.reset()
	}
}

// BenchmarkAnswerGSLB measures building the answer to a GSLB A query: the
// snapshot lookup, the zone lookup, the routing decision and the records.
func BenchmarkAnswerGSLB(b *testing.B) {
	benchmarkAnswer(b, query("api.gslb.example.com.", dns.TypeA))
}

func BenchmarkAnswerGSLBWithECS(b *testing.B) {
	benchmarkAnswer(b, query("near.gslb.example.com.", dns.TypeA, withECS("10.2.0.0/24")))
}

func BenchmarkAnswerNXDOMAIN(b *testing.B) {
	benchmarkAnswer(b, query("nope.gslb.example.com.", dns.TypeA))
}

// BenchmarkAnswerAndPack adds packing to the wire format, which allocates
// inside miekg/dns (its compression map).
func BenchmarkAnswerAndPack(b *testing.B) {
	s, _ := inProcess(b)
	q := query("api.gslb.example.com.", dns.TypeA)
	r := newResponse()
	b.ReportAllocs()
	for b.Loop() {
		answer(s.current(), q, client, r)
		if _, err := r.pack(udp, 1232); err != nil {
			b.Fatal(err)
		}
		r.reset()
	}
}

// BenchmarkAnswerNewSnapshot measures the answer right after a health
// change, which indexes the new snapshot once.
func BenchmarkAnswerNewSnapshot(b *testing.B) {
	s, engine := inProcess(b)
	q := query("api.gslb.example.com.", dns.TypeA)
	r := newResponse()
	up := false
	b.ReportAllocs()
	for b.Loop() {
		engine.UpdateEndpoint(routing.EndpointUpdate{DC: "dc2", Service: "api", Endpoint: "127.0.0.1:2", Up: up})
		up = !up
		answer(s.current(), q, client, r)
		r.reset()
	}
}

// BenchmarkUDPRoundTrip is a full query over loopback UDP: client pack,
// socket, miekg's server loop, the answer, and back.
func BenchmarkUDPRoundTrip(b *testing.B) {
	f := start(b, "")
	c := &dns.Client{Net: "udp"}
	conn, err := c.Dial(f.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := query("api.gslb.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if err := conn.WriteMsg(q); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.ReadMsg(); err != nil {
			b.Fatal(err)
		}
	}
}
