package dnssec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock tells the time. Tests inject a fake one.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Defaults of Options' zero fields.
const (
	// DefaultValidity is short so that a signed answer naming a datacenter
	// that has since failed cannot be replayed for long, yet long enough to
	// ride out a weekend outage of the signer's refresh: two days.
	DefaultValidity = 48 * time.Hour
	// DefaultBackdate tolerates validators whose clocks run behind.
	DefaultBackdate = time.Hour
	// DefaultCacheSize bounds the lazy signature cache.
	DefaultCacheSize = 10000
)

// Options tune a Signer. The zero value of every field has a useful meaning.
type Options struct {
	// Clock is the time source. If nil, the system clock.
	Clock Clock
	// Validity is how long a signature is valid from now. Zero means
	// DefaultValidity. A signature is refreshed once less than half of it
	// remains.
	Validity time.Duration
	// Backdate is how far before now inception is set. Zero means DefaultBackdate.
	Backdate time.Duration
	// CacheSize bounds the lazily filled cache (entries). Zero means DefaultCacheSize.
	CacheSize int
	// DNSKEYTTL is the TTL of the DNSKEY RRset. Zero means DefaultDNSKEYTTL.
	DNSKEYTTL uint32
	// AlertBefore: Maintain calls OnExpiryClose when the earliest expiry is
	// closer than this. Zero means a quarter of Validity (refresh at half
	// should have happened long before).
	AlertBefore time.Duration
	// OnExpiryClose is called by Maintain with the earliest expiry when it
	// is closer than AlertBefore. If nil, nothing is called.
	OnExpiryClose func(earliest time.Time)
	// Metrics, if not nil, reports this Signer from New on (it replaces the
	// Signer the Metrics reported before, e.g. on a config reload). If nil,
	// nothing is reported.
	Metrics *Metrics
}

// Signer signs RRsets and answers of one zone. It is safe for concurrent use;
// readers of pre-signed RRsets take no lock.
type Signer struct {
	zone   string
	keys   []*Key // keys[0] signs; all are published
	opts   Options
	dnskey []dns.RR // the DNSKEY RRset, owner zone

	seed      maphash.Seed
	presigned atomic.Pointer[map[string]*entry]
	lazy      []*lruShard
	// nx caches the NSECs of nonexistent names apart from lazy, bounded
	// to a tenth of its size: a flood of random names evicts only its
	// own kind, never a signature of data that exists.
	nx []*lruShard

	signs atomic.Uint64
}

// entry holds the current signatures of one RRset. The RRset is kept so the
// entry can be re-signed by Maintain.
type entry struct {
	key   string
	rrset []dns.RR // lowercased owner, as signed
	sigs  atomic.Pointer[sigSet]
	all   bool // signed by every key (the DNSKEY RRset)
}

type sigSet struct {
	rrsigs    []*dns.RRSIG
	refreshAt time.Time
	expires   time.Time
}

// New returns a Signer for zone with keys (from LoadKeys; keys[0] signs).
func New(zone string, keys []*Key, opts Options) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("dnssec: no keys")
	}
	zone = dns.CanonicalName(zone)
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Validity <= 0 {
		opts.Validity = DefaultValidity
	}
	if opts.Backdate <= 0 {
		opts.Backdate = DefaultBackdate
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.DNSKEYTTL == 0 {
		opts.DNSKEYTTL = DefaultDNSKEYTTL
	}
	if opts.AlertBefore <= 0 {
		opts.AlertBefore = opts.Validity / 4
	}
	s := &Signer{zone: zone, keys: keys, opts: opts, seed: maphash.MakeSeed()}
	for _, k := range keys {
		if k.DNSKEY.Hdr.Name != zone {
			return nil, fmt.Errorf("dnssec: key %d is for %s, the zone is %s", k.Tag, k.DNSKEY.Hdr.Name, zone)
		}
		dk := *k.DNSKEY
		dk.Hdr.Ttl = opts.DNSKEYTTL
		s.dnskey = append(s.dnskey, &dk)
	}
	const shards = 16
	per := (opts.CacheSize + shards - 1) / shards
	for range shards {
		s.lazy = append(s.lazy, newLRUShard(per))
		s.nx = append(s.nx, newLRUShard(max(1, per/10)))
	}
	empty := map[string]*entry{}
	s.presigned.Store(&empty)
	if err := s.Presign(nil); err != nil {
		return nil, err
	}
	if opts.Metrics != nil {
		opts.Metrics.cur.Store(s)
	}
	return s, nil
}

