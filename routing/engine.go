package routing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// ErrUnknownDC is returned for a datacenter the configuration does not name.
var ErrUnknownDC = errors.New("unknown datacenter")

// EndpointUpdate reports a change of one endpoint's health.
type EndpointUpdate struct {
	DC, Service, Endpoint string
	Up                    bool
	// Reason says why the endpoint is down, in words.
	Reason string
	At     time.Time
}

// Options tune an Engine. The zero value is ready to use.
type Options struct {
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Rand returns a uniform number in [0, n). If nil, math/rand/v2.
	Rand func(n uint64) uint64
	// OnEvent is called for every event, in order, by Deliver: outside the
	// engine's lock, so it may block (a slow state log) without delaying an
	// endpoint update or a drain; while it blocks, events wait in a queue of
	// QueueSize, and what does not fit is dropped and counted (see
	// DroppedEvents). If nil, events are only kept in the history.
	OnEvent func(Event)
	// QueueSize bounds the events waiting for OnEvent. If zero, 4096.
	QueueSize int
	// HistorySize bounds the event history. If zero, 1000.
	HistorySize int
}

// Engine holds the mutable inputs of routing (endpoint health, drains, the
// configuration) and publishes an immutable Snapshot after every change.
// All methods are safe for concurrent use; readers never wait for writers.
type Engine struct {
	opts Options
	snap atomic.Pointer[Snapshot]

	mu        sync.Mutex // serializes writers; readers use snap
	cfg       *config.Config
	endpoints map[EndpointID]endpointState
	drains    map[string]Drain
	scoped    map[DrainScope]Drain     // drains of a service in a DC or of an endpoint
	dcSince   map[dcKey]dcMemo         // last published state
	allDown   map[string]bool          // by service
	owners    map[shardKey]dcMemoOwner // last published owner
	gen       uint64
	events    *eventLog
	// queue holds events for Deliver; dropped counts those it had no room for.
	queue   chan Event
	dropped atomic.Uint64
	// watchers are poked (without blocking) after every publish; see Watch.
	watchers map[chan struct{}]struct{}
	// ttlTimer republishes when a short "recent change" TTL expires.
	ttlTimer *time.Timer
}

type endpointState struct {
	up, probed bool
	reason     string
	since      time.Time
}

type dcMemoOwner struct {
	owner string
	since time.Time
}

type dcMemo struct {
	state State
	since time.Time
	// changed is false for the first state learned at start-up.
	changed bool
}

// New returns an Engine for cfg and publishes its first snapshot, in which no
// endpoint has been probed yet.
func New(cfg *config.Config, opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Uint64N
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = 1000
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	e := &Engine{
		opts:      opts,
		cfg:       cfg,
		endpoints: map[EndpointID]endpointState{},
		drains:    map[string]Drain{},
		scoped:    map[DrainScope]Drain{},
		dcSince:   map[dcKey]dcMemo{},
		allDown:   map[string]bool{},
		owners:    map[shardKey]dcMemoOwner{},
		events:    newEventLog(opts.HistorySize),
		queue:     make(chan Event, opts.QueueSize),
		watchers:  map[chan struct{}]struct{}{},
	}
	e.mu.Lock()
	e.publishLocked()
	e.mu.Unlock()
	return e
}

// Snapshot returns the current snapshot. It never blocks.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// UpdateEndpoint records an endpoint's health and publishes a new snapshot.
func (e *Engine) UpdateEndpoint(u EndpointUpdate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := u.ID()
	old, had := e.endpoints[key]
	if had && old.probed && old.up == u.Up && old.reason == u.Reason {
		return
	}
	at := u.At
	if at.IsZero() {
		at = e.opts.Now()
	}
	since := at
	if had && old.probed && old.up == u.Up {
		since = old.since
	}
	e.endpoints[key] = endpointState{up: u.Up, probed: true, reason: u.Reason, since: since}
	if !had || !old.probed || old.up != u.Up {
		kind := EventEndpointDown
		if u.Up {
			kind = EventEndpointUp
		}
		e.emitLocked(Event{Time: at, Kind: kind, DC: u.DC, Service: u.Service, Endpoint: u.Endpoint, Reason: u.Reason, Initial: !had || !old.probed})
	}
	e.publishLocked()
}

// Drain takes a datacenter out of every service regardless of its health.
func (e *Engine) Drain(dc string, d Drain) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hasDC(dc) {
		return fmt.Errorf("%w %q", ErrUnknownDC, dc)
	}
	putDrainLocked(e, e.drains, dc, DrainScope{DC: dc}, d)
	return nil
}

