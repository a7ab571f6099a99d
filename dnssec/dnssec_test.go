package dnssec

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const zone = "coopr.example.com."

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey(zone)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSigner(t testing.TB, clk Clock, opts Options, keys ...*Key) *Signer {
	t.Helper()
	if len(keys) == 0 {
		keys = []*Key{mustKey(t)}
	}
	opts.Clock = clk
	s, err := New(zone, keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rrs(t testing.TB, ss ...string) []dns.RR {
	out := make([]dns.RR, len(ss))
	for i, s := range ss {
		out[i] = rr(t, s)
	}
	return out
}

// verify checks every RRSIG against the DNSKEY of its key tag at clk's time.
func verify(t *testing.T, s *Signer, set []dns.RR, sigs []dns.RR, at time.Time) {
	t.Helper()
	if len(sigs) == 0 {
		t.Fatalf("no signatures for %v", set)
	}
	for _, r := range sigs {
		sig := r.(*dns.RRSIG)
		var key *dns.DNSKEY
		for _, k := range s.DNSKEYs() {
			if k.(*dns.DNSKEY).KeyTag() == sig.KeyTag {
				key = k.(*dns.DNSKEY)
			}
		}
		if key == nil {
			t.Fatalf("RRSIG key tag %d is no DNSKEY's", sig.KeyTag)
		}
		if err := sig.Verify(key, set); err != nil {
			t.Fatalf("Verify %s: %v", sig, err)
		}
		if !sig.ValidityPeriod(at) {
			t.Fatalf("%s is not valid at %s", sig, at)
		}
		if sig.Hdr.Ttl != set[0].Header().Ttl || sig.OrigTtl != set[0].Header().Ttl {
			t.Fatalf("RRSIG TTL %d/orig %d, RRset TTL %d", sig.Hdr.Ttl, sig.OrigTtl, set[0].Header().Ttl)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	k := mustKey(t)
	if k.DNSKEY.Flags != 257 || k.DNSKEY.Algorithm != 13 {
		t.Fatalf("flags %d algorithm %d, want 257 and 13", k.DNSKEY.Flags, k.DNSKEY.Algorithm)
	}
	data := k.Marshal(time.Now())
	got, err := ParseKey("k.key", data)
	if err != nil {
		t.Fatalf("ParseKey: %v\n%s", err, data)
	}
	if got.DNSKEY.String() != k.DNSKEY.String() || got.Tag != k.Tag {
		t.Fatalf("DNSKEY %s, want %s", got.DNSKEY, k.DNSKEY)
	}
	if got.DS().Digest != k.DNSKEY.ToDS(dns.SHA256).Digest {
		t.Fatal("DS of the loaded key differs")
	}

	other := mustKey(t)
	pubOnly, _, _ := strings.Cut(string(data), "Private-key-format:")
	_, privOther, _ := strings.Cut(string(other.Marshal(time.Now())), "Private-key-format:")
	for name, bad := range map[string]string{
		"mixed halves": pubOnly + "Private-key-format:" + privOther,
		"no private":   pubOnly,
		"no dnskey":    "Private-key-format:" + privOther,
		"not a dnskey": "coopr.example.com. 3600 IN TXT \"x\"\n",
		"two dnskeys":  pubOnly + other.DNSKEY.String() + "\nPrivate-key-format:" + privOther,
	} {
		if _, err := ParseKey(name, []byte(bad)); err == nil {
			t.Errorf("%s: ParseKey accepted it", name)
		}
	}
}

func TestWriteKeyFileRefusesOverwrite(t *testing.T) {
	path := t.TempDir() + "/k.key"
	k := mustKey(t)
	if err := WriteKeyFile(path, k, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, mustKey(t), time.Now()); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second write: %v, want a refusal", err)
	}
	got, err := LoadKeyFile(path)
	if err != nil || got.Tag != k.Tag {
		t.Fatalf("file holds %v (%v), want the first key", got, err)
	}
	if _, err := LoadKeys("other.example.", []string{path}); err == nil {
		t.Fatal("LoadKeys accepted a key of another zone")
	}
}

func TestSignVerifies(t *testing.T) {
	clk := newClock()
	s := mustSigner(t, clk, Options{})
	cases := []struct {
		name string
		set  []dns.RR
	}{
		{"A of two DCs", rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10", "api.coopr.example.com. 20 IN A 192.0.2.20")},
		{"AAAA", rrs(t, "api.coopr.example.com. 20 IN AAAA 2001:db8::20")},
		{"0x20 owner", rrs(t, "aPi.CoOpr.example.COM. 20 IN A 192.0.2.10")},
		{"apex SOA", rrs(t, "coopr.example.com. 3600 IN SOA ns1.coopr.example.com. hostmaster.coopr.example.com. 1 3600 600 604800 60")},
		{"apex NS", rrs(t, "coopr.example.com. 3600 IN NS ns1.coopr.example.com.")},
		{"CNAME", rrs(t, "www.coopr.example.com. 300 IN CNAME coopr.example.com.")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sigs, err := s.Sign(tc.set)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, s, tc.set, sigs, clk.Now())
			if got := sigs[0].Header().Name; got != tc.set[0].Header().Name {
				t.Errorf("RRSIG owner %q, want the answer's case %q", got, tc.set[0].Header().Name)
			}
			sig := sigs[0].(*dns.RRSIG)
			if in := time.Unix(int64(sig.Inception), 0); !in.Equal(clk.Now().Add(-DefaultBackdate)) {
				t.Errorf("inception %s, want now - %s", in, DefaultBackdate)
			}
			if ex := time.Unix(int64(sig.Expiration), 0); !ex.Equal(clk.Now().Add(DefaultValidity)) {
				t.Errorf("expiration %s, want now + %s", ex, DefaultValidity)
			}
		})
	}
	// The 0x20 case shares the lowercase entry: no second signature.
	before := s.signs.Load()
	if _, err := s.Sign(rrs(t, "API.coopr.example.com. 20 IN A 192.0.2.10")); err != nil {
		t.Fatal(err)
	}
	if s.signs.Load() != before {
		t.Error("a different query-name case signed again instead of using the cache")
	}
}

func TestDNSKEYSignedByEveryKey(t *testing.T) {
	clk := newClock()
	active, next := mustKey(t), mustKey(t)
	s := mustSigner(t, clk, Options{DNSKEYTTL: 600}, active, next)
	set := s.DNSKEYs()
	if len(set) != 2 || set[0].Header().Ttl != 600 {
		t.Fatalf("DNSKEY RRset %v, want both keys at TTL 600", set)
	}
	sigs, err := s.Sign(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 2 {
		t.Fatalf("%d RRSIGs over DNSKEY, want one per key", len(sigs))
	}
	verify(t, s, set, sigs, clk.Now())
	// Other RRsets: the active key only.
	a := rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10")
	sigs, _ = s.Sign(a)
	if len(sigs) != 1 || sigs[0].(*dns.RRSIG).KeyTag != active.Tag {
		t.Fatalf("A RRset signed by %v, want the active key %d only", sigs, active.Tag)
	}
	if len(s.DS()) != 2 {
		t.Fatal("DS of both keys expected")
	}
}

// TestCacheKey: whatever differs in what is signed never shares a signature.
func TestCacheKey(t *testing.T) {
	clk := newClock()
	s := mustSigner(t, clk, Options{})
	both := rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10", "api.coopr.example.com. 20 IN A 192.0.2.20")
	variants := map[string][]dns.RR{
		"west only (failover)":           rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.20"),
		"east only":                      rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10"),
		"TTL from a new failover_budget": rrs(t, "api.coopr.example.com. 7 IN A 192.0.2.10", "api.coopr.example.com. 7 IN A 192.0.2.20"),
		"other name":                     rrs(t, "web.coopr.example.com. 20 IN A 192.0.2.10", "web.coopr.example.com. 20 IN A 192.0.2.20"),
		"other type":                     rrs(t, "api.coopr.example.com. 20 IN AAAA 2001:db8::10"),
	}
	if _, err := s.Sign(both); err != nil {
		t.Fatal(err)
	}
	for name, set := range variants {
		t.Run(name, func(t *testing.T) {
			sigs, err := s.Sign(set)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, s, set, sigs, clk.Now())
		})
	}
	// The same RRset in another order is one entry.
	before := s.signs.Load()
	rev := []dns.RR{both[1], both[0]}
	sigs, _ := s.Sign(rev)
	verify(t, s, rev, sigs, clk.Now())
	if s.signs.Load() != before {
		t.Error("reordered rdata signed again; the key must sort rdata")
	}
	if got := cacheKey(both); got == cacheKey(variants["TTL from a new failover_budget"]) {
		t.Error("a TTL change shares the cache key")
	}
}

func TestPresignAvoidsSigningOnLookup(t *testing.T) {
	clk := newClock()
	s := mustSigner(t, clk, Options{})
	sets := [][]dns.RR{
		rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10", "api.coopr.example.com. 20 IN A 192.0.2.20"),
		rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10"),
		rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.20"),
	}
	if err := s.Presign(sets); err != nil {
		t.Fatal(err)
	}
	signed := s.signs.Load()
	for _, set := range sets {
		sigs, err := s.Sign(set)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, s, set, sigs, clk.Now())
	}
	if s.signs.Load() != signed || s.CacheLen() != 0 {
		t.Fatalf("lookups of pre-signed RRsets signed %d times, cached %d", s.signs.Load()-signed, s.CacheLen())
	}
	// Publishing the same sets again re-uses the current signatures.
	if err := s.Presign(sets); err != nil {
		t.Fatal(err)
	}
	if s.signs.Load() != signed {
		t.Error("Presign of unchanged RRsets signed again")
	}
}

func TestRefreshWithClock(t *testing.T) {
	clk := newClock()
	var alerts []time.Time
	s := mustSigner(t, clk, Options{Validity: 48 * time.Hour, OnExpiryClose: func(e time.Time) { alerts = append(alerts, e) }})
	pre := rrs(t, "api.coopr.example.com. 20 IN A 192.0.2.10")
	lazy := rrs(t, "web.coopr.example.com. 20 IN A 192.0.2.10")
	if err := s.Presign([][]dns.RR{pre}); err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	first, _ := s.Sign(lazy)
	if got, want := s.EarliestExpiry(), start.Add(48*time.Hour); !got.Equal(want) {
		t.Fatalf("earliest expiry %s, want %s", got, want)
	}

	// Before half the validity: the same signature.
	clk.Advance(23 * time.Hour)
	again, _ := s.Sign(lazy)
	if again[0].(*dns.RRSIG).Expiration != first[0].(*dns.RRSIG).Expiration {
		t.Fatal("re-signed before half the validity was used")
	}
	// Past half: a lookup re-signs.
	clk.Advance(2 * time.Hour)
	fresh, _ := s.Sign(lazy)
	if got, want := time.Unix(int64(fresh[0].(*dns.RRSIG).Expiration), 0), clk.Now().Add(48*time.Hour); !got.Equal(want) {
		t.Fatalf("lookup past half validity: expiration %s, want %s", got, want)
	}
	verify(t, s, lazy, fresh, clk.Now())
	// Maintain re-signs the pre-signed set without a lookup.
	if got := s.EarliestExpiry(); !got.Equal(start.Add(48 * time.Hour)) {
		t.Fatalf("before Maintain: earliest %s, want the pre-signed one %s", got, start.Add(48*time.Hour))
	}
	earliest, err := s.Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(48 * time.Hour); !earliest.Equal(want) || !s.EarliestExpiry().Equal(want) {
		t.Fatalf("after Maintain: earliest %s, want %s", earliest, want)
	}
	if len(alerts) != 0 {
		t.Fatalf("alerts %v while signatures are fresh", alerts)
	}
	// A cached entry due for refresh is dropped by Maintain, not kept to expire.
	clk.Advance(25 * time.Hour)
	if _, err := s.Maintain(); err != nil {
		t.Fatal(err)
	}
	if s.CacheLen() != 0 {
		t.Fatalf("cache holds %d entries due for refresh after Maintain", s.CacheLen())
	}
	// The alert hook fires when the earliest expiry is close (here: an
	// alert threshold above what refresh keeps).
	s2 := mustSigner(t, clk, Options{Validity: 48 * time.Hour, AlertBefore: 47 * time.Hour, OnExpiryClose: func(e time.Time) { alerts = append(alerts, e) }})
	clk.Advance(2 * time.Hour)
	if _, err := s2.Maintain(); err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || !alerts[0].Equal(s2.EarliestExpiry()) {
		t.Fatalf("alerts %v, want one with the earliest expiry %s", alerts, s2.EarliestExpiry())
	}
}

func TestLazyCacheBounded(t *testing.T) {
	clk := newClock()
	s := mustSigner(t, clk, Options{CacheSize: 32})
	for i := range 500 {
		set := []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: uint32(i + 1)}, A: []byte{192, 0, 2, 1}}}
		if _, err := s.Sign(set); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.CacheLen(); n > 32+16 || n == 0 {
		t.Fatalf("cache holds %d entries, bound 32 (rounded up per shard)", n)
	}
}

