package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Adaptive timeouts follow each endpoint's recent latency, as Finagle's and
// Envoy's do: a try waits a multiple of the endpoint's recent high
// percentile, never less than a floor, never more than the configured bound.
const (
	latencyRing = 64 // samples kept per endpoint
	// latencyMinSamples answers must be seen before an endpoint's estimate
	// is used, and dialMinSamples connects (pooled connections make dials
	// rare); until then the configured bound applies.
	latencyMinSamples = 16
	dialMinSamples    = 4
	// dialMultiple times the recent p98 connect latency, at least
	// dialTimeoutFloor, is how long a dial may take before it is given up
	// for another endpoint. A try's multiple and floor are
	// retry.timeout_multiplier and retry.timeout_floor.
	dialMultiple     = 4
	dialTimeoutFloor = 100 * time.Millisecond
)

// latency is a ring of an endpoint's recent latencies and the high
// percentile computed from them every few samples. Safe for concurrent use;
// a sample racing another may overwrite it, which only makes the estimate
// approximate.
type latency struct {
	n    atomic.Uint64
	ring [latencyRing]atomic.Int64
	high atomic.Int64 // the recent p98 in nanoseconds; 0 until known
}

// observe records one latency.
func (l *latency) observe(d time.Duration) {
	if d <= 0 {
		d = 1
	}
	i := l.n.Add(1)
	l.ring[(i-1)%latencyRing].Store(int64(d))
	if i <= latencyRing || i%8 == 0 {
		l.high.Store(l.percentile(i))
	}
}

// percentile returns the second largest of the samples held (about p98 of
// 64), which one outlier does not move; the largest while only one is held.
func (l *latency) percentile(n uint64) int64 {
	if n > latencyRing {
		n = latencyRing
	}
	var a, b int64 // largest, second largest
	for i := uint64(0); i < n; i++ {
		v := l.ring[i].Load()
		switch {
		case v > a:
			a, b = v, a
		case v > b:
			b = v
		}
	}
	if b == 0 {
		return a
	}
	return b
}

// bound returns multiple times the recent high percentile, at least floor
// and at most limit; limit while fewer than minSamples are known.
func (l *latency) bound(floor, limit time.Duration, multiple int, minSamples uint64) time.Duration {
	h := time.Duration(l.high.Load())
	if h == 0 || l.n.Load() < minSamples {
		return limit
	}
	d := max(h*time.Duration(multiple), floor)
	return min(d, limit)
}

// connectLatency keeps the connect latency of each address the proxy dials.
// Entries are few (one per endpoint address) and kept for the process's
// life; an address a reload removed costs one small struct.
type connectLatency struct{ m sync.Map }

func (c *connectLatency) of(addr string) *latency {
	if l, ok := c.m.Load(addr); ok {
		return l.(*latency)
	}
	l, _ := c.m.LoadOrStore(addr, &latency{})
	return l.(*latency)
}
