package routing

import (
	"net/netip"
	"sort"
)

// policy picks the first datacenter for a client; the rest follow in failover
// order. Implementations read only precomputed fields of the Service, so a
// decision neither locks nor allocates.
type policy interface {
	decide(s *Service, client netip.Addr, rnd func(uint64) uint64) Decision
}

var (
	_ policy = failoverPolicy{}
	_ policy = weightedPolicy{}
	_ policy = nearestPolicy{}
	_ policy = allPolicy{}
)

func policyFor(p Policy) policy {
	switch p {
	case PolicyWeighted:
		return weightedPolicy{}
	case PolicyNearest:
		return nearestPolicy{}
	case PolicyAll:
		return allPolicy{}
	default:
		return failoverPolicy{}
	}
}

// failoverPolicy sends everyone to the DC of lowest priority; DCs that share
// the lowest priority share clients by weight.
type failoverPolicy struct{}

func (failoverPolicy) decide(s *Service, _ netip.Addr, rnd func(uint64) uint64) Decision {
	return s.decision(s.topTier.pick(rnd), 0)
}

// weightedPolicy spreads clients over every serving DC by weight.
type weightedPolicy struct{}

func (weightedPolicy) decide(s *Service, _ netip.Addr, rnd func(uint64) uint64) Decision {
	return s.decision(s.weights.pick(rnd), 0)
}

// nearestPolicy sends a client to the DC whose client_networks holds the
// longest prefix matching its address, else behaves like failover.
type nearestPolicy struct{}

func (nearestPolicy) decide(s *Service, client netip.Addr, rnd func(uint64) uint64) Decision {
	if len(s.serving) == 1 {
		return s.decision(0, 0) // one choice: the answer is the same for everyone
	}
	client = client.Unmap()
	for i := range s.networks {
		n := &s.networks[i]
		if n.prefix.Contains(client) {
			if n.serving >= 0 {
				return s.decision(n.serving, n.prefix.Bits())
			}
			return s.decision(s.topTier.pick(rnd), n.prefix.Bits())
		}
	}
	scope := 0
	if len(s.networks) > 0 {
		scope = -1
	}
	return s.decision(s.topTier.pick(rnd), scope)
}

// allPolicy returns every serving DC in failover order.
type allPolicy struct{}

func (allPolicy) decide(s *Service, _ netip.Addr, _ func(uint64) uint64) Decision {
	return s.decision(0, 0)
}

// network is a client network of a DC; serving is the DC's index in
// Service.serving, or -1 when that DC cannot serve.
type network struct {
	prefix  netip.Prefix
	serving int
	dc      string
}

func sortNetworks(ns []network) {
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].prefix.Bits() > ns[j].prefix.Bits() })
}

// weightTable picks an index with probability proportional to its weight.
type weightTable struct {
	cumulative []uint64 // cumulative[i] is the sum of weights 0..i
	index      []int    // index[i] is the serving index of entry i
}

func (w *weightTable) add(servingIndex, weight int) {
	if weight <= 0 {
		return
	}
	var sum uint64
	if n := len(w.cumulative); n > 0 {
		sum = w.cumulative[n-1]
	}
	w.cumulative = append(w.cumulative, sum+uint64(weight))
	w.index = append(w.index, servingIndex)
}

// pick returns a serving index; with no positive weight it returns 0, the
// first DC in failover order.
func (w *weightTable) pick(rnd func(uint64) uint64) int {
	n := len(w.cumulative)
	if n == 0 {
		return 0
	}
	if n == 1 {
		return w.index[0]
	}
	r := rnd(w.cumulative[n-1])
	// Few DCs: a linear scan beats a binary search here.
	for i, c := range w.cumulative {
		if r < c {
			return w.index[i]
		}
	}
	return w.index[n-1]
}