// Zone returns the zone's canonical name.
func (s *Signer) Zone() string { return s.zone }

// DNSKEYs returns the DNSKEY RRset (every key, the active one first), to be
// served at the apex like any other record. The caller must not modify it.
func (s *Signer) DNSKEYs() []dns.RR { return s.dnskey }

// DS returns the DS records (SHA-256) of every key, for the parent zone.
func (s *Signer) DS() []*dns.DS {
	out := make([]*dns.DS, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k.DS())
	}
	return out
}

// Presign signs rrsets (each one RRset: same owner, type and class) and
// publishes them as the pre-signed set, replacing the previous one. RRsets
// whose signatures are already current are not signed again. The DNSKEY
// RRset is always included. Call it when a snapshot or config is published,
// with every RRset that snapshot can answer (each subset of DC addresses at
// each TTL).
func (s *Signer) Presign(rrsets [][]dns.RR) error {
	now := s.opts.Clock.Now()
	old := *s.presigned.Load()
	next := make(map[string]*entry, len(rrsets)+1)
	all := append([][]dns.RR{s.dnskey}, rrsets...)
	for _, set := range all {
		if len(set) == 0 {
			continue
		}
		key := cacheKey(set)
		if _, dup := next[key]; dup {
			continue
		}
		if e, ok := old[key]; ok && now.Before(e.sigs.Load().refreshAt) {
			next[key] = e
			continue
		}
		e := newEntry(key, set)
		ss, err := s.sign(e, now)
		if err != nil {
			return err
		}
		e.sigs.Store(ss)
		next[key] = e
	}
	s.presigned.Store(&next)
	return nil
}

// Sign returns the RRSIG records of rrset (one RRset: same owner, type and
// class; the TTL of its first record is the one signed), from the pre-signed
// set or the lazy cache, signing on a miss or when the cached signatures are
// due for refresh. The RRSIGs' owner is written in rrset's case (a query's
// 0x20 case); the signature covers the canonical lowercase owner, which is
// what validators compute (RFC 4034 §6.2), so the case does not matter.
// The returned records are new and the caller's to keep.
func (s *Signer) Sign(rrset []dns.RR) ([]dns.RR, error) {
	return s.signCached(rrset, s.lazy)
}

// signCached is Sign with the lazy cache to use (nil: none).
func (s *Signer) signCached(rrset []dns.RR, cache []*lruShard) ([]dns.RR, error) {
	if len(rrset) == 0 {
		return nil, nil
	}
	owner := rrset[0].Header().Name
	now := s.opts.Clock.Now()
	key := cacheKey(rrset)
	var e *entry
	if pe, ok := (*s.presigned.Load())[key]; ok {
		e = pe
	} else if cache != nil {
		sh := s.shard(cache, key)
		if le, ok := sh.get(key); ok {
			e = le
		} else {
			e = newEntry(key, rrset)
			ss, err := s.sign(e, now)
			if err != nil {
				return nil, err
			}
			e.sigs.Store(ss)
			sh.add(e)
		}
	} else {
		e = newEntry(key, rrset)
		ss, err := s.sign(e, now)
		if err != nil {
			return nil, err
		}
		e.sigs.Store(ss)
	}
	ss := e.sigs.Load()
	if !now.Before(ss.refreshAt) {
		// Concurrent refreshes of one entry may both sign; either result is valid.
		fresh, err := s.sign(e, now)
		if err != nil {
			return nil, err
		}
		e.sigs.Store(fresh)
		ss = fresh
	}
	out := make([]dns.RR, len(ss.rrsigs))
	for i, sig := range ss.rrsigs {
		c := *sig
		c.Hdr.Name = owner
		out[i] = &c
	}
	return out, nil
}