func TestMetrics(t *testing.T) {
	clk := newClock()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	gather := func() (expiry, signs float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "coopr_gslb_dnssec_signature_earliest_expiry_timestamp_seconds":
				expiry = mf.GetMetric()[0].GetGauge().GetValue()
			case "coopr_gslb_dnssec_signatures_total":
				signs = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return expiry, signs
	}
	if e, _ := gather(); e != 0 {
		t.Fatalf("expiry gauge %v before any Signer, want 0", e)
	}
	s := mustSigner(t, clk, Options{Metrics: m})
	e, n := gather()
	if want := float64(s.EarliestExpiry().Unix()); e != want || n != 1 {
		t.Fatalf("gauge %v signatures %v, want %v and 1 (the DNSKEY RRset)", e, n, want)
	}
	// A reload: the new Signer is reported, the counter keeps counting.
	clk.Advance(time.Hour)
	s2 := mustSigner(t, clk, Options{Metrics: m})
	e, n = gather()
	if want := float64(s2.EarliestExpiry().Unix()); e != want || n != 2 {
		t.Fatalf("after reload: gauge %v signatures %v, want %v and 2", e, n, want)
	}
}

func TestRunStops(t *testing.T) {
	s := mustSigner(t, newClock(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, time.Millisecond, nil); close(done) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	<-done
}
