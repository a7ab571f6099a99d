package proxy

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/upstreamtls"
)

// endpoint is the proxy's state of one endpoint of one service in one DC. It
// outlives snapshots: the view of every snapshot that lists the endpoint
// points at the same endpoint, so counters survive health changes and
// reloads. Its fields are atomics because every request may touch them; it
// must not be copied.
type endpoint struct {
	dc, service, addr string

	// inflight counts requests being served, for least_outstanding.
	inflight atomic.Int64
	// fails counts consecutive failed requests.
	fails atomic.Int32
	// ejectedUntil is the UnixNano time until which the endpoint is skipped;
	// zero when it was never ejected.
	ejectedUntil atomic.Int64
	// ejectedAt is the UnixNano time of the last ejection. Active probes
	// that bring the endpoint up after it end the ejection early.
	ejectedAt atomic.Int64
	// wasEjected is set by an ejection and cleared by the first success
	// after it, so that each recovery is reported once.
	wasEjected atomic.Bool
	// lat is the recent time to response headers, for adaptive try
	// timeouts.
	lat latency
}

// endEjectionIfProbedUp ends an ejection when active health checks saw the
// endpoint come up after it was ejected: the probes, not a timer, decide
// when it may take traffic again.
func (e *endpoint) endEjectionIfProbedUp(st routing.EndpointStatus) {
	at := e.ejectedAt.Load()
	if at != 0 && st.Up && st.Since.UnixNano() > at {
		e.ejectedUntil.Store(0)
		e.ejectedAt.Store(0)
	}
}

func (e *endpoint) ejected(now int64) bool { return e.ejectedUntil.Load() > now }

// pool is the state of one service in one DC that outlives snapshots.
type pool struct {
	rr atomic.Uint64 // round-robin cursor
	m  *dcMetrics
}

// balancer picks the endpoint of a DC to try first; the others follow in
// order. Implementations must be safe for concurrent use and not allocate.
type balancer interface {
	first(eps []*endpoint, pl *pool) int
}

var (
	_ balancer = roundRobin{}
	_ balancer = leastOutstanding{}
)

func balancerFor(name string) balancer {
	if name == "least_outstanding" {
		return leastOutstanding{}
	}
	return roundRobin{}
}

// roundRobin takes the endpoints of a DC in turn.
type roundRobin struct{}

func (roundRobin) first(eps []*endpoint, pl *pool) int {
	if len(eps) <= 1 {
		return 0
	}
	return int((pl.rr.Add(1) - 1) % uint64(len(eps)))
}

// leastOutstanding takes the endpoint with the fewest requests in flight,
// starting the scan at a round-robin position so that ties are spread.
type leastOutstanding struct{}

func (leastOutstanding) first(eps []*endpoint, pl *pool) int {
	n := len(eps)
	if n <= 1 {
		return 0
	}
	start := int((pl.rr.Add(1) - 1) % uint64(n))
	best, bestN := start, eps[start].inflight.Load()
	for k := 1; k < n; k++ {
		i := (start + k) % n
		if v := eps[i].inflight.Load(); v < bestN {
			best, bestN = i, v
		}
	}
	return best
}

// view is everything the proxy derives from one routing snapshot, built once
// per snapshot so that requests only read it. It must not be modified after
// it is published.
type view struct {
	snap     *routing.Snapshot
	cfg      *config.Proxy
	services map[*routing.Service]*serviceView
	trusted  []netip.Prefix

	dcHeader   string // "" when off
	accessLog  bool
	cookieName string
	maxBody    int64
	ejection   time.Duration
	slowStart  time.Duration // proxy.slow_start
	maxFails   int32
}

// serviceView is one service of a view, with its settings parsed.
type serviceView struct {
	svc          *routing.Service
	name         string
	retry        config.Retry
	idempotent   []requestPattern
	balancer     balancer
	affinity     bool
	upstreamHost string
	state        *serviceState
	// none counts the service's requests that no DC served.
	none *dcMetrics
	// targets holds a view of every DC of the service, in svc.DCs order.
	targets []*targetView
	// shardMode is the service's shard_routing; shards its shard map, in
	// svc.Shards order, empty when shard routing is off.
	shardMode shardMode
	shards    []shardView
}

// targetView is one DC of a service in a view.
type targetView struct {
	t      *routing.Target
	status *routing.DCStatus
	dc     string
	// eps is aligned with t.Endpoints.
	eps []*endpoint
	// pinnedEps are the healthy endpoints, which a soft-drained DC keeps
	// serving to pinned sessions.
	pinnedEps []*endpoint
	pool      *pool
	// rt carries the requests to this DC's endpoints, with scheme "http" or
	// "https": the Transport of the (service, DC)'s upstream TLS settings.
	rt     *http.Transport
	scheme string
	// dcValue is the DC header's value, shared by every answer: header
	// values are only read after the answer is decorated.
	dcValue []string
	// cookies are the affinity Set-Cookie values pinning to this DC,
	// without and with Secure.
	cookies [2]string
}

