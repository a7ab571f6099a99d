package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/cluster"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/health"
	"github.com/coopr-gslb/coopr-gslb/routing"
	"github.com/coopr-gslb/coopr-gslb/state"
)

// clusterWire connects an instance to its gossip cluster (the cluster:
// block). It exists only when the block is set; without it the instance
// runs exactly as a single one.
//
// The design: there are two routing engines. The instance's own engine
// (i.engine) keeps the local view, from this instance's probes and the
// proxy's passive signals: the proxy, the page, events and notifications
// read it, since the proxy can only send to what it can reach itself. The
// DNS engine (dns) is a second routing.Engine over the same configuration
// whose endpoint states are the cluster's quorum decisions: DNS answers
// read it, so every member gives resolvers the same answer. Drains are the
// cluster's replicated registers and are set, whole, on both engines after
// every change (routing.Engine.SetDrains). A second engine rather than an
// override inside routing keeps routing's one decision function untouched:
// the same Route runs on both, only the inputs differ, and where they differ
// is shown by GET /api/v1/cluster (proxy_differs).
type clusterWire struct {
	log    *slog.Logger
	engine *routing.Engine // the local view: proxy, page, events
	dns    *routing.Engine // the cluster's view: DNS
	store  *state.Store
	// saved are drains.json's drains, imported into the cluster once, on
	// the first clustered start.
	saved map[string]routing.Drain
	// key is the gossip key (nil without secret_key_file).
	key []byte

	cl atomic.Pointer[cluster.Cluster] // set by bind

	mu       sync.Mutex // serialises apply, so an older read never overwrites a newer one
	restored bool       // the first apply installs drains without events
	source   atomic.Pointer[string]
	covered  atomic.Bool // the cluster's view decides every endpoint
}

// newClusterWire prepares the cluster wiring for cfg (whose Cluster block
// is set). It opens no socket: bind does, in Run.
func newClusterWire(cfg *config.Config, engine *routing.Engine, store *state.Store, saved map[string]routing.Drain, log *slog.Logger) (*clusterWire, error) {
	w := &clusterWire{log: log, engine: engine, store: store, saved: saved}
	if f := cfg.Cluster.SecretKeyFile; f != "" {
		key, err := config.LoadClusterKey(f)
		if err != nil {
			return nil, fmt.Errorf("cluster.secret_key_file: %w", err)
		}
		w.key = key
	}
	w.dns = routing.New(cfg, routing.Options{})
	none := cluster.SourceNone
	w.source.Store(&none)
	return w, nil
}

// affinityKey is the affinity-cookie key every member derives from the
// cluster key, so that a pin set by one member verifies on all; nil when
// proxy.affinity_key_file is set (it wins) or there is no cluster key.
func (w *clusterWire) affinityKey(cfg *config.Config) []byte {
	if w == nil || w.key == nil || cfg.Proxy.AffinityKeyFile != "" {
		return nil
	}
	return cluster.DeriveSecret(w.key, cluster.SecretAffinity)
}

// dnsCookieSecret is the DNS server-cookie secret (RFC 7873) every member
// derives from the cluster key, so a client's cookie verifies on all; nil
// without a cluster key. The front doors hand it to the DNS server
// (dns.cookie_secret_file, when set, still wins).
func (w *clusterWire) dnsCookieSecret() []byte {
	if w == nil || w.key == nil {
		return nil
	}
	return cluster.DeriveSecret(w.key, cluster.SecretDNSCookie)
}

// bind creates the cluster member, which binds the gossip port (UDP and
// TCP) and loads the saved drains.
func (w *clusterWire) bind(cfg *config.Config, reg prometheus.Registerer) error {
	opts := cluster.Options{Config: cfg, Key: w.key, Logger: zapLogger(), Registerer: reg, Store: w.store}
	if wrap := testGossipDrop(); wrap != nil {
		opts.WrapTransport = wrap
	}
	cl, err := cluster.New(opts)
	if err != nil {
		return err
	}
	w.cl.Store(cl)
	// The first clustered start takes over what a single instance had
	// drained, so turning the cluster on forgets no drain.
	if !w.store.HasClusterDrains() && len(w.saved) > 0 {
		for dc, d := range w.saved {
			if _, err := cl.Drain(cluster.DrainKey{DC: dc}, cluster.DrainRequest{Reason: d.Reason, By: d.By, Mode: d.Mode, Deadline: d.Deadline}); err != nil {
				cl.Close()
				return fmt.Errorf("importing the drain of %s into the cluster: %w", dc, err)
			}
		}
	}
	w.apply()
	return nil
}

// zapLogger is memberlist's and the cluster's log: warnings and errors, as
// JSON on stderr, next to the main log.
func zapLogger() *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), zap.WarnLevel))
}