// newEntry holds a canonical copy of rrset, never the caller's records.
func newEntry(key string, rrset []dns.RR) *entry {
	set := canonicalSet(rrset)
	return &entry{key: key, rrset: set, all: set[0].Header().Rrtype == dns.TypeDNSKEY}
}

// sign computes fresh signatures for e at now.
func (s *Signer) sign(e *entry, now time.Time) (*sigSet, error) {
	keys := s.keys[:1]
	if e.all {
		keys = s.keys
	}
	inception := now.Add(-s.opts.Backdate)
	expires := now.Add(s.opts.Validity)
	ss := &sigSet{refreshAt: now.Add(s.opts.Validity / 2), expires: expires}
	for _, k := range keys {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: e.rrset[0].Header().Ttl},
			Algorithm:  Algorithm,
			KeyTag:     k.Tag,
			SignerName: s.zone,
			Inception:  uint32(inception.Unix()),
			Expiration: uint32(expires.Unix()),
		}
		if err := sig.Sign(k.Signer, e.rrset); err != nil {
			return nil, fmt.Errorf("dnssec: sign %s %s: %w", e.rrset[0].Header().Name, dns.TypeToString[e.rrset[0].Header().Rrtype], err)
		}
		s.signs.Add(1)
		if s.opts.Metrics != nil {
			s.opts.Metrics.signs.Add(1)
		}
		ss.rrsigs = append(ss.rrsigs, sig)
	}
	return ss, nil
}

// canonicalSet copies rrset with the owner lowercased and every TTL set to
// the first record's, so the signature and the cache key see one form.
func canonicalSet(rrset []dns.RR) []dns.RR {
	h0 := rrset[0].Header()
	name := dns.CanonicalName(h0.Name)
	out := make([]dns.RR, len(rrset))
	for i, rr := range rrset {
		c := dns.Copy(rr)
		c.Header().Name = name
		c.Header().Ttl = h0.Ttl
		out[i] = c
	}
	return out
}

// cacheKey names an RRset by owner (lowercased), type, class, the TTL of
// its first record and its sorted wire rdata: any difference in what is
// signed is a different key. It reads rrset without copying it.
func cacheKey(rrset []dns.RR) string {
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	buf := (*bp)[:cap(*bp)]
	h := rrset[0].Header()
	name := dns.CanonicalName(h.Name)
	var rdata [8][]byte
	parts := rdata[:0]
	// Msg.PackBuffer, unlike PackRR, writes nothing into the records: they
	// are shared with concurrent queries.
	msg := dns.Msg{Answer: rrset}
	packed, err := msg.PackBuffer(buf)
	if err != nil {
		// Not packable here (too large): fall back to the text form.
		return name + " " + rrsetString(rrset)
	}
	off := 12 // the message header
	for range rrset {
		// Skip the owner name and the 10 fixed header bytes of the record.
		_, n, err := dns.UnpackDomainName(packed, off)
		if err != nil || n+10 > len(packed) {
			return name + " " + rrsetString(rrset)
		}
		end := n + 10 + int(binary.BigEndian.Uint16(packed[n+8:]))
		if end > len(packed) {
			return name + " " + rrsetString(rrset)
		}
		parts = append(parts, packed[n+10:end])
		off = end
	}
	slices.SortFunc(parts, bytes.Compare)
	var b strings.Builder
	b.Grow(len(name) + 16 + off)
	b.WriteString(name)
	b.WriteByte(0)
	var fixed [8]byte
	binary.BigEndian.PutUint16(fixed[0:], h.Rrtype)
	binary.BigEndian.PutUint16(fixed[2:], h.Class)
	binary.BigEndian.PutUint32(fixed[4:], h.Ttl)
	b.Write(fixed[:])
	for _, p := range parts {
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(p)))
		b.Write(l[:])
		b.Write(p)
	}
	return b.String()
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, dns.MaxMsgSize); return &b }}

