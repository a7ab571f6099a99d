package cluster

import (
	"maps"
	"slices"
	"time"
)

// table is the replicated state as one member holds it: every member's
// drains registers, this member's own observations and the last observations
// heard from each peer. It is pure bookkeeping over times it is given, with no
// goroutines and no I/O, so the merge rules are tested without a network. It
// is not safe for concurrent use; Cluster guards it with its mutex.
type table struct {
	self  string
	clock hlc

	drains map[DrainKey]Drain

	ownSeq uint64
	own    map[EndpointKey]Observation

	peers map[string]*peerState
}

// peerState is what a peer last said about itself. Only the peer writes it:
// a state message carries its sender's rows only.
type peerState struct {
	seq   uint64
	heard time.Time // when its last state message arrived, by our clock
	obs   map[EndpointKey]Observation
	hash  string
	held  map[DrainKey]Stamp
}

// newTable returns an empty table for member self. seq0 starts the sequence
// of its observations; a restarted member must start above where it was, so
// the caller passes the start time in nanoseconds.
func newTable(self string, seq0 uint64) *table {
	return &table{
		self:   self,
		drains: map[DrainKey]Drain{},
		ownSeq: seq0,
		own:    map[EndpointKey]Observation{},
		peers:  map[string]*peerState{},
	}
}

// newDrain stamps a drain of key given to this member at now. The caller
// applies it with merge once it is saved.
func (t *table) newDrain(key DrainKey, r DrainRequest, now time.Time) Drain {
	return Drain{
		Key: key, Reason: r.Reason, By: r.By, Mode: r.Mode, Deadline: r.Deadline,
		Origin: t.self, At: now, Stamp: t.clock.now(now.UnixNano(), t.self),
	}
}

// newUndrain stamps a tombstone for key, or returns false when key is not
// drained (nothing is to be written).
func (t *table) newUndrain(key DrainKey, by string, now time.Time) (Drain, bool) {
	if cur, ok := t.drains[key]; !ok || cur.Deleted {
		return Drain{}, false
	}
	return Drain{Key: key, By: by, Origin: t.self, At: now, Stamp: t.clock.now(now.UnixNano(), t.self), Deleted: true}, true
}

// withDrain returns every register as it will be once d is merged.
func (t *table) withDrain(d Drain) []Drain {
	out := make([]Drain, 0, len(t.drains)+1)
	for k, cur := range t.drains {
		if k != d.Key {
			out = append(out, cur)
		}
	}
	if cur, ok := t.drains[d.Key]; ok && !cur.Stamp.Less(d.Stamp) {
		out = append(out, cur)
	} else {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Drain) int { return compareKeys(a.Key, b.Key) })
	return out
}

// merge applies a register received from a peer: the write with the later
// stamp wins. It reports whether the local register changed.
func (t *table) merge(d Drain, now time.Time) bool {
	t.clock.observe(now.UnixNano(), d.Stamp)
	cur, ok := t.drains[d.Key]
	if ok && !cur.Stamp.Less(d.Stamp) {
		return false
	}
	t.drains[d.Key] = d
	return true
}

// activeDrains returns the drains in force (tombstones left out), by key.
func (t *table) activeDrains() []Drain {
	var out []Drain
	for _, d := range t.drains {
		if !d.Deleted {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Drain) int { return compareKeys(a.Key, b.Key) })
	return out
}

// allDrains returns every register, tombstones included, by key.
func (t *table) allDrains() []Drain {
	out := slices.Collect(maps.Values(t.drains))
	slices.SortFunc(out, func(a, b Drain) int { return compareKeys(a.Key, b.Key) })
	return out
}

// knownOn counts the members among alive (self excluded, it always knows)
// whose last state message held d's write.
func (t *table) knownOn(d Drain, alive []string) int {
	n := 1
	for _, name := range alive {
		if p := t.peers[name]; name != t.self && p != nil && p.held[d.Key] == d.Stamp {
			n++
		}
	}
	return n
}