// run runs the cluster and feeds both engines whenever it changes, until
// ctx is done; then the cluster leaves and run returns once it has.
func (w *clusterWire) run(ctx context.Context) error {
	cl := w.cl.Load()
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case err := <-done:
			return fmt.Errorf("cluster: %w", err)
		case <-cl.Changed():
			w.apply()
		}
	}
}

// apply reads the cluster's view and drains and sets them on the engines.
func (w *clusterWire) apply() {
	cl := w.cl.Load()
	if cl == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	v := cl.View()
	cfg := w.dns.Snapshot().Config
	covered, peers := true, false
	forEachEndpoint(cfg, func(id routing.EndpointID) {
		ev, ok := v.Endpoints[cluster.EndpointKey{DC: id.DC, Service: id.Service, Endpoint: id.Endpoint}]
		if !ok || ev.Source == cluster.SourceNone {
			covered = false
			return
		}
		peers = peers || ev.Source == cluster.SourcePeers
		reason := ""
		if ev.Down {
			reason = fmt.Sprintf("down for a quorum of the members (%s)", strings.Join(ev.DownBy, ", "))
		}
		w.dns.UpdateEndpoint(routing.EndpointUpdate{DC: id.DC, Service: id.Service, Endpoint: id.Endpoint, Up: !ev.Down, Reason: reason})
	})
	w.covered.Store(covered)
	source := cluster.SourceCluster
	switch {
	case v.Alone:
		source = cluster.SourceSelf
	case peers:
		source = cluster.SourcePeers
	}
	if old := *w.source.Load(); old != source {
		w.source.Store(&source)
		w.log.Info("DNS answers from the cluster's view", "source", source, "alone", v.Alone)
	}

	drains := map[string]routing.Drain{}
	for _, d := range cl.Drains() {
		if d.Key.Service != "" || d.Key.Endpoint != "" {
			continue // per-service drains are not routed yet
		}
		drains[d.Key.DC] = routing.Drain{Reason: d.Reason, Mode: d.Mode, Deadline: d.Deadline, By: d.By, Since: d.At,
			Origin: d.Origin, KnownOn: d.KnownOn, Members: d.Members}
	}
	if !w.restored {
		// Drains known at start are restored without events, as a single
		// instance restores drains.json.
		w.restored = true
		w.engine.RestoreDrains(drains)
		w.dns.RestoreDrains(drains)
		return
	}
	var regs map[string]string
	undrainedBy := func(dc string) string {
		if regs == nil {
			regs = map[string]string{}
			for _, r := range cl.Registers() {
				if r.Deleted && r.Key.Service == "" {
					regs[r.Key.DC] = r.By
				}
			}
		}
		return regs[dc]
	}
	w.engine.SetDrains(drains, undrainedBy)
	w.dns.SetDrains(drains, nil)
}

// forEachEndpoint calls fn for every endpoint of every service in every DC.
func forEachEndpoint(cfg *config.Config, fn func(routing.EndpointID)) {
	for _, dc := range cfg.Datacenters {
		for _, name := range cfg.ServiceNames {
			if ds := dc.Services[name]; ds != nil {
				for _, ep := range ds.Endpoints {
					fn(routing.EndpointID{DC: dc.Name, Service: name, Endpoint: ep})
				}
			}
		}
	}
}

// report hands one of this instance's own health transitions to the
// cluster. Endpoints not probed yet abstain.
func (w *clusterWire) report(st health.Status) {
	if w == nil {
		return
	}
	cl := w.cl.Load()
	if cl == nil || !st.Probed {
		return
	}
	t := st.Target
	cl.Report(cluster.Observation{EndpointKey: cluster.EndpointKey{DC: t.DC, Service: t.Service, Endpoint: t.Endpoint},
		Up: st.Up, Since: st.Since, Reason: st.Reason})
}

// reload is the reload's cluster step: the DNS engine takes the new
// configuration, the cluster its peers, quorum and hash, and this member's
// observations are replaced by what the checker probes now (dropping
// removed endpoints). Restart-only cluster keys were already put back by
// keepRestartOnly, so the cluster's own list of them is only logged.
func (w *clusterWire) reload(next *config.Config, statuses []health.Status) {
	if w == nil {
		return
	}
	w.dns.SetConfig(next)
	cl := w.cl.Load()
	if cl == nil || next.Cluster == nil {
		return
	}
	if keys := cl.Reload(next); len(keys) > 0 {
		w.log.Warn("cluster keys take effect only after a restart", "keys", keys)
	}
	var obs []cluster.Observation
	for _, st := range statuses {
		if st.Probed {
			t := st.Target
			obs = append(obs, cluster.Observation{EndpointKey: cluster.EndpointKey{DC: t.DC, Service: t.Service, Endpoint: t.Endpoint},
				Up: st.Up, Since: st.Since, Reason: st.Reason})
		}
	}
	cl.SetObservations(obs)
	w.apply()
}

