package routing

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// This file is where a request's destination is decided. Route is the one
// function the proxy, the DNS responder, the status page and explain call:
// what each of them serves or shows is a field of the same Answer.

// Policy names how a service picks its first datacenter. The configuration
// carries it as a string; routing reads it only through these constants.
type Policy string

// The routing policies.
const (
	PolicyFailover Policy = "failover"
	PolicyWeighted Policy = "weighted"
	PolicyNearest  Policy = "nearest"
	PolicyAll      Policy = "all"
)

// ParsePolicy returns the policy named s; an unknown or empty name is failover
// (config validation rejects unknown names before they get here).
func ParsePolicy(s string) Policy {
	switch p := Policy(s); p {
	case PolicyWeighted, PolicyNearest, PolicyAll:
		return p
	}
	return PolicyFailover
}

// ShardMode is a service's shard_routing.
type ShardMode string

// The shard routing modes.
const (
	ShardOff    ShardMode = "off"
	ShardWrites ShardMode = "writes"
	ShardAll    ShardMode = "all"
)

// ParseShardMode returns the mode named s; anything unknown is off.
func ParseShardMode(s string) ShardMode {
	switch m := ShardMode(s); m {
	case ShardWrites, ShardAll:
		return m
	}
	return ShardOff
}

// Request is what Route needs to know about one client request or query.
// The zero value (besides Client) asks for a plain decision.
type Request struct {
	// Client is the client's address, or the EDNS Client Subnet address.
	Client netip.Addr
	// Pin is the datacenter a verified affinity cookie pins the session to;
	// "" for none. The caller verifies the cookie; Route decides whether the
	// pin may still be honoured.
	Pin string
	// ClusterID is the Coopr cluster ID the request addresses, when
	// HasClusterID is set (see ClusterID).
	ClusterID    uint64
	HasClusterID bool
	// Write is true when the request may change state (a non-read method).
	Write bool
	// Now is the time of the request, for soft-drain deadlines and slow
	// start. If zero, the snapshot's build time.
	Now time.Time
	// Rand returns a uniform number in [0, n) for weighted picks and slow
	// start. If nil, the engine's random source. The status page passes a
	// fixed source so that what it shows does not change between loads.
	Rand func(n uint64) uint64
	// Explain records the steps of the decision in Answer.Steps. It
	// allocates; the serving paths leave it off.
	Explain bool
}

// Answer is Route's answer. Its slices belong to the snapshot (or to the
// caller's buffer) and must not be modified.
type Answer struct {
	// Decision is the policy's decision: every DC that may serve, best first.
	Decision
	// Proxy lists the datacenters the proxy tries, in order: the decision
	// reordered by the affinity pin, the shard owner and slow start. Empty
	// when the proxy must refuse (nothing serves, or a write to a shard that
	// no DC may write: then ShardRefused is set). It is the decision's own
	// slice, or Route's dst when reordered; either way, do not modify it.
	Proxy []*Target
	// DNS lists the datacenters whose addresses a DNS answer carries: the
	// first DC of the decision that has addresses, or under the all policy
	// every DC of the decision that has addresses. A DC without addresses
	// cannot be reached by DNS, so it is skipped, not answered empty.
	DNS []*Target
	// Pinned is true when Proxy[0] is the pinned DC.
	Pinned bool
	// Shard is the shard the cluster ID falls in when shard routing applied
	// to the request, else nil.
	Shard *Shard
	// ShardRefused is true for a write to a shard that no DC may write.
	ShardRefused bool
	// SlowStarted is true when slow start moved the first DC behind the
	// second for this request.
	SlowStarted bool
	// Steps say, in order, how the answer came about (only with
	// Request.Explain).
	Steps []string
}

// Addresses returns the addresses of the DNS answer, in answer order.
func (a *Answer) Addresses() []netip.Addr {
	var out []netip.Addr
	for _, t := range a.DNS {
		out = append(out, t.Addresses...)
	}
	return out
}

