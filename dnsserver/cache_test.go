package dnsserver

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestAnswerCache drives the UDP path with a worker's cache: a remembered
// query answers the same bytes under its own ID, the answer still follows
// the client and the routing snapshot, and metrics count every query.
func TestAnswerCache(t *testing.T) {
	s, engine := inProcess(t)
	c := newAnswerCache()
	var req dns.Msg
	r := newResponse()
	ask := func(m *dns.Msg, from string) *dns.Msg {
		t.Helper()
		b, served := s.handlePacket(packet(t, m), netip.MustParseAddr(from), time.Now(), c, &req, r)
		defer r.reset()
		if !served {
			t.Fatalf("%v: not served", m.Question)
		}
		var resp dns.Msg
		if err := resp.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if resp.Id != m.Id {
			t.Fatalf("id %d, want %d", resp.Id, m.Id)
		}
		return &resp
	}

	api := query("api.gslb.example.com.", dns.TypeA)
	first := ask(api, "198.51.100.7")
	wantAddrs(t, first, "192.0.2.1")
	api.Id++
	wantAddrs(t, ask(api, "198.51.100.7"), "192.0.2.1")
	if len(c.queries) != 1 || len(c.queries[string(packet(t, api)[2:])].answers) != 1 {
		t.Fatalf("cache holds %d queries, want the one with one answer", len(c.queries))
	}

	// The nearest policy answers per client from one remembered query.
	near := query("near.gslb.example.com.", dns.TypeA)
	for range 3 {
		wantAddrs(t, ask(near, "10.1.0.9"), "192.0.2.1")
		wantAddrs(t, ask(near, "10.2.0.9"), "192.0.2.2")
	}
	if n := len(c.queries[string(packet(t, near)[2:])].answers); n != 2 {
		t.Errorf("%d answers kept for near, want one per datacenter", n)
	}

	// A drain shows in the very next answer.
	if err := engine.Drain("dc1", routing.Drain{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ask(api, "198.51.100.7"), "192.0.2.2")
	if err := engine.Undrain("dc1", "test"); err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ask(api, "198.51.100.7"), "192.0.2.1")

	// Answers from the cache are counted as any other.
	var dc1 *dcData
	for _, sd := range s.current().zone.services {
		if sd.name == "api" {
			dc1 = sd.dcs["dc1"]
		}
	}
	before := testutil.ToFloat64(dc1.answers)
	for range 5 {
		ask(api, "198.51.100.7")
	}
	if got := testutil.ToFloat64(dc1.answers) - before; got != 5 {
		t.Errorf("%v GSLB answers counted for 5 queries", got)
	}

	// A flood of distinct names keeps the cache bounded.
	for i := range 3 * cacheQueries {
		ask(query("n"+strconv.Itoa(i)+".gslb.example.com.", dns.TypeA), "198.51.100.7")
	}
	if len(c.queries) > cacheQueries {
		t.Errorf("cache holds %d queries, more than %d", len(c.queries), cacheQueries)
	}
}