// drain gives a replicated drain: saved in the state directory before it
// returns, applied here at once and sent to every member.
func (w *clusterWire) drain(dc string, d routing.Drain) error {
	cl := w.cl.Load()
	if cl == nil {
		return errors.New("the cluster is not running yet")
	}
	if !hasDC(w.dns.Snapshot().Config, dc) {
		return fmt.Errorf("%w %q", routing.ErrUnknownDC, dc)
	}
	if _, err := cl.Drain(cluster.DrainKey{DC: dc}, cluster.DrainRequest{Reason: d.Reason, By: d.By, Mode: d.Mode, Deadline: d.Deadline}); err != nil {
		return fmt.Errorf("the drain of %s was not given: %w", dc, err)
	}
	w.apply()
	return nil
}

// undrain lifts a replicated drain (a tombstone, saved before it returns).
// A DC that is not drained is admin.ErrNotDrained, and nothing is written.
func (w *clusterWire) undrain(dc, by string) error {
	cl := w.cl.Load()
	if cl == nil {
		return errors.New("the cluster is not running yet")
	}
	if !hasDC(w.dns.Snapshot().Config, dc) {
		return fmt.Errorf("%w %q", routing.ErrUnknownDC, dc)
	}
	if _, err := cl.Undrain(cluster.DrainKey{DC: dc}, by); err != nil {
		if errors.Is(err, cluster.ErrNotDrained) {
			return fmt.Errorf("%w: %s", admin.ErrNotDrained, dc)
		}
		return fmt.Errorf("the undrain of %s was not given: %w", dc, err)
	}
	w.apply()
	return nil
}

// drainScoped and undrainScoped are the admin API's drain hooks in a
// cluster. Only whole-DC drains are replicated so far: a drain of a service
// or an endpoint is refused rather than applied on this member alone, where
// the members would then disagree.
func (w *clusterWire) drainScoped(scope routing.DrainScope, d routing.Drain) error {
	if !scope.IsDC() {
		return fmt.Errorf("%w: drains of a service or an endpoint (%s) are not replicated in a cluster yet; drain the DC", admin.ErrNotSupported, scope)
	}
	return w.drain(scope.DC, d)
}

func (w *clusterWire) undrainScoped(scope routing.DrainScope, by string) error {
	if !scope.IsDC() {
		return fmt.Errorf("%w: drains of a service or an endpoint (%s) are not replicated in a cluster yet", admin.ErrNotSupported, scope)
	}
	return w.undrain(scope.DC, by)
}

func hasDC(cfg *config.Config, name string) bool {
	for _, dc := range cfg.Datacenters {
		if dc.Name == name {
			return true
		}
	}
	return false
}

// dnsOpen reports whether DNS may answer before this instance's own first
// probe round is in: when the peers' view already decides every endpoint.
func (w *clusterWire) dnsOpen() bool {
	return w != nil && w.covered.Load() && *w.source.Load() != cluster.SourceNone
}

// status renders GET /api/v1/cluster and the page's cluster section.
func (w *clusterWire) status() *admin.ClusterStatus {
	cl := w.cl.Load()
	if cl == nil {
		return nil
	}
	st := &admin.ClusterStatus{Snapshot: cl.Snapshot(), DNSView: *w.source.Load(), Decision: map[string]map[string]string{},
		Outvoted: []string{}, ProxyDiffers: []admin.ViewDiff{}}
	v := cl.View()
	for k, ev := range v.Endpoints {
		if ev.Outvoted {
			st.Outvoted = append(st.Outvoted, k.String())
		}
	}
	slices.Sort(st.Outvoted)
	local, dns := w.engine.Snapshot(), w.dns.Snapshot()
	for _, svc := range dns.Services {
		st.Decision[svc.Name] = map[string]string{}
		for _, dc := range svc.DCs {
			st.Decision[svc.Name][dc.Name] = dc.State.String()
		}
	}
	for _, svc := range local.Services {
		dsvc := dns.Service(svc.Name)
		if dsvc == nil {
			continue
		}
		for _, dc := range svc.DCs {
			if ddc := dsvc.DC(dc.Name); ddc != nil && ddc.State != dc.State {
				st.ProxyDiffers = append(st.ProxyDiffers, admin.ViewDiff{Service: svc.Name, DC: dc.Name, Proxy: dc.State.String(), DNS: ddc.State.String()})
			}
		}
	}
	return st
}

// close shuts the member down if Run never ran it; safe to call twice.
func (w *clusterWire) close() {
	if cl := w.cl.Load(); cl != nil {
		cl.Close()
	}
	w.dns.Close()
}

// statusFunc is admin's Options.Cluster: nil without a cluster.
func (w *clusterWire) statusFunc() func() *admin.ClusterStatus {
	if w == nil {
		return nil
	}
	return w.status
}

// dnsEngine is the engine DNS answers from: the cluster's view when there
// is a cluster, else the instance's own.
func (i *Instance) dnsEngine() *routing.Engine {
	if i.cw != nil {
		return i.cw.dns
	}
	return i.engine
}