// target returns the view of a decision's target.
func (sv *serviceView) target(t *routing.Target) *targetView {
	for _, tv := range sv.targets {
		if tv.t == t {
			return tv
		}
	}
	return nil
}

// requestPattern is a parsed "METHOD /prefix" idempotent declaration.
type requestPattern struct {
	method, prefix string
}

// store holds the state that outlives snapshots, by name. It is only used
// while building a view, under the Proxy's viewMu.
type store struct {
	endpoints map[string]*endpoint     // by dc/service/endpoint
	pools     map[string]*pool         // by dc/service
	services  map[string]*serviceState // by service
}

// currentView returns the view of the current snapshot, building it on the
// first request that sees a new snapshot. Readers never lock; only a rebuild
// takes viewMu, so concurrent first requests build once.
func (p *Proxy) currentView() *view {
	snap := p.opts.Snapshot()
	if v := p.view.Load(); v != nil && v.snap == snap {
		return v
	}
	p.viewMu.Lock()
	defer p.viewMu.Unlock()
	if v := p.view.Load(); v != nil && v.snap == snap {
		return v
	}
	v := p.buildView(snap)
	p.view.Store(v)
	return v
}

// upstreamTLS returns the client TLS configurations of cfg's upstream_tls
// settings, built once per configuration (snapshots of one configuration
// share them, so their Transports and pooled connections survive health
// changes); p.viewMu must be held. The files were read and checked when cfg
// was loaded; should building still fail, the affected endpoints are dialed
// over TLS that verifies against an empty pool, so they fail closed and
// never get the request in clear text.
func (p *Proxy) upstreamTLS(cfg *config.Config) *upstreamtls.Set {
	if p.tlsCfg == cfg {
		return p.tlsSet
	}
	set, err := upstreamtls.Build(cfg)
	if err != nil {
		p.opts.Events.Error("upstream_tls: endpoints fail closed", "error", err)
		set = upstreamtls.FailClosed(cfg)
	}
	p.tlsCfg, p.tlsSet = cfg, set
	return set
}

// Prepare builds the view of snap, when it is the current snapshot, ahead
// of the requests that will need it: the owner calls it as the routing
// engine publishes each snapshot, so no request pays for a rebuild. A
// snapshot already replaced is skipped (the request path builds the current
// one if it ever gets there first).
func (p *Proxy) Prepare(snap *routing.Snapshot) {
	if snap == nil || snap.Config == nil {
		return
	}
	p.viewMu.Lock()
	defer p.viewMu.Unlock()
	if snap != p.opts.Snapshot() {
		return
	}
	if v := p.view.Load(); v != nil && v.snap == snap {
		return
	}
	p.view.Store(p.buildView(snap))
}