func compareKeys(a, b DrainKey) int {
	switch {
	case a.DC != b.DC:
		return cmpString(a.DC, b.DC)
	case a.Service != b.Service:
		return cmpString(a.Service, b.Service)
	default:
		return cmpString(a.Endpoint, b.Endpoint)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// report records one of this member's own observations; it reports whether
// anything changed.
func (t *table) report(o Observation) bool {
	if cur, ok := t.own[o.EndpointKey]; ok && cur.Up == o.Up && cur.Reason == o.Reason && cur.Since.Equal(o.Since) {
		return false
	}
	t.own[o.EndpointKey] = o
	t.ownSeq++
	return true
}

// setObservations replaces this member's own observations; it reports
// whether anything changed.
func (t *table) setObservations(obs []Observation) bool {
	next := make(map[EndpointKey]Observation, len(obs))
	for _, o := range obs {
		next[o.EndpointKey] = o
	}
	if maps.EqualFunc(next, t.own, sameObservation) {
		return false
	}
	t.own = next
	t.ownSeq++
	return true
}

func sameObservation(a, b Observation) bool {
	return a.Up == b.Up && a.Reason == b.Reason && a.Since.Equal(b.Since)
}

// ownObservations returns this member's rows, sorted.
func (t *table) ownObservations() []Observation {
	return sortedObs(t.own)
}

func sortedObs(m map[EndpointKey]Observation) []Observation {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b Observation) int {
		return cmpString(a.EndpointKey.String(), b.EndpointKey.String())
	})
	return out
}

// applyState takes a state message that its sender sent about itself at our
// time now. It returns whether the drains and whether the sender's
// observations (or the drains it holds, for KnownOn) changed.
func (t *table) applyState(m *stateMsg, now time.Time) (drains, obs bool) {
	for _, d := range m.Drains {
		if t.merge(d, now) {
			drains = true
		}
	}
	if m.From == "" || m.From == t.self {
		return drains, false
	}
	p := t.peers[m.From]
	if p == nil {
		p = &peerState{}
		t.peers[m.From] = p
		obs = true
	}
	p.heard = now
	p.hash = m.Hash
	if m.Held != nil {
		held := make(map[DrainKey]Stamp, len(m.Held))
		for _, h := range m.Held {
			held[h.Key] = h.Stamp
		}
		if !maps.Equal(held, p.held) {
			// Where a drain is known changed (DrainInfo.KnownOn): the
			// caller reads the drains again.
			obs = true
		}
		p.held = held
	}
	if m.Seq < p.seq {
		return drains, obs // an older message overtaken by a newer one
	}
	p.seq = m.Seq
	next := make(map[EndpointKey]Observation, len(m.Obs))
	for _, o := range m.Obs {
		next[o.EndpointKey] = o
	}
	if !maps.EqualFunc(next, p.obs, sameObservation) {
		p.obs = next
		obs = true
	}
	return drains, obs
}

// expire drops the observations of peers not heard from since now-maxAge: a
// silent peer has no opinion. It reports whether any were dropped. The
// peer's hash and held drains stay, for the cluster page.
func (t *table) expire(now time.Time, maxAge time.Duration) bool {
	dropped := false
	for _, p := range t.peers {
		if len(p.obs) > 0 && now.Sub(p.heard) > maxAge {
			p.obs = nil
			dropped = true
		}
	}
	return dropped
}

// localState is this member's state message: its own rows, its drains and
// the stamps of the drains it holds. withDrains false leaves the drains
// themselves out (their stamps stay).
func (t *table) localState(hash string, withDrains bool) *stateMsg {
	m := &stateMsg{From: t.self, Seq: t.ownSeq, Hash: hash, Obs: t.ownObservations(), Held: []heldDrain{}}
	for _, d := range t.allDrains() {
		m.Held = append(m.Held, heldDrain{Key: d.Key, Stamp: d.Stamp})
		if withDrains {
			m.Drains = append(m.Drains, d)
		}
	}
	return m
}

// ballots returns the observations that vote, per endpoint: this member's
// and those of the peers named in alive heard from within maxAge of now.
// Other peers abstain.
func (t *table) ballots(alive []string, now time.Time, maxAge time.Duration) map[EndpointKey][]ballot {
	out := map[EndpointKey][]ballot{}
	for k, o := range t.own {
		out[k] = append(out[k], ballot{Member: t.self, Observation: o})
	}
	for _, name := range alive {
		p := t.peers[name]
		if name == t.self || p == nil || now.Sub(p.heard) > maxAge {
			continue
		}
		for k, o := range p.obs {
			out[k] = append(out[k], ballot{Member: name, Observation: o})
		}
	}
	return out
}

// ballot is one member's observation counted in a vote.
type ballot struct {
	Member string
	Observation
}