// Route decides where a request for the service goes: the proxy's ordered
// targets, the DNS answer and, on request, the steps that led there. It is
// safe for concurrent use. When the proxy order differs from the decision's
// (a pin, a shard owner, slow start) it is built by appending to dst[:0]:
// with a dst of enough capacity (or no reordering) and Explain off, Route
// does not allocate.
func (s *Service) Route(req Request, dst []*Target) Answer {
	rnd := req.Rand
	if rnd == nil {
		rnd = s.rand
	}
	now := req.Now
	if now.IsZero() {
		now = s.built
	}
	var a Answer
	if req.Explain {
		a.Steps = s.explainInputs(req)
	}
	if len(s.serving) == 0 {
		a.Decision = Decision{Reason: s.refused, AllDown: true}
	} else {
		a.Decision = s.policy.decide(s, req.Client, rnd)
	}
	a.DNS = s.dnsAnswer(a.Targets)
	a.Proxy = a.Targets

	// Shard routing: the owner of the cluster's partition first; a write
	// goes to the owner alone, or nowhere when no DC may write the shard.
	if req.HasClusterID && s.shardMode != ShardOff && (req.Write || s.shardMode == ShardAll) {
		if sh := s.shards.lookup(req.ClusterID); sh != nil {
			switch {
			case sh.target != nil && req.Write:
				a.Shard, a.Proxy = sh, sh.alone
			case sh.target != nil:
				a.Shard = sh
				a.Proxy = appendExcept(append(dst[:0], sh.target), a.Targets, sh.target)
			case req.Write:
				a.Shard, a.ShardRefused, a.Proxy = sh, true, nil
			}
			// A read of a shard no DC may write: any DC may answer it.
		}
	}
	if a.Shard == nil {
		if pinned := s.pinned(req.Pin, a.Targets, now); pinned != nil {
			a.Pinned = true
			if len(a.Targets) == 0 || a.Targets[0] != pinned {
				a.Proxy = appendExcept(append(dst[:0], pinned), a.Targets, pinned)
			}
		} else if s.slowStart > 0 && len(a.Proxy) >= 2 {
			if at, ok := a.Proxy[0].Status.CameBackAt(); ok {
				if elapsed := now.Sub(at); elapsed < s.slowStart && rnd(uint64(s.slowStart)) >= uint64(max(elapsed, 0)) {
					a.Proxy = append(append(dst[:0], a.Proxy[1], a.Proxy[0]), a.Proxy[2:]...)
					a.SlowStarted = true
				}
			}
		}
	}
	if req.Explain {
		a.Steps = append(a.Steps, s.explainOutcome(req, &a, now)...)
	}
	return a
}

// appendExcept appends ts to dst, leaving out skip.
func appendExcept(dst, ts []*Target, skip *Target) []*Target {
	for _, t := range ts {
		if t != skip {
			dst = append(dst, t)
		}
	}
	return dst
}

// pinned returns the target of the pinned DC when the pin may be honoured:
// the DC is among the decision's targets, or it is drained softly before its
// deadline and healthy enough that it would otherwise be up. A pin can thus
// only choose among DCs the policy offers (or one finishing its sessions),
// so a client cannot steer itself anywhere else.
func (s *Service) pinned(pin string, targets []*Target, now time.Time) *Target {
	if pin == "" || !s.affinity {
		return nil
	}
	for _, t := range targets {
		if t.DC == pin {
			return t
		}
	}
	if dc := s.DC(pin); dc != nil && HoldsPinnedSessions(dc, now) {
		return dc.Target
	}
	return nil
}

// HoldsPinnedSessions reports whether a DC that a decision left out still
// serves the sessions pinned to it at now: it is drained softly, before the
// drain's deadline, and its endpoints are healthy enough that it would
// otherwise be up.
func HoldsPinnedSessions(s *DCStatus, now time.Time) bool {
	return s.State == StateDrained && s.Drain.HoldsPinned(now) && s.Healthy > 0 && s.Healthy >= s.Required
}

// dnsAnswer returns the DCs a DNS answer carries for a decision's targets.
func (s *Service) dnsAnswer(targets []*Target) []*Target {
	if len(targets) == 0 {
		return nil
	}
	if s.policyName == PolicyAll {
		return s.dnsAll
	}
	for i, t := range targets {
		if len(t.Addresses) > 0 {
			return targets[i : i+1]
		}
	}
	return nil
}

var policyWords = map[Policy]string{
	PolicyFailover: "lowest priority first; equal priorities share by weight",
	PolicyWeighted: "each healthy DC by weight",
	PolicyNearest:  "the DC whose client_networks holds the client, else failover order",
	PolicyAll:      "every healthy DC",
}