func rrsetString(rrset []dns.RR) string {
	h := rrset[0].Header()
	rdata := make([]string, len(rrset))
	for i, rr := range rrset {
		rdata[i] = strings.TrimPrefix(rr.String(), rr.Header().String())
	}
	sort.Strings(rdata)
	return strconv.Itoa(int(h.Rrtype)) + " " + strconv.Itoa(int(h.Class)) + " " + strconv.FormatUint(uint64(h.Ttl), 10) + "\x00" + strings.Join(rdata, "\x00")
}

func (s *Signer) shard(cache []*lruShard, key string) *lruShard {
	return cache[maphash.String(s.seed, key)%uint64(len(cache))]
}

// EarliestExpiry returns the earliest expiration of any signature the Signer
// holds (pre-signed or cached) and would serve. Entries due for refresh are
// re-signed before they are served, so after Maintain this is at least half
// a validity away unless signing fails.
func (s *Signer) EarliestExpiry() time.Time {
	var min time.Time
	visit := func(e *entry) {
		if t := e.sigs.Load().expires; min.IsZero() || t.Before(min) {
			min = t
		}
	}
	for _, e := range *s.presigned.Load() {
		visit(e)
	}
	for _, sh := range s.lazy {
		sh.each(visit)
	}
	for _, sh := range s.nx {
		sh.each(visit)
	}
	return min
}

// Maintain re-signs pre-signed RRsets due for refresh, drops cached entries
// due for refresh (they are signed again when next asked for), and calls
// OnExpiryClose when the earliest expiry is closer than AlertBefore. It
// returns the earliest expiry. Run calls it periodically.
func (s *Signer) Maintain() (time.Time, error) {
	now := s.opts.Clock.Now()
	var errs []error
	for _, e := range *s.presigned.Load() {
		if !now.Before(e.sigs.Load().refreshAt) {
			ss, err := s.sign(e, now)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.sigs.Store(ss)
		}
	}
	for _, sh := range append(slices.Clip(s.lazy), s.nx...) {
		sh.removeIf(func(e *entry) bool { return !now.Before(e.sigs.Load().refreshAt) })
	}
	earliest := s.EarliestExpiry()
	if s.opts.OnExpiryClose != nil && !earliest.IsZero() && earliest.Sub(now) < s.opts.AlertBefore {
		s.opts.OnExpiryClose(earliest)
	}
	return earliest, errors.Join(errs...)
}

// Run calls Maintain every interval until ctx is done. Errors go to onErr
// (if not nil). It returns when ctx is done; its caller owns the goroutine.
func (s *Signer) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Maintain(); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// CacheLen returns the number of lazily cached RRsets (for tests and the status page).
func (s *Signer) CacheLen() int {
	n := 0
	for _, sh := range s.lazy {
		n += sh.len()
	}
	return n
}

// Metrics are the package's Prometheus metrics. They outlive a Signer: New
// with Options.Metrics makes the new Signer the one reported, so a reload
// that builds a new Signer keeps one set of series. Safe for concurrent use.
type Metrics struct {
	cur   atomic.Pointer[Signer]
	signs atomic.Uint64
}

// NewMetrics registers the metrics on r:
// coopr_gslb_dnssec_signature_earliest_expiry_timestamp_seconds (0 before
// any Signer), coopr_gslb_dnssec_signatures_total and
// coopr_gslb_dnssec_signature_cache_entries.
func NewMetrics(r prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coopr_gslb_dnssec_signature_earliest_expiry_timestamp_seconds",
			Help: "Unix time of the earliest expiration of any DNSSEC signature held for serving (0: not signing).",
		}, func() float64 {
			s := m.cur.Load()
			if s == nil {
				return 0
			}
			t := s.EarliestExpiry()
			if t.IsZero() {
				return 0
			}
			return float64(t.Unix())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coopr_gslb_dnssec_signatures_total",
			Help: "DNSSEC signatures computed (pre-signing, cache misses and refreshes).",
		}, func() float64 { return float64(m.signs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coopr_gslb_dnssec_signature_cache_entries",
			Help: "RRsets in the lazily filled DNSSEC signature cache.",
		}, func() float64 {
			if s := m.cur.Load(); s != nil {
				return float64(s.CacheLen())
			}
			return 0
		}),
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("dnssec: register metrics: %w", err)
		}
	}
	return m, nil
}