// Undrain ends a manual drain. Undraining a DC that is not drained is not an error.
func (e *Engine) Undrain(dc, by string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hasDC(dc) {
		return fmt.Errorf("%w %q", ErrUnknownDC, dc)
	}
	if _, ok := e.drains[dc]; !ok {
		return nil
	}
	delete(e.drains, dc)
	e.emitLocked(Event{Time: e.opts.Now(), Kind: EventUndrained, DC: dc, By: by})
	e.publishLocked()
	return nil
}

// RestoreDrains installs drains saved before a restart, without events.
func (e *Engine) RestoreDrains(drains map[string]Drain) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for dc, d := range drains {
		if e.hasDC(dc) {
			e.drains[dc] = d
		}
	}
	e.publishLocked()
}

// SetConfig swaps the configuration. Endpoints that are in both keep their
// health, so a reload does not flap; new endpoints count as not yet probed.
// Drains of DCs, services and endpoints that no longer exist are dropped.
func (e *Engine) SetConfig(cfg *config.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = cfg
	keep := map[EndpointID]endpointState{}
	for _, dc := range cfg.Datacenters {
		for name, ds := range dc.Services {
			for _, ep := range ds.Endpoints {
				k := EndpointID{DC: dc.Name, Service: name, Endpoint: ep}
				if st, ok := e.endpoints[k]; ok {
					keep[k] = st
				}
			}
		}
	}
	e.endpoints = keep
	for dc := range e.drains {
		if !e.hasDC(dc) {
			delete(e.drains, dc)
		}
	}
	for scope := range e.scoped {
		if checkScope(cfg, scope) != nil {
			delete(e.scoped, scope)
		}
	}
	e.emitLocked(Event{Time: e.opts.Now(), Kind: EventConfigReloaded})
	e.publishLocked()
}

// Record adds an event that is not a routing change (such as
// EventDNSSECExpiring) to the history and the event queue, so that it is
// logged and notified like the others. A zero Time is now.
func (e *Engine) Record(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Time.IsZero() {
		ev.Time = e.opts.Now()
	}
	e.emitLocked(ev)
}

// Events returns the recorded events at or after since, oldest first.
func (e *Engine) Events(since time.Time) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.events.since(since)
}

func (e *Engine) hasDC(name string) bool {
	for _, dc := range e.cfg.Datacenters {
		if dc.Name == name {
			return true
		}
	}
	return false
}

// emitLocked numbers the event, records it and queues it for Deliver. It
// never blocks: a full queue drops the event (the history keeps it).
func (e *Engine) emitLocked(ev Event) {
	ev = e.events.add(ev)
	if e.opts.OnEvent == nil {
		return
	}
	select {
	case e.queue <- ev:
	default:
		e.dropped.Add(1)
	}
}

// Deliver hands queued events to Options.OnEvent, in order, until ctx is
// done; then it delivers what is already queued and returns. Run it in one
// goroutine, owned by whoever owns the Engine.
func (e *Engine) Deliver(ctx context.Context) error {
	if e.opts.OnEvent == nil {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case ev := <-e.queue:
			e.opts.OnEvent(ev)
		case <-ctx.Done():
			for {
				select {
				case ev := <-e.queue:
					e.opts.OnEvent(ev)
				default:
					return nil
				}
			}
		}
	}
}

// DroppedEvents counts the events the queue had no room for.
func (e *Engine) DroppedEvents() uint64 { return e.dropped.Load() }

