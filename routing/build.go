package routing

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// build makes a snapshot from the engine's inputs. It is a pure function: all
// the work a decision would otherwise repeat per request happens here, once
// per change.
func build(cfg *config.Config, endpoints map[EndpointID]endpointState, drains map[string]Drain, scoped map[DrainScope]Drain, now time.Time, rnd func(uint64) uint64) *Snapshot {
	s := &Snapshot{
		Built:        now,
		Config:       cfg,
		Drains:       make(map[string]Drain, len(drains)),
		ScopedDrains: sortedScoped(scoped),
		byName:       make(map[string]*Service, len(cfg.Services)),
	}
	for dc, d := range drains {
		s.Drains[dc] = d
	}
	dcs := failoverOrder(cfg.Datacenters)
	for _, name := range cfg.ServiceNames {
		svc := buildService(name, cfg.Services[name], dcs, endpoints, s.Drains, s.ScopedDrains, rnd)
		svc.built, svc.slowStart = now, cfg.Proxy.SlowStart.D()
		svc.shards = buildShards(cfg, svc)
		s.Services = append(s.Services, svc)
		s.byName[name] = svc
	}
	s.hosts = buildHosts(s.Services)
	return s
}

// failoverOrder sorts datacenters by priority, keeping configuration order
// among equals.
func failoverOrder(in []*config.Datacenter) []*config.Datacenter {
	out := append([]*config.Datacenter(nil), in...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

func buildService(name string, sc *config.Service, dcs []*config.Datacenter, endpoints map[EndpointID]endpointState, drains map[string]Drain, scoped []ScopedDrain, rnd func(uint64) uint64) *Service {
	pol := ParsePolicy(sc.Policy)
	mode := ParseShardMode(sc.ShardRouting)
	svc := &Service{Name: name, Config: sc, Policy: pol, ShardMode: mode, policy: policyFor(pol), policyName: pol, rand: rnd,
		shardMode: mode, affinity: sc.Affinity == "cookie"}
	var healthy, undrained []*Target
	for _, dc := range dcs {
		ds := dc.Services[name]
		if ds == nil {
			continue
		}
		st := &DCStatus{Name: dc.Name, Priority: dc.Priority, Weight: dc.Weight, Total: len(ds.Endpoints)}
		st.Required = sc.MinHealthy.Required(st.Total)
		var up, down []string
		var reasons []string
		for _, ep := range ds.Endpoints {
			es, ok := endpoints[EndpointID{DC: dc.Name, Service: name, Endpoint: ep}]
			e := EndpointStatus{Address: ep, Up: ok && es.up, Probed: ok && es.probed, Reason: es.reason, Since: es.since}
			if !e.Probed {
				e.Reason = "not probed yet"
			}
			e.Drain = endpointDrain(scoped, dc.Name, name, ep)
			st.Endpoints = append(st.Endpoints, e)
			switch {
			case e.Drain != nil:
				// Out of the healthy set whatever its health; tried, after
				// the others, only when the DC is served anyway.
				down = append(down, ep)
				reasons = append(reasons, drainedReason(e.Drain))
			case e.Up:
				up = append(up, ep)
			default:
				down = append(down, ep)
				reasons = append(reasons, e.Reason)
			}
		}
		st.Healthy = len(up)
		t := &Target{DC: dc.Name, Addresses: ds.ParsedAddresses, Status: st}
		st.Target = t
		d, drained := drains[dc.Name]
		if !drained {
			// A drain of this service in the DC takes it out for this
			// service only.
			if sd := serviceDrain(scoped, dc.Name, name); sd != nil {
				d, drained, st.ServiceDrain = *sd, true, true
			}
		}
		switch {
		case drained:
			st.State = StateDrained
			st.Drain = &d
			st.Reason = drainedReason(&d)
		case st.Healthy >= st.Required:
			st.State = StateUp
		default:
			st.State = StateDown
			st.Reason = downReason(st, reasons)
		}
		// Healthy endpoints first; the rest are only tried when serving all.
		if st.State == StateUp {
			t.Endpoints = up
			healthy = append(healthy, t)
		} else {
			t.Endpoints = append(up, down...)
		}
		if !drained {
			undrained = append(undrained, t)
		}
		svc.DCs = append(svc.DCs, st)
	}
	svc.Summary = summary(svc.DCs)

	switch {
	case len(healthy) > 0:
		svc.serving = healthy
	case sc.WhenAllDown == "refuse":
		svc.AllDown = true
		svc.refused = "refusing: no datacenter is healthy (when_all_down: refuse); " + svc.Summary
	default:
		svc.AllDown = true
		svc.serving = undrained
		if len(svc.serving) == 0 {
			for _, dc := range svc.DCs {
				svc.serving = append(svc.serving, dc.Target)
			}
		}
		if len(svc.serving) == 0 {
			svc.refused = "no datacenter deploys this service"
		}
	}

	svc.firstBy = make([][]*Target, len(svc.serving))
	svc.reasons = make([]string, len(svc.serving))
	for i, t := range svc.serving {
		order := make([]*Target, 0, len(svc.serving))
		order = append(order, t)
		for j, o := range svc.serving {
			if j != i {
				order = append(order, o)
			}
		}
		svc.firstBy[i] = order
		svc.reasons[i] = reason(pol, svc, order)
		if len(t.Addresses) > 0 {
			svc.dnsAll = append(svc.dnsAll, t)
		}
	}
	for i, t := range svc.serving {
		svc.weights.add(i, t.Status.Weight)
		if t.Status.Priority == svc.serving[0].Status.Priority {
			svc.topTier.add(i, t.Status.Weight)
		}
	}
	if pol == PolicyNearest {
		for _, dc := range dcs {
			if dc.Services[name] == nil {
				continue
			}
			idx := -1
			for i, t := range svc.serving {
				if t.DC == dc.Name {
					idx = i
				}
			}
			for _, p := range dc.Networks {
				svc.networks = append(svc.networks, network{prefix: p, serving: idx, dc: dc.Name})
			}
		}
		sortNetworks(svc.networks)
	}
	return svc
}

// drainedReason is "drained", with the drain's reason if it has one.
func drainedReason(d *Drain) string {
	if d.Reason == "" {
		return "drained"
	}
	return "drained: " + d.Reason
}

// serviceDrain is the drain of service svc in dc, if any.
func serviceDrain(scoped []ScopedDrain, dc, svc string) *Drain {
	for i := range scoped {
		if sd := &scoped[i]; sd.DC == dc && sd.Service == svc && sd.Endpoint == "" {
			return &sd.Drain
		}
	}
	return nil
}

// endpointDrain is the drain of endpoint ep of service svc in dc, if any: its
// own, or that of the address in every service of the DC.
func endpointDrain(scoped []ScopedDrain, dc, svc, ep string) *Drain {
	for i := range scoped {
		if sd := &scoped[i]; sd.DC == dc && sd.Endpoint != "" && sd.coversEndpoint(svc, ep) {
			return &sd.Drain
		}
	}
	return nil
}

// downReason says why a DC is down in words: how many endpoints fail and the
// most telling error.
func downReason(st *DCStatus, reasons []string) string {
	drained := 0
	for _, e := range st.Endpoints {
		if e.Drain != nil {
			drained++
		}
	}
	failing := st.Total - st.Healthy - drained
	var b strings.Builder
	switch {
	case drained == 0:
		fmt.Fprintf(&b, "%d/%d endpoints failing", failing, st.Total)
	case failing == 0:
		fmt.Fprintf(&b, "%d/%d endpoints drained", drained, st.Total)
	default:
		fmt.Fprintf(&b, "%d/%d endpoints failing, %d drained", failing, st.Total, drained)
	}
	if st.Required > 1 {
		fmt.Fprintf(&b, " (needs %d healthy)", st.Required)
	}
	if r := mostCommon(reasons); r != "" {
		b.WriteString(" (" + r + ")")
	}
	return b.String()
}

func mostCommon(rs []string) string {
	best, bestN := "", 0
	count := map[string]int{}
	for _, r := range rs {
		count[r]++
		if count[r] > bestN {
			best, bestN = r, count[r]
		}
	}
	return best
}

func summary(dcs []*DCStatus) string {
	parts := make([]string, 0, len(dcs))
	for _, dc := range dcs {
		switch dc.State {
		case StateUp:
			parts = append(parts, fmt.Sprintf("%s up %d/%d", dc.Name, dc.Healthy, dc.Total))
		default:
			parts = append(parts, fmt.Sprintf("%s %s: %s", dc.Name, dc.State, strings.TrimPrefix(dc.Reason, "drained: ")))
		}
	}
	return strings.Join(parts, "; ")
}

// reason explains a decision whose targets are order, in the style
// "failover: east (priority 1); west down: 2/2 endpoints failing".
func reason(policy Policy, svc *Service, order []*Target) string {
	var b strings.Builder
	b.WriteString(string(policy))
	b.WriteString(": ")
	if svc.AllDown {
		b.WriteString("no datacenter healthy, serving all (when_all_down: serve_all); ")
	}
	first := order[0].Status
	fmt.Fprintf(&b, "%s (priority %d, %d/%d healthy)", first.Name, first.Priority, first.Healthy, first.Total)
	for _, dc := range svc.DCs {
		if dc == first {
			continue
		}
		if dc.State == StateUp {
			fmt.Fprintf(&b, "; then %s priority %d", dc.Name, dc.Priority)
		} else {
			fmt.Fprintf(&b, "; %s %s: %s", dc.Name, dc.State, strings.TrimPrefix(dc.Reason, "drained: "))
		}
	}
	return b.String()
}
