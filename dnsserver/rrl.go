package dnsserver

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// rrlAction is what response rate limiting does with one UDP response.
type rrlAction int

const (
	rrlAllow rrlAction = iota
	rrlDrop            // send nothing
	rrlSlip            // send an empty truncated response so a real client retries over TCP
)

// The limiter's table is fixed in size: rrlSets sets of rrlWays entries
// (32768 client networks, about 1 MiB), so a flood of spoofed sources costs
// no memory, only the eviction of the networks least in debt.
const (
	rrlSets = 8192
	rrlWays = 4
)

// limiter is response rate limiting (RRL) per client network: a GCRA token
// bucket per network of ipv4_prefix_len / ipv6_prefix_len bits. A network
// may send responses_per_second responses per second with a burst of one
// second's worth; beyond that every slip-th response slips (goes out
// truncated) and the rest are dropped.
//
// The table is set-associative and each set has its own lock, so concurrent
// queries from different networks rarely contend. All methods are safe for
// concurrent use; a limiter must not be copied.
type limiter struct {
	params atomic.Pointer[rrlParams] // nil when RRL is off
	seed   uint64
	epoch  time.Time
	sets   [rrlSets]rrlSet
}

type rrlParams struct {
	cfg config.RRL
	// interval is the time one response costs; burst is how far ahead of
	// now a network's theoretical arrival time may run.
	interval, burst int64
}

type rrlSet struct {
	mu   sync.Mutex
	ways [rrlWays]rrlEntry
}

// rrlEntry is one client network's bucket. An entry whose tat is not after
// now holds no information (its bucket is full), so evicting it is free.
type rrlEntry struct {
	key [16]byte
	// tat is the theoretical arrival time (GCRA) in nanoseconds since the
	// limiter's epoch; 0 marks an unused entry.
	tat int64
	// limited counts this network's limited responses, for the slip ratio.
	limited uint32
}

func newLimiter() *limiter {
	// The epoch lies a second in the past so that no real time is 0, which
	// marks unused entries.
	return &limiter{seed: rand.Uint64(), epoch: time.Now().Add(-time.Second)}
}

// configure applies the RRL settings of a (re)loaded configuration. Buckets
// survive a reload: the state is absolute time, valid under any rate.
func (l *limiter) configure(c config.RRL) {
	if c.ResponsesPerSecond <= 0 {
		l.params.Store(nil)
		return
	}
	if p := l.params.Load(); p != nil && p.cfg == c {
		return
	}
	c.Slip = max(c.Slip, 0)
	c.IPv4PrefixLen = min(max(orDefault(c.IPv4PrefixLen, 24), 0), 32)
	c.IPv6PrefixLen = min(max(orDefault(c.IPv6PrefixLen, 56), 0), 128)
	interval := int64(time.Second) / int64(c.ResponsesPerSecond)
	l.params.Store(&rrlParams{cfg: c, interval: interval, burst: int64(time.Second)})
}

// enabled reports whether responses are rate limited at all.
func (l *limiter) enabled() bool { return l.params.Load() != nil }

// check accounts one response to client at now and says what to do with it.
func (l *limiter) check(client netip.Addr, now time.Time) rrlAction {
	p := l.params.Load()
	if p == nil || !client.IsValid() {
		return rrlAllow
	}
	return l.checkAt(p, client, int64(now.Sub(l.epoch)))
}

func (l *limiter) checkAt(p *rrlParams, client netip.Addr, now int64) rrlAction {
	key := p.key(client)
	set := &l.sets[l.hash(key)%rrlSets]
	set.mu.Lock()
	defer set.mu.Unlock()

	e := set.find(key)
	tat := max(e.tat, now)
	if tat+p.interval-now <= p.burst {
		e.tat = tat + p.interval
		return rrlAllow
	}
	e.limited++
	if p.cfg.Slip > 0 && e.limited%uint32(p.cfg.Slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// find returns key's entry in the set, taking over the entry least in debt
// (the oldest theoretical arrival time) when key has none.
func (s *rrlSet) find(key [16]byte) *rrlEntry {
	victim := &s.ways[0]
	for i := range s.ways {
		e := &s.ways[i]
		if e.tat != 0 && e.key == key {
			return e
		}
		if e.tat < victim.tat {
			victim = e
		}
	}
	*victim = rrlEntry{key: key}
	return victim
}

// key is the client's network: its address masked to the configured prefix
// length, IPv4 in its IPv4-mapped IPv6 form so both families share one table.
func (p *rrlParams) key(client netip.Addr) [16]byte {
	client = client.Unmap()
	bits := p.cfg.IPv6PrefixLen
	if client.Is4() {
		bits = p.cfg.IPv4PrefixLen
	}
	pfx, err := client.Prefix(bits)
	if err != nil {
		return client.As16()
	}
	return pfx.Addr().As16()
}

// hash mixes the key with a per-process seed, so that an attacker cannot
// aim many networks at one set to evict a victim's bucket.
func (l *limiter) hash(key [16]byte) uint64 {
	h := l.seed ^ binary.LittleEndian.Uint64(key[:8])
	h = mix(h) ^ binary.LittleEndian.Uint64(key[8:])
	return mix(h)
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// clientNetwork is the network of client under cfg's prefix lengths
// (24 and 56 bits when unset), as RRL groups clients.
func clientNetwork(cfg config.RRL, client netip.Addr) netip.Prefix {
	client = client.Unmap()
	bits := orDefault(cfg.IPv6PrefixLen, 56)
	if client.Is4() {
		bits = orDefault(cfg.IPv4PrefixLen, 24)
	}
	p, _ := client.Prefix(bits)
	return p
}
