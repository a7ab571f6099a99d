package dnsserver

import (
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// view pairs a routing snapshot with the zone built from its configuration
// and indexes what a GSLB answer needs from the snapshot. It is built once
// per snapshot and read-only afterwards.
type view struct {
	snap *routing.Snapshot
	zone *zone
	// services[i] is the routing service of zone.services[i], nil if the
	// snapshot lacks it.
	services []*routing.Service
	// targets maps every routing target of the snapshot to its addresses.
	targets map[*routing.Target]*dcData
}

func newView(snap *routing.Snapshot, z *zone) *view {
	v := &view{
		snap:     snap,
		zone:     z,
		services: make([]*routing.Service, len(z.services)),
		targets:  map[*routing.Target]*dcData{},
	}
	for i, sd := range z.services {
		svc := snap.Service(sd.name)
		v.services[i] = svc
		if svc == nil {
			continue
		}
		for _, dc := range svc.DCs {
			if dd := sd.dcs[dc.Name]; dd != nil && dc.Target != nil {
				v.targets[dc.Target] = dd
			}
		}
	}
	return v
}

// current returns the view of the current snapshot, building it (and the
// zone, when the configuration changed) on first use. It returns nil when
// there is no snapshot (queries then get SERVFAIL).
func (s *Server) current() *view {
	snap := s.opts.Snapshot()
	if snap == nil || snap.Config == nil {
		return nil
	}
	if v := s.view.Load(); v != nil && v.snap == snap {
		return v
	}
	return s.rebuild(snap)
}

// rebuild makes the view of snap. Builders are serialized so that a burst of
// queries seeing a new snapshot builds it once; readers of the old view are
// never blocked.
func (s *Server) rebuild(snap *routing.Snapshot) *view {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	old := s.view.Load()
	if old != nil && old.snap == snap {
		return old
	}
	// A query that loaded its snapshot just before a newer one was indexed
	// is answered from the newer view: it is more current, and rebuilding
	// an older configuration would bump the serial for nothing. (Built
	// breaks the tie if the snapshot comes from a new Engine whose
	// generations restarted.)
	if old != nil && snap.Generation < old.snap.Generation && !snap.Built.After(old.snap.Built) {
		return old
	}
	var z *zone
	sg := s.signer.Load()
	if old != nil && old.zone.cfg == snap.Config && old.zone.signer == sg {
		z = old.zone
	} else {
		// The serial derives from the zone's content (contentSerial).
		z = buildZone(snap.Config, snap, 0, s.metrics, s.log)
		z.addDNSKEYs(sg)
		s.limiter.configure(z.settings.rrl)
	}
	v := newView(snap, z)
	s.view.Store(v)
	return v
}

// Prepare builds the view of snap ahead of the queries that will need it
// (the instance calls it when the engine publishes a snapshot), so no query
// pays for building it, and pre-signs the RRsets the view can answer with
// when the zone is signed (see presignSets). Queries still build a view themselves if they see
// a snapshot first.
func (s *Server) Prepare(snap *routing.Snapshot) {
	if snap != nil && snap.Config != nil {
		s.presign(s.rebuild(snap))
	}
}

// targetDC names the datacenter of the first of ts (the DNS answer's
// datacenters), "" for none.
func (v *view) targetDC(ts []*routing.Target) string {
	if len(ts) == 0 {
		return ""
	}
	if dd := v.targets[ts[0]]; dd != nil {
		return dd.dc
	}
	return ""
}
