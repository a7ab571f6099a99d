package cluster

import (
	"slices"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// Snapshot is what GET /api/v1/cluster answers.
type Snapshot struct {
	Self string `json:"self"`
	// Quorum is "majority" or the configured count.
	Quorum any  `json:"quorum"`
	Alone  bool `json:"alone"`
	// Members lists every member known, self included, by name.
	Members []Member `json:"members"`
	// Drains are the drains in force, with where they are known.
	Drains []DrainInfo `json:"drains"`
}

// Member is one member as this one sees it.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is StateAlive, StateSuspect or StateDead.
	State string `json:"state"`
	// LastSeen is when its state last arrived here (now for self); zero if
	// it never did.
	LastSeen      time.Time `json:"last_seen"`
	ConfigHash    string    `json:"config_hash"`
	ConfigDiffers bool      `json:"config_differs"`
	// View is what the member's own probes say, per service and DC: "up"
	// when at least the service's min_healthy endpoints are up. A DC the
	// member has no observation of is left out.
	View map[string]map[string]string `json:"view"`
}

// Snapshot returns the cluster as this member sees it. The result is the
// caller's.
func (c *Cluster) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	alive := c.aliveLocked(now)
	s := Snapshot{Self: c.name, Quorum: "majority", Alone: len(alive) <= 1}
	if c.quorum > 0 {
		s.Quorum = c.quorum
	}
	seen := map[string]bool{}
	add := func(name, addr, state string) {
		seen[name] = true
		m := Member{Name: name, Address: addr, State: state}
		if name == c.name {
			m.LastSeen, m.ConfigHash, m.View = now, c.hash, memberView(c.cfg, c.tab.own)
		} else if p := c.tab.peers[name]; p != nil {
			m.LastSeen, m.ConfigHash = p.heard, p.hash
			m.ConfigDiffers = p.hash != "" && p.hash != c.hash
			m.View = memberView(c.cfg, p.obs)
		}
		if m.View == nil {
			m.View = map[string]map[string]string{}
		}
		s.Members = append(s.Members, m)
	}
	add(c.name, c.addr, StateAlive)
	for name, e := range c.members {
		state := StateAlive
		if !c.isAlive(name, e, now) {
			state = StateSuspect
		}
		add(name, e.node.Address(), state)
	}
	for name, g := range c.gone {
		if !seen[name] {
			add(name, g.addr, StateDead)
		}
	}
	slices.SortFunc(s.Members, func(a, b Member) int { return cmpString(a.Name, b.Name) })
	for _, d := range c.tab.activeDrains() {
		s.Drains = append(s.Drains, DrainInfo{Drain: d, KnownOn: c.tab.knownOn(d, alive), Members: len(alive)})
	}
	if s.Drains == nil {
		s.Drains = []DrainInfo{}
	}
	return s
}

// memberView sums one member's observations per service and DC.
func memberView(cfg *config.Config, obs map[EndpointKey]Observation) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, dc := range cfg.Datacenters {
		if dc == nil {
			continue
		}
		for name, ds := range dc.Services {
			svc := cfg.Services[name]
			if ds == nil || svc == nil {
				continue
			}
			seen, up := 0, 0
			for _, ep := range ds.Endpoints {
				if o, ok := obs[EndpointKey{DC: dc.Name, Service: name, Endpoint: ep}]; ok {
					seen++
					if o.Up {
						up++
					}
				}
			}
			if seen == 0 {
				continue
			}
			state := "down"
			if up >= svc.MinHealthy.Required(len(ds.Endpoints)) {
				state = "up"
			}
			if out[name] == nil {
				out[name] = map[string]string{}
			}
			out[name][dc.Name] = state
		}
	}
	return out
}

// updateMetrics sets the gauges from a snapshot.
func (c *Cluster) updateMetrics() {
	s := c.Snapshot()
	counts := map[string]int{StateAlive: 0, StateSuspect: 0, StateDead: 0}
	differs := 0
	for _, m := range s.Members {
		counts[m.State]++
		if m.ConfigDiffers && m.State == StateAlive {
			differs++
		}
	}
	for state, n := range counts {
		c.met.members.WithLabelValues(state).Set(float64(n))
	}
	c.met.configDiffers.Set(float64(differs))
	if s.Alone {
		c.met.alone.Set(1)
	} else {
		c.met.alone.Set(0)
	}
}
