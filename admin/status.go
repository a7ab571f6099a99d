package admin

import (
	"net/netip"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// Status is the document /api/v1/status serves and the status page renders.
type Status struct {
	Version    string                   `json:"version"`
	Ready      bool                     `json:"ready"`
	Generation uint64                   `json:"generation"`
	Updated    time.Time                `json:"updated"`
	Services   []ServiceStatus          `json:"services"`
	Drains     map[string]routing.Drain `json:"drains"`
	// ScopedDrains are the drains of a service in a DC and of an endpoint.
	ScopedDrains []routing.ScopedDrain `json:"scoped_drains"`
	// Reload is the outcome of the last configuration reload, if any.
	Reload *ReloadStatus `json:"reload,omitempty"`
	// DNSSEC is the zone's signing state, absent when it is not signed.
	DNSSEC *DNSSECStatus `json:"dnssec,omitempty"`
}

// ServiceStatus is one service's routing state.
type ServiceStatus struct {
	Name    string `json:"name"`
	Policy  string `json:"policy"`
	AllDown bool   `json:"all_down"`
	// State is "ok", "serving_all" (no DC healthy, failing open) or "refusing".
	State   string `json:"state"`
	Summary string `json:"summary"`
	// DNSAnswer and ProxyTarget are what a client with no matching network
	// gets right now.
	DNSAnswer   []string   `json:"dns_answer"`
	ProxyTarget string     `json:"proxy_target"`
	Reason      string     `json:"reason"`
	Datacenters []DCStatus `json:"datacenters"`
	// DNSTTL is the TTL served now and TTLReason where it comes from;
	// DetectionSeconds and WorstCaseFailoverSeconds are what the health
	// settings and the TTL buy: the worst time a client may still be sent
	// to a failed DC.
	DNSTTL                   uint32  `json:"dns_ttl"`
	TTLReason                string  `json:"ttl_reason"`
	DetectionSeconds         float64 `json:"detection_seconds"`
	WorstCaseFailoverSeconds float64 `json:"worst_case_failover_seconds"`
	// ShardRouting is the service's shard_routing; Shards its shard map.
	ShardRouting string        `json:"shard_routing"`
	Shards       []ShardStatus `json:"shards,omitempty"`
}

// ShardStatus is one DC's partition of Coopr's cluster IDs and its owner now.
type ShardStatus struct {
	Home      string    `json:"home"`
	Start     int       `json:"start"`
	Increment int       `json:"increment"`
	Owner     string    `json:"owner"`
	TakenOver bool      `json:"taken_over"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// DCStatus is one datacenter's state for one service.
type DCStatus struct {
	Name      string           `json:"name"`
	State     string           `json:"state"`
	Priority  int              `json:"priority"`
	Weight    int              `json:"weight"`
	Healthy   int              `json:"healthy"`
	Total     int              `json:"total"`
	Required  int              `json:"required"`
	Reason    string           `json:"reason,omitempty"`
	Since     time.Time        `json:"since"`
	Drain     *routing.Drain   `json:"drain,omitempty"`
	Endpoints []EndpointStatus `json:"endpoints"`

	// DrainScope says what Drain takes out: "datacenter" or "service".
	DrainScope string `json:"drain_scope,omitempty"`
}

// EndpointStatus is one endpoint's latest probe.
type EndpointStatus struct {
	Address   string    `json:"address"`
	Up        bool      `json:"up"`
	Probed    bool      `json:"probed"`
	LastOK    bool      `json:"last_ok"`
	LastError string    `json:"last_error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	LastProbe time.Time `json:"last_probe,omitzero"`
	Since     time.Time `json:"since,omitzero"`
	// Drain is the endpoint's manual drain: it takes no traffic while it
	// lasts, whatever its health.
	Drain *routing.Drain `json:"drain,omitempty"`
}

func (s *Server) buildStatus() Status {
	snap := s.opts.Snapshot()
	probes := map[routing.EndpointID]health.Status{}
	if s.opts.Probes != nil {
		for _, p := range s.opts.Probes() {
			probes[routing.EndpointID{DC: p.Target.DC, Service: p.Target.Service, Endpoint: p.Target.Endpoint}] = p
		}
	}
	st := Status{Version: s.opts.Version, Ready: s.ready(), Generation: snap.Generation, Updated: snap.Built, Drains: snap.Drains,
		ScopedDrains: append([]routing.ScopedDrain{}, snap.ScopedDrains...)}
	if s.opts.DNSSEC != nil {
		st.DNSSEC = s.opts.DNSSEC()
	}
	if s.opts.LastReload != nil {
		if rs := s.opts.LastReload(); !rs.Time.IsZero() {
			st.Reload = &rs
		}
	}
	for _, svc := range snap.Services {
		// The page shows what a client with no matching network gets. A
		// fixed random source keeps a weighted service's answer the same
		// from one load to the next: the first DC of its weight table.
		ans := svc.Route(routing.Request{Client: netip.IPv4Unspecified(), Rand: firstPick}, nil)
		d := ans.Decision
		ss := ServiceStatus{Name: svc.Name, Policy: string(svc.Policy), AllDown: svc.AllDown, Summary: svc.Summary, Reason: d.Reason, State: "ok", DNSAnswer: addrStrings(ans.Addresses()), ShardRouting: string(svc.ShardMode),
			DNSTTL: svc.TTL, TTLReason: svc.TTLReason, DetectionSeconds: svc.Detection.Seconds(), WorstCaseFailoverSeconds: svc.WorstCaseFailover.Seconds()}
		for _, sh := range svc.Shards() {
			ss.Shards = append(ss.Shards, ShardStatus{Home: sh.Home, Start: sh.Start, Increment: sh.Increment, Owner: sh.Owner,
				TakenOver: sh.Owner != sh.Home, Reason: sh.Reason, Since: sh.Since})
		}
		switch {
		case svc.AllDown && len(d.Targets) > 0:
			ss.State = "serving_all"
		case svc.AllDown:
			ss.State = "refusing"
		}
		if len(ans.Proxy) > 0 {
			ss.ProxyTarget = ans.Proxy[0].DC
		}
		for _, dc := range svc.DCs {
			ds := DCStatus{Name: dc.Name, State: dc.State.String(), Priority: dc.Priority, Weight: dc.Weight, Healthy: dc.Healthy,
				Total: dc.Total, Required: dc.Required, Reason: dc.Reason, Since: dc.Since, Drain: dc.Drain}
			switch {
			case dc.ServiceDrain:
				ds.DrainScope = "service"
			case dc.Drain != nil:
				ds.DrainScope = "datacenter"
			}
			if svc.AllDown && len(d.Targets) > 0 && dc.State == routing.StateDown {
				ds.State = "serving_all"
			}
			for _, ep := range dc.Endpoints {
				es := EndpointStatus{Address: ep.Address, Up: ep.Up, Probed: ep.Probed, Since: ep.Since, LastError: ep.Reason, Drain: ep.Drain}
				if p, ok := probes[routing.EndpointID{DC: dc.Name, Service: svc.Name, Endpoint: ep.Address}]; ok && p.Probed {
					es.LastOK = p.Last.OK
					es.LastError = p.Last.Err
					es.LatencyMS = float64(p.Last.Latency.Microseconds()) / 1000
					es.LastProbe = p.Last.At
				}
				ds.Endpoints = append(ds.Endpoints, es)
			}
			ss.Datacenters = append(ss.Datacenters, ds)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// Explanation is what /api/v1/explain answers: the decision for one client and why.
type Explanation struct {
	Service string `json:"service"`
	Policy  string `json:"policy"`
	Client  string `json:"client"`
	// Chosen is the proxy's first target; Order the proxy's targets.
	Chosen    string   `json:"chosen"`
	Order     []string `json:"order"`
	DNSAnswer []string `json:"dns_answer"`
	// DNSDCs are the datacenters whose addresses DNSAnswer carries.
	DNSDCs  []string `json:"dns_dcs"`
	AllDown bool     `json:"all_down"`
	Reason  string   `json:"reason"`
	Steps   []string `json:"steps"`
}

// explainDecision renders the answer of one routing.Route call, so explain
// says exactly what the proxy and DNS serve for req.
func explainDecision(svc *routing.Service, req routing.Request) Explanation {
	req.Explain = true
	ans := svc.Route(req, nil)
	ex := Explanation{Service: svc.Name, Policy: string(svc.Policy), Client: req.Client.String(), AllDown: ans.AllDown, Reason: ans.Reason,
		Order: []string{}, DNSAnswer: addrStrings(ans.Addresses()), DNSDCs: []string{}, Steps: ans.Steps}
	for _, t := range ans.Proxy {
		ex.Order = append(ex.Order, t.DC)
	}
	for _, t := range ans.DNS {
		ex.DNSDCs = append(ex.DNSDCs, t.DC)
	}
	if len(ans.Proxy) > 0 {
		ex.Chosen = ans.Proxy[0].DC
	}
	return ex
}

// firstPick is the status page's random source: always the first entry.
func firstPick(uint64) uint64 { return 0 }

func addrStrings(as []netip.Addr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func normalizeHost(h string) string { return config.CanonicalHost(h) }