// publishLocked builds a snapshot from the current inputs, emits events for
// datacenter state changes and publishes it.
func (e *Engine) publishLocked() {
	now := e.opts.Now()
	e.gen++
	s := build(e.cfg, e.endpoints, e.drains, e.scoped, now, e.opts.Rand)
	s.Generation = e.gen
	var next time.Time // when a shortened TTL ends and the snapshot must be rebuilt
	for _, svc := range s.Services {
		for _, dc := range svc.DCs {
			key := dcKey{svc.Name, dc.Name}
			memo, seen := e.dcSince[key]
			switch {
			case !seen && dc.State == StateDown && !allProbed(dc):
				// Still waiting for first probes that could bring it up:
				// nothing is decided, so nothing is announced.
				dc.Since = now
				continue
			case seen && memo.state == dc.State:
				dc.Since, dc.changed = memo.since, memo.changed
				continue
			}
			dc.Since = now
			dc.changed = seen
			e.dcSince[key] = dcMemo{state: dc.State, since: now, changed: seen}
			if dc.State == StateDrained || (seen && memo.state == StateDrained) {
				continue // drains and undrains have events of their own
			}
			kind := EventDCDown
			if dc.State == StateUp {
				kind = EventDCUp
			}
			e.emitLocked(Event{Time: now, Kind: kind, DC: dc.Name, Service: svc.Name, Reason: dc.Reason, Initial: !seen})
		}
		for _, sh := range svc.shards.all {
			key := shardKey{svc.Name, sh.Partition}
			if m, ok := e.owners[key]; ok && m.owner == sh.Owner {
				sh.Since = m.since
				continue
			}
			sh.Since = now
			e.owners[key] = dcMemoOwner{owner: sh.Owner, since: now}
		}
		if at := applyTTL(e.cfg, svc, now); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
		if was := e.allDown[svc.Name]; was != svc.AllDown && (!svc.AllDown || e.settledLocked(svc)) {
			e.allDown[svc.Name] = svc.AllDown
			kind := EventAllDownCleared
			if svc.AllDown {
				kind = EventAllDown
			}
			e.emitLocked(Event{Time: now, Kind: kind, Service: svc.Name, Reason: svc.Summary})
		}
	}
	e.snap.Store(s)
	for w := range e.watchers {
		select {
		case w <- struct{}{}:
		default: // already poked: the watcher will load the newest snapshot
		}
	}
	e.scheduleLocked(next, now)
}

// Watch calls fn with the current snapshot and then with every newly
// published one until ctx is done, from the calling goroutine and never
// under the engine's lock. Snapshots published while fn runs are
// coalesced: fn sees the newest, not each. Front doors use it to build
// their per-snapshot views when a snapshot is published rather than on the
// first request after it.
func (e *Engine) Watch(ctx context.Context, fn func(*Snapshot)) {
	poke := make(chan struct{}, 1)
	e.mu.Lock()
	e.watchers[poke] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.watchers, poke)
		e.mu.Unlock()
	}()
	var last *Snapshot
	for {
		if s := e.Snapshot(); s != last {
			last = s
			fn(s)
		}
		select {
		case <-poke:
		case <-ctx.Done():
			return
		}
	}
}

// scheduleLocked arranges a republish at next (if not zero), so TTLs that
// were shortened after a change grow back without waiting for another change.
func (e *Engine) scheduleLocked(next, now time.Time) {
	if e.ttlTimer != nil {
		e.ttlTimer.Stop()
		e.ttlTimer = nil
	}
	if next.IsZero() {
		return
	}
	e.ttlTimer = time.AfterFunc(next.Sub(now)+time.Millisecond, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.publishLocked()
	})
}

// Close stops the engine's timer. The engine stays usable; Close is safe to
// call more than once.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ttlTimer != nil {
		e.ttlTimer.Stop()
		e.ttlTimer = nil
	}
}

// applyTTL sets the service's TTL and failover figures. It returns when a
// shortened TTL ends (zero if none is shortened).
func applyTTL(cfg *config.Config, svc *Service, now time.Time) time.Time {
	sc := svc.Config
	svc.Detection = cfg.Detection(svc.Name)
	if sc.FailoverBudget <= 0 {
		svc.TTL = uint32(sc.DNSTTL)
		svc.TTLReason = "dns_ttl"
		svc.WorstCaseFailover = svc.Detection + time.Duration(sc.DNSTTL)*time.Second
		return time.Time{}
	}
	ttl := cfg.BudgetTTL(svc.Name)
	svc.WorstCaseFailover = svc.Detection + time.Duration(ttl)*time.Second
	svc.TTL = uint32(ttl)
	svc.TTLReason = fmt.Sprintf("failover_budget %s minus detection %s", sc.FailoverBudget, svc.Detection)
	var until time.Time
	for _, dc := range svc.DCs {
		if end := dc.Since.Add(config.RecentChange); dc.changed && now.Before(end) && (until.IsZero() || end.After(until)) {
			until = end
		}
	}
	if !until.IsZero() && ttl > config.MinTTL {
		svc.TTL = config.MinTTL
		svc.TTLReason = fmt.Sprintf("shortened to %ds until %s: a datacenter changed state recently", config.MinTTL, until.Format(time.TimeOnly))
		return until
	}
	return time.Time{}
}

func allProbed(dc *DCStatus) bool {
	for _, ep := range dc.Endpoints {
		if !ep.Probed {
			return false
		}
	}
	return true
}

// settledLocked reports whether every DC of the service has a decided state.
func (e *Engine) settledLocked(s *Service) bool {
	for _, dc := range s.DCs {
		if _, ok := e.dcSince[dcKey{s.Name, dc.Name}]; !ok {
			return false
		}
	}
	return true
}