// explainInputs renders the steps that precede the policy's pick: the
// policy, where the client falls, and each DC's state.
func (s *Service) explainInputs(req Request) []string {
	steps := []string{fmt.Sprintf("policy: %s (%s)", s.policyName, policyWords[s.policyName])}
	if s.policyName == PolicyNearest {
		steps = append(steps, s.nearestStep(req.Client))
	}
	for _, dc := range s.DCs {
		line := fmt.Sprintf("%s: %s, priority %d, weight %d, %d/%d endpoints healthy (needs %d)", dc.Name, dc.State, dc.Priority, dc.Weight, dc.Healthy, dc.Total, dc.Required)
		if len(dc.Target.Addresses) == 0 {
			line += ", no DNS addresses"
		}
		switch dc.State {
		case StateDrained:
			line += "; passed over: " + dc.Reason
			if dc.Drain != nil && dc.Drain.By != "" {
				line += " (by " + dc.Drain.By + ")"
			}
		case StateDown:
			line += "; passed over: " + dc.Reason
		}
		steps = append(steps, line)
	}
	if s.AllDown {
		steps = append(steps, "no datacenter is healthy: when_all_down is "+s.Config.WhenAllDown)
	}
	return steps
}

// explainOutcome renders the steps from the decision to the answers.
func (s *Service) explainOutcome(req Request, a *Answer, now time.Time) []string {
	steps := []string{"decision: " + a.Reason}
	switch {
	case a.Shard != nil:
		steps = append(steps, fmt.Sprintf("cluster %d is in the shard of %s (IDs = %d mod %d): %s; proxy goes to owner %s first%s",
			req.ClusterID, a.Shard.Home, a.Shard.Start, a.Shard.Increment, a.Shard.Reason, a.Shard.Owner, map[bool]string{true: " and only (a write)", false: ""}[req.Write]))
	case a.ShardRefused:
		steps = append(steps, fmt.Sprintf("cluster %d: no datacenter may write its shard; the proxy refuses the write", req.ClusterID))
	case a.Pinned:
		steps = append(steps, fmt.Sprintf("affinity pin %s honoured: proxy tries it first", req.Pin))
	case req.Pin != "" && !s.affinity:
		steps = append(steps, fmt.Sprintf("affinity pin %s ignored: the service has no affinity (affinity: cookie)", req.Pin))
	case req.Pin != "":
		steps = append(steps, fmt.Sprintf("affinity pin %s ignored: the decision does not offer it and it holds no pinned sessions at %s", req.Pin, now.Format(time.RFC3339)))
	}
	if a.SlowStarted {
		steps = append(steps, fmt.Sprintf("slow start: %s came back recently, this request goes to %s first", a.Proxy[1].DC, a.Proxy[0].DC))
	}
	proxy := make([]string, 0, len(a.Proxy))
	for _, t := range a.Proxy {
		proxy = append(proxy, t.DC)
	}
	if len(proxy) == 0 {
		steps = append(steps, "proxy: refuses (503)")
	} else {
		steps = append(steps, "proxy: "+strings.Join(proxy, ", "))
	}
	var skipped []string
	for _, t := range a.Targets {
		if len(t.Addresses) == 0 {
			skipped = append(skipped, t.DC)
		}
		if len(a.DNS) > 0 && t == a.DNS[len(a.DNS)-1] {
			break
		}
	}
	if len(skipped) > 0 {
		steps = append(steps, "dns: skips "+strings.Join(skipped, ", ")+" (no addresses)")
	}
	if len(a.DNS) == 0 {
		steps = append(steps, "dns: no address to answer (NODATA)")
	} else {
		var parts []string
		for _, t := range a.DNS {
			for _, ad := range t.Addresses {
				parts = append(parts, ad.String()+" ("+t.DC+")")
			}
		}
		steps = append(steps, "dns: "+strings.Join(parts, ", "))
	}
	return steps
}

// nearestStep says which client network, if any, the client falls in.
func (s *Service) nearestStep(client netip.Addr) string {
	client = client.Unmap()
	for i := range s.networks {
		n := &s.networks[i]
		if !n.prefix.Contains(client) {
			continue
		}
		if n.serving < 0 {
			return fmt.Sprintf("client %s is in %s's client network %s, but %s cannot serve: failover order", client, n.dc, n.prefix, n.dc)
		}
		return fmt.Sprintf("client %s is in %s's client network %s (longest match)", client, n.dc, n.prefix)
	}
	return fmt.Sprintf("client %s is in no datacenter's client_networks: failover order", client)
}
