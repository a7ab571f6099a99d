// Package routing owns the routing decision: which datacenters, in which order,
// may serve a service for a given client right now.
//
// The Engine takes endpoint health and manual drains, builds an immutable
// Snapshot off to the side and publishes it atomically. Front doors (the HTTP
// proxy, the DNS responder, the admin API) only read snapshots; a decision is a
// pure function of one snapshot and the client's address, with no lock and no
// allocation.
package routing

import (
	"net/netip"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// State is a datacenter's state for one service.
type State int

// The states a datacenter can be in for a service.
const (
	StateDown State = iota
	StateUp
	StateDrained
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDrained:
		return "drained"
	default:
		return "down"
	}
}

// Snapshot is an immutable view of every service's routing state. It must not
// be modified; any number of goroutines may read it concurrently.
type Snapshot struct {
	// Generation increases with every snapshot the Engine publishes.
	Generation uint64
	// Built is when the snapshot was made.
	Built time.Time
	// Config is the configuration the snapshot was built from.
	Config *config.Config
	// Services lists every service in name order.
	Services []*Service
	// Drains holds the manual drains in effect, by datacenter name.
	Drains map[string]Drain
	// ScopedDrains are the drains of a service in a datacenter or of an
	// endpoint, sorted by datacenter, service and endpoint.
	ScopedDrains []ScopedDrain

	byName map[string]*Service
	hosts  hostTable
}

// Service returns the named service, or nil.
func (s *Snapshot) Service(name string) *Service { return s.byName[name] }

// Service is one service's routing state inside a Snapshot.
type Service struct {
	Name   string
	Config *config.Service
	// DCs holds a status per datacenter that deploys the service, in failover
	// order (priority, then configuration order).
	DCs []*DCStatus
	// AllDown is true when no datacenter is healthy and undrained.
	AllDown bool
	// Summary says each datacenter's state in a few words, for people.
	Summary string
	// TTL is the DNS TTL to serve, in seconds: dns_ttl, or the TTL derived
	// from failover_budget, which shrinks to config.MinTTL while a DC of the
	// service is flapping or has just recovered.
	TTL uint32
	// TTLReason says where TTL comes from.
	TTLReason string
	// Detection is the worst-case time to notice a failed DC, and
	// WorstCaseFailover adds the time caches may keep the old answer.
	Detection, WorstCaseFailover time.Duration

	// Policy is the service's policy, ShardMode its shard_routing.
	Policy    Policy
	ShardMode ShardMode

	policy     policy
	policyName Policy
	shardMode  ShardMode
	affinity   bool          // affinity: cookie
	slowStart  time.Duration // proxy.slow_start
	built      time.Time     // the snapshot's build time
	// dnsAll are the serving DCs that have addresses, for the all policy.
	dnsAll []*Target
	// serving are the targets that may serve, in failover order: the healthy,
	// undrained DCs, or under when_all_down=serve_all every undrained DC (every
	// DC if all are drained) when none is healthy.
	serving []*Target
	// firstBy[i] is serving reordered with serving[i] first, so a policy can
	// answer "DC i, then the rest in failover order" without allocating.
	firstBy [][]*Target
	// reasons[i] explains the decision whose first choice is serving[i].
	reasons  []string
	weights  weightTable // over serving, for weighted
	topTier  weightTable // over the leading DCs of equal priority, for failover
	networks []network   // client networks by descending prefix length, for nearest
	refused  string      // reason when nothing may serve
	rand     func(n uint64) uint64
	shards   shardTable
}

// DCStatus is one datacenter's state for one service.
type DCStatus struct {
	Name     string
	Priority int
	Weight   int
	State    State
	// Healthy and Total count endpoints; a DC is up when Healthy reaches Required.
	Healthy, Total, Required int
	// Reason says why the DC is not up, in words; empty when up.
	Reason string
	// Since is when State last changed.
	Since time.Time
	// Drain is the manual drain in effect, if any: the datacenter's, or
	// this service's in the datacenter (then ServiceDrain is true).
	Drain        *Drain
	ServiceDrain bool
	// Endpoints lists every endpoint with its health.
	Endpoints []EndpointStatus
	// Target is what a front door uses to reach this DC.
	Target *Target

	changed bool // Since is a change, not the first state learned
}