// buildView derives a view from snap; p.viewMu must be held.
func (p *Proxy) buildView(snap *routing.Snapshot) *view {
	pc := &snap.Config.Proxy
	v := &view{
		snap:       snap,
		cfg:        pc,
		services:   make(map[*routing.Service]*serviceView, len(snap.Services)),
		trusted:    pc.TrustedNets,
		accessLog:  pc.AccessLog == nil || *pc.AccessLog,
		cookieName: pc.AffinityCookie,
		maxBody:    pc.MaxBufferedBody,
		ejection:   pc.Outlier.Ejection.D(),
		slowStart:  pc.SlowStart.D(),
		maxFails:   int32(pc.Outlier.ConsecutiveFailures),
	}
	if pc.DCHeader != "-" && pc.DCHeader != "" {
		v.dcHeader = http.CanonicalHeaderKey(pc.DCHeader)
	}
	// The config's defaults are filled (config.Load): the front door
	// never repeats them.
	// Keep only the state of what this snapshot names, so that a reload that
	// removes an endpoint forgets it.
	next := store{endpoints: map[string]*endpoint{}, pools: map[string]*pool{}, services: map[string]*serviceState{}}
	usedTLS := map[*tls.Config]bool{}
	tlsSet := p.upstreamTLS(snap.Config)
	for _, svc := range snap.Services {
		sc := svc.Config
		sv := &serviceView{
			svc:          svc,
			name:         svc.Name,
			balancer:     balancerFor(sc.LoadBalancing),
			affinity:     sc.Affinity == "cookie",
			upstreamHost: sc.UpstreamHost,
			shardMode:    parseShardMode(sc.ShardRouting),
		}
		if sc.Retry != nil {
			sv.retry = *sc.Retry
		} else {
			sv.retry = pc.Retry
		}
		for _, s := range sc.Idempotent {
			if m, pre, err := config.ParseRequestPattern(s); err == nil {
				sv.idempotent = append(sv.idempotent, requestPattern{method: m, prefix: pre})
			}
		}
		ss := p.store.services[svc.Name]
		if ss == nil {
			ss = newServiceState(p.metrics, svc.Name)
		}
		next.services[svc.Name] = ss
		sv.state = ss
		sv.none = p.metrics.dc(svc.Name, noLabel)
		for _, st := range svc.DCs {
			pk := st.Name + "/" + svc.Name
			pl := p.store.pools[pk]
			if pl == nil {
				pl = &pool{m: p.metrics.dc(svc.Name, st.Name)}
			}
			next.pools[pk] = pl
			tv := &targetView{t: st.Target, status: st, dc: st.Name, pool: pl, dcValue: []string{st.Name}}
			// With the (service, DC)'s upstream_tls (nil for plain HTTP),
			// forTLS returns its own Transport and the scheme https.
			tc := tlsSet.For(svc.Name, st.Name)
			tv.rt, tv.scheme = p.upstreams.forTLS(tc)
			if tc != nil {
				usedTLS[tc] = true
			}
			tv.cookies[0] = pinCookie(v.cookieName, p.key, st.Name, false)
			tv.cookies[1] = pinCookie(v.cookieName, p.key, st.Name, true)
			for _, addr := range st.Target.Endpoints {
				ek := pk + "/" + addr
				ep := p.store.endpoints[ek]
				if ep == nil {
					ep = &endpoint{dc: st.Name, service: svc.Name, addr: addr}
				}
				for _, es := range st.Endpoints {
					if es.Address == addr {
						ep.endEjectionIfProbedUp(es)
					}
				}
				next.endpoints[ek] = ep
				tv.eps = append(tv.eps, ep)
			}
			// A DC that is not up lists every endpoint, healthy ones first.
			tv.pinnedEps = tv.eps[:min(st.Healthy, len(tv.eps))]
			sv.targets = append(sv.targets, tv)
		}
		p.buildShards(sv)
		v.services[svc] = sv
	}
	// An endpoint the reload removed takes no new requests: its idle
	// connections go (the watcher closes idle connections, which costs the
	// others a dial at most; blocking here would hold up a request). Should
	// a later reload name it again, it gets a new endpoint.
	for k := range p.store.endpoints {
		if _, ok := next.endpoints[k]; !ok {
			p.flushIdle.Store(true)
			break
		}
	}
	p.upstreams.retain(usedTLS)
	p.store = next
	return v
}

// sinceEpoch converts t to the UnixNano clock endpoints keep.
func sinceEpoch(t time.Time) int64 { return t.UnixNano() }

// recordFailure counts a failure of ep and ejects it when it has failed
// v.maxFails times in a row. Of several concurrent failures only one ejects,
// so each ejection is counted and reported once.
func (p *Proxy) recordFailure(v *view, ep *endpoint, pl *pool, reason string) {
	p.recordFailureNow(v, ep, pl, reason, false)
}

// recordFailureNow is recordFailure; at once ejects ep on this failure
// alone: a try that timed out tied a request up for its whole timeout, and
// the next requests should not pay it too.
func (p *Proxy) recordFailureNow(v *view, ep *endpoint, pl *pool, reason string, atOnce bool) {
	if ep.fails.Add(1) < v.maxFails && !atOnce {
		return
	}
	fails := ep.fails.Load()
	now := p.now()
	until := sinceEpoch(now.Add(v.ejection))
	old := ep.ejectedUntil.Load()
	if old > sinceEpoch(now) || !ep.ejectedUntil.CompareAndSwap(old, until) {
		return // already ejected, or another request ejected it just now
	}
	ep.fails.Store(0)
	ep.ejectedAt.Store(sinceEpoch(now))
	ep.wasEjected.Store(true)
	pl.m.ejections.Inc()
	if p.opts.ReportPassive != nil {
		p.opts.ReportPassive(ep.dc, ep.service, ep.addr, true, "ejected after "+itoa(int(fails))+" consecutive failures: "+reason)
	}
}

// recordSuccess resets ep's failure count and reports a recovery after an
// ejection once.
func (p *Proxy) recordSuccess(ep *endpoint) {
	if ep.fails.Load() != 0 {
		ep.fails.Store(0)
	}
	if ep.wasEjected.Load() && ep.wasEjected.CompareAndSwap(true, false) && p.opts.ReportPassive != nil {
		p.opts.ReportPassive(ep.dc, ep.service, ep.addr, false, "served a request after its ejection")
	}
}

// serviceState is what the proxy keeps per service across snapshots: the
// retry budget and the service's metrics.
type serviceState struct {
	budget retryBudget
	m      *serviceMetrics
}

func newServiceState(m *metrics, name string) *serviceState {
	return &serviceState{m: m.service(name)}
}
