package dnsserver

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkUDPThroughput is the server under load over loopback, the way
// dnsperf drives it: 4 client sockets, each keeping 25 queries in flight
// (GSLB names, a static name and NXDOMAIN). It reports queries per second;
// ns/op is the time per query with the client's own cost included, on the
// same CPUs.
func BenchmarkUDPThroughput(b *testing.B) {
	f := start(b, "")
	const clients, window = 4, 25
	var queries [][]byte
	for _, q := range []*dns.Msg{
		query("api.gslb.example.com.", dns.TypeA), query("all.gslb.example.com.", dns.TypeA),
		query("api.gslb.example.com.", dns.TypeA, withEDNS(1232)), query("txt.gslb.example.com.", dns.TypeTXT),
		query("nope.gslb.example.com.", dns.TypeA),
	} {
		queries = append(queries, packet(b, q))
	}
	server, err := net.ResolveUDPAddr("udp", f.addr)
	if err != nil {
		b.Fatal(err)
	}
	var conns []*net.UDPConn
	for range clients {
		c, err := net.DialUDP("udp", nil, server)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var sent, lost atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			buf := make([]byte, 4096)
			inFlight := 0
			for i := 0; ; i++ {
				for inFlight < window && sent.Add(1) <= int64(b.N) {
					c.Write(queries[i%len(queries)])
					inFlight++
				}
				if inFlight == 0 {
					return
				}
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					lost.Add(int64(inFlight)) // dropped on the way; do not wait for them
					inFlight = 0
					continue
				}
				inFlight--
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "q/s")
	b.ReportMetric(float64(lost.Load())/float64(b.N), "lost/op")
}

// BenchmarkHandlePacket is a UDP worker's work for one datagram without the
// system calls: from the query's bytes to the response's, with its cache
// hit every time (a resolver asking the same name again), without a cache
// (unpack, answer and pack every time), and with a cache missed every time
// (a flood of distinct names).
func BenchmarkHandlePacket(b *testing.B) {
	s, _ := inProcess(b)
	q := packet(b, query("api.gslb.example.com.", dns.TypeA, withEDNS(1232)))
	distinct := make([][]byte, 4*cacheQueries)
	for i := range distinct {
		distinct[i] = packet(b, query("n"+strconv.Itoa(i)+".gslb.example.com.", dns.TypeA, withEDNS(1232)))
	}
	for _, bc := range []struct {
		name    string
		cache   *answerCache
		packets [][]byte
	}{
		{"cached", newAnswerCache(), [][]byte{q}},
		{"uncached", nil, [][]byte{q}},
		{"distinct names", newAnswerCache(), distinct},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var req dns.Msg
			r := newResponse()
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if out, _ := s.handlePacket(bc.packets[i%len(bc.packets)], client, now, bc.cache, &req, r); out == nil {
					b.Fatal("no response")
				}
				r.reset()
				i++
			}
		})
	}
}