// EndpointStatus is an endpoint's health as the engine knows it.
type EndpointStatus struct {
	Address string
	Up      bool
	// Probed is false until the first result arrives.
	Probed bool
	Reason string
	Since  time.Time
	// Drain is the endpoint's manual drain, if any: a drained endpoint is
	// out of its DC's healthy set whatever its health.
	Drain *Drain
}

// Target is a datacenter as a front door reaches it for one service.
type Target struct {
	DC string
	// Endpoints are the endpoints to try, healthy ones first in configuration
	// order; while serving all because all are down it is every endpoint.
	Endpoints []string
	// Addresses are the DC's addresses for DNS answers.
	Addresses []netip.Addr
	// Status is the DC's status this target was built from.
	Status *DCStatus
}

// Decision is the answer to "where may this client be sent". Its slices belong
// to the snapshot and must not be modified.
type Decision struct {
	// Targets lists the datacenters to try, best first. Empty when refused.
	Targets []*Target
	// Reason explains the decision in words.
	Reason string
	// AllDown is true when no DC is healthy and the service serves all DCs
	// (when_all_down: serve_all) or refuses (Targets empty).
	AllDown bool
	// ScopeBits is how much of the client's address the decision depended on:
	// 0 when every client gets the same answer, the matched network's prefix
	// length under the nearest policy, or -1 when it depended on the client
	// without a matching network (a DNS server then answers for the client's
	// whole source prefix).
	ScopeBits int
}

// Decide returns the policy's ordered targets for the client, with the
// engine's random source. It is safe for concurrent use and does not
// allocate. Route adds to it what the proxy and DNS serve.
func (s *Service) Decide(client netip.Addr) Decision {
	if len(s.serving) == 0 {
		return Decision{Reason: s.refused, AllDown: true}
	}
	return s.policy.decide(s, client, s.rand)
}

// decision builds the Decision whose first choice is serving[i].
func (s *Service) decision(i, scope int) Decision {
	return Decision{Targets: s.firstBy[i], Reason: s.reasons[i], AllDown: s.AllDown, ScopeBits: scope}
}

// CameBackAt reports when the DC came back up, if it is up after having been
// down or drained (as opposed to up since start-up).
func (d *DCStatus) CameBackAt() (time.Time, bool) {
	return d.Since, d.State == StateUp && d.changed
}

// DC returns the status of the named datacenter, or nil.
func (s *Service) DC(name string) *DCStatus {
	for _, dc := range s.DCs {
		if dc.Name == name {
			return dc
		}
	}
	return nil
}

// Drain is a manual drain of a datacenter.
type Drain struct {
	Reason string `json:"reason"`
	// Mode is "hard" (everything leaves at once) or "soft" (DNS and new
	// sessions leave at once; pinned sessions stay until Deadline).
	Mode     string    `json:"mode"`
	Deadline time.Time `json:"deadline,omitzero"`
	By       string    `json:"by,omitempty"`
	Since    time.Time `json:"since"`
	// Origin, KnownOn and Members describe a drain replicated by the
	// cluster (see Engine.SetDrains): the member it was given to, and on
	// how many of the alive members it is known. Empty without a cluster.
	Origin  string `json:"origin,omitempty"`
	KnownOn int    `json:"known_on,omitempty"`
	Members int    `json:"members,omitempty"`
}

// HoldsPinned reports whether sessions pinned to the DC may stay at now.
func (d *Drain) HoldsPinned(now time.Time) bool {
	return d != nil && d.Mode == "soft" && now.Before(d.Deadline)
}
