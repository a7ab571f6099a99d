// Package cluster makes several coopr-gslb instances one: a gossip cluster
// over hashicorp/memberlist in which every member publishes its own probe
// observations, decides each endpoint by a quorum of the live members that
// observe it, replicates operator drains as last-writer-wins registers under
// a hybrid logical clock, and compares configuration hashes.
//
// A Cluster is created by New (which binds the gossip port), run by Run
// (which joins the peers and owns every goroutine of the package) and read
// through View, Drains and Snapshot, which return values the caller owns.
// Changed tells the caller when to read again. All methods are safe for
// concurrent use.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// Member states, as GET /api/v1/cluster shows them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
)

const (
	maxHeartbeat = 2 * time.Second
	maxAlive     = 20 * time.Second
)

// forgetDead is how long a dead member stays on the cluster page.
const forgetDead = time.Hour

// Label is memberlist's packet label: gossip of other memberlist users on
// the same port (Consul, Serf...) is refused before decryption.
const Label = "coopr-gslb"

// Clock is the source of wall time for stamps, expiry and the page.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Timings tune the gossip. The defaults (DefaultTimings) start from
// memberlist's WAN configuration, probe often enough that a member
// unreachable for 25 s is no longer alive, exchange state every few seconds
// and re-join missing peers every 3 s. Tests shorten them. A zero field
// means its default.
type Timings struct {
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	GossipInterval   time.Duration
	PushPullInterval time.Duration
	TCPTimeout       time.Duration
	SuspicionMult    int
	// Rejoin is how often peers that are not alive members are joined again.
	Rejoin time.Duration
	// Heartbeat is how often this member sends its state to every member.
	// Zero means health.interval, at most 2 s.
	Heartbeat time.Duration
	// Expire drops a peer's observations when it has been silent this long.
	// Zero means three probe intervals (health.interval), and never less
	// than three heartbeats.
	Expire time.Duration
	// Alive is how long a peer may be silent and still count as alive (and
	// vote). Zero means Expire, at most 20 s: a member unreachable for 25 s
	// is no longer alive whatever the probe interval.
	Alive time.Duration
}

// DefaultTimings returns the timings used for a zero Timings field.
func DefaultTimings() Timings {
	return Timings{
		ProbeInterval:    3 * time.Second,
		ProbeTimeout:     2 * time.Second,
		GossipInterval:   500 * time.Millisecond,
		PushPullInterval: 5 * time.Second,
		TCPTimeout:       5 * time.Second,
		SuspicionMult:    4,
		Rejoin:           3 * time.Second,
	}
}

func (t Timings) orDefaults(cfg *config.Config) Timings {
	d := DefaultTimings()
	or := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	or(&t.ProbeInterval, d.ProbeInterval)
	or(&t.ProbeTimeout, d.ProbeTimeout)
	or(&t.GossipInterval, d.GossipInterval)
	or(&t.PushPullInterval, d.PushPullInterval)
	or(&t.TCPTimeout, d.TCPTimeout)
	or(&t.Rejoin, d.Rejoin)
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	interval := cfg.Health.Interval.D()
	if interval <= 0 {
		interval = config.DefaultInterval
	}
	or(&t.Heartbeat, min(interval, maxHeartbeat))
	or(&t.Expire, max(3*interval, 3*t.Heartbeat))
	or(&t.Alive, min(t.Expire, maxAlive))
	return t
}

// Options configure New. Config is required; the rest may be left zero.
type Options struct {
	// Config is the loaded configuration; its Cluster block must not be nil.
	Config *config.Config
	// Key is the gossip key (16, 24 or 32 bytes). If nil, it is read from
	// cluster.secret_key_file; if that is empty too, gossip is not encrypted.
	Key []byte
	// Logger receives memberlist's warnings and errors and the package's own
	// messages. If nil, nothing is logged.
	Logger *zap.Logger
	// Registerer receives the package's metrics. If nil, they are kept but
	// not registered.
	Registerer prometheus.Registerer
	// Clock is the wall clock. If nil, the system's.
	Clock Clock
	// Store persists the drains. If nil, they live in memory only.
	Store DrainStore
	// Timings tune the gossip; see Timings.
	Timings Timings
	// WrapTransport, if not nil, wraps the network transport (tests use it
	// to cut links).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Cluster is this instance's membership in the cluster. See the package
// documentation.
type Cluster struct {
	name    string
	log     *zap.Logger
	clock   Clock
	store   DrainStore
	met     *metrics
	timings Timings
	bind    string

	ml       atomic.Pointer[memberlist.Memberlist]
	numPeers atomic.Int32 // len(members), for the broadcast queue
	queue    *memberlist.TransmitLimitedQueue

	mu      sync.Mutex // guards the fields below; never held while calling memberlist
	tab     *table
	cfg     *config.Config
	hash    string
	quorum  int
	peers   []string
	gone    map[string]goneMember
	members map[string]memberEntry // peers memberlist counts in, self excluded
	addr    string                 // this member's advertised host:port

	saveMu sync.Mutex // serialises Store.SaveClusterDrains
	dirty  atomic.Bool
	kick   atomic.Bool   // send the state to every member now
	wake   chan struct{} // the run loop has work
	change chan struct{} // the caller's notification

	runOnce   sync.Once
	closeOnce sync.Once
	closeErr  error
}

// memberEntry is a peer as memberlist's events last described it. memberlist
// rewrites the Nodes that Members returns in place, without a lock readers
// could take (hashicorp/memberlist#306), and never sets their State, so
// the Cluster keeps copies made in the event callbacks, which memberlist calls
// under its node lock, and judges liveness itself.
type memberEntry struct {
	node   memberlist.Node
	joined time.Time
}

// goneMember is a member memberlist reported dead or gone.
type goneMember struct {
	addr string
	at   time.Time
}

// New binds the gossip port and prepares the member; Run joins the peers.
// Drains saved in the store are loaded first, so a restarted member serves
// them before it hears from anyone.
func New(opts Options) (*Cluster, error) {
	cfg := opts.Config
	if cfg == nil || cfg.Cluster == nil {
		return nil, errors.New("cluster: no cluster block in the configuration")
	}
	cl := cfg.Cluster
	key := opts.Key
	if key == nil && cl.SecretKeyFile != "" {
		k, err := config.LoadClusterKey(cl.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.secret_key_file: %w", err)
		}
		key = k
	}
	c := &Cluster{
		name:    cl.Name,
		log:     opts.Logger,
		clock:   opts.Clock,
		store:   opts.Store,
		met:     newMetrics(opts.Registerer),
		timings: opts.Timings.orDefaults(cfg),
		bind:    cl.Bind,
		cfg:     cfg,
		hash:    ConfigHash(cfg),
		quorum:  cl.Quorum.Count,
		peers:   slices.Clone(cl.Peers),
		members: map[string]memberEntry{},
		gone:    map[string]goneMember{},
		wake:    make(chan struct{}, 1),
		change:  make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	c.tab = newTable(c.name, uint64(c.clock.Now().UnixNano()))
	if c.store != nil {
		saved, err := c.store.LoadClusterDrains()
		if err != nil {
			return nil, fmt.Errorf("cluster: loading drains: %w", err)
		}
		now := c.clock.Now()
		for _, d := range saved {
			c.tab.merge(d, now)
		}
	}
	c.queue = &memberlist.TransmitLimitedQueue{
		// Counted from the events, not ml.NumMembers: the queue may be
		// asked from inside memberlist, and its node lock is not reentrant.
		NumNodes:       func() int { return int(c.numPeers.Load()) + 1 },
		RetransmitMult: 3,
	}

	mc, err := c.memberlistConfig(cl, key, opts.WrapTransport)
	if err != nil {
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		mc.Transport.Shutdown()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.ml.Store(ml)
	// No peer is known yet, so nothing rewrites the local node concurrently.
	c.addr = ml.LocalNode().Address()
	return c, nil
}

func (c *Cluster) memberlistConfig(cl *config.Cluster, key []byte, wrap func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport) (*memberlist.Config, error) {
	t := c.timings
	mc := memberlist.DefaultWANConfig()
	mc.Name = cl.Name
	mc.Label = Label
	mc.SecretKey = key
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.GossipInterval = t.GossipInterval
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.TCPTimeout
	mc.SuspicionMult = t.SuspicionMult
	// memberlist slows its probes by up to this factor when it doubts its own
	// health; WAN's 8 would stretch detection past 25 s.
	mc.AwarenessMaxMultiplier = 3
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	mc.Logger = log.New(zapWriter{c.log}, "", 0)

	host, port, err := splitHostPort(cl.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster.bind: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr, mc.BindPort = host, port
	if cl.Advertise != "" {
		ahost, aport, err := splitHostPort(cl.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster.advertise: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ahost, aport
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.bind %s: %w", cl.Bind, err)
	}
	mc.BindPort = nt.GetAutoBindPort()
	if mc.AdvertiseAddr == "" {
		mc.AdvertisePort = mc.BindPort
	}
	var tr memberlist.NodeAwareTransport = nt
	if wrap != nil {
		tr = wrap(nt)
	}
	mc.Transport = tr
	return mc, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// Name returns this member's name.
func (c *Cluster) Name() string { return c.name }

// Address returns the host:port other members reach this one at.
func (c *Cluster) Address() string { return c.addr }

// Changed returns a channel that receives a value (coalesced) after the
// view, the drains or the membership may have changed. The caller reads
// View and Drains again and feeds the routing engine.
func (c *Cluster) Changed() <-chan struct{} { return c.change }

func (c *Cluster) notify() {
	select {
	case c.change <- struct{}{}:
	default:
	}
}

func (c *Cluster) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run joins the peers and runs the cluster until ctx is done: the heartbeat
// and expiry loop, the re-join loop and one sender per member. When ctx is
// done it leaves the cluster (so peers see it gone at once rather than
// after the suspicion timeout), saves the drains, shuts memberlist down and
// returns after every goroutine has ended. Run may be called once.
func (c *Cluster) Run(ctx context.Context) error {
	ran := false
	c.runOnce.Do(func() { ran = true })
	if !ran {
		return errors.New("cluster: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if c.dirty.Swap(false) {
			c.persist()
		}
		ml := c.ml.Load()
		if ml.NumMembers() > 1 {
			_ = ml.Leave(min(time.Second, c.timings.ProbeInterval))
		}
		c.Close()
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		c.rejoinLoop(ctx)
	}()

	senders := map[string]*sender{}
	tick := time.NewTicker(c.timings.Heartbeat)
	defer tick.Stop()
	lastAlive := ""
	c.kick.Store(true)
	for {
		c.syncSenders(ctx, &wg, senders)
		if c.kick.Swap(false) {
			for _, s := range senders {
				s.poke()
			}
		}
		if c.dirty.Swap(false) {
			c.persist()
		}
		if alive := fmt.Sprint(c.aliveNames()); alive != lastAlive {
			lastAlive = alive
			c.notify()
		}
		c.updateMetrics()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.mu.Lock()
			now := c.clock.Now()
			expired := c.tab.expire(now, c.timings.Expire)
			for name, g := range c.gone {
				if now.Sub(g.at) > forgetDead {
					delete(c.gone, name)
					delete(c.tab.peers, name)
				}
			}
			c.mu.Unlock()
			if expired {
				c.notify()
			}
			c.kick.Store(true)
		case <-c.wake:
		}
	}
}

// Close shuts memberlist down without leaving. Run calls it; call it
// directly only for a Cluster that was never run. It is safe to call twice.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.ml.Load().Shutdown() })
	return c.closeErr
}

// sender delivers this member's state to one member over memberlist's
// reliable (TCP) channel. Pokes coalesce: a slow member gets the latest
// state once, not a backlog.
type sender struct {
	node memberlist.Node
	kick chan struct{}
	stop chan struct{}
}

func (s *sender) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// syncSenders starts a sender for every alive or suspect member and stops
// those of members that are gone or moved.
func (c *Cluster) syncSenders(ctx context.Context, wg *sync.WaitGroup, senders map[string]*sender) {
	current := map[string]bool{}
	c.mu.Lock()
	nodes := make([]memberlist.Node, 0, len(c.members))
	for _, e := range c.members {
		nodes = append(nodes, e.node)
	}
	c.mu.Unlock()
	for _, n := range nodes {
		current[n.Name] = true
		if s := senders[n.Name]; s != nil {
			if s.node.Address() == n.Address() {
				continue
			}
			close(s.stop)
		}
		s := &sender{node: n, kick: make(chan struct{}, 1), stop: make(chan struct{})}
		senders[n.Name] = s
		s.poke() // a new member gets our state at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.sendLoop(ctx, s)
		}()
	}
	for name, s := range senders {
		if !current[name] {
			close(s.stop)
			delete(senders, name)
		}
	}
}

// sendLoop sends on every poke; a failed send is retried after a backoff
// (from retryMin, doubling up to the heartbeat) rather than at the next
// heartbeat, so one lost connection does not delay a drain by a heartbeat.
func (c *Cluster) sendLoop(ctx context.Context, s *sender) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var retry <-chan time.Time // timer.C while a retry is due
	backoff := retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-s.kick:
		case <-retry:
		}
		timer.Stop()
		retry = nil
		msg := c.stateMessage()
		if err := c.ml.Load().SendReliable(&s.node, msg); err != nil {
			c.met.messages.WithLabelValues("failed", "state").Inc()
			c.log.Debug("cluster: sending state", zap.String("member", s.node.Name), zap.Error(err))
			timer.Reset(backoff)
			retry = timer.C
			backoff = min(2*backoff, c.timings.Heartbeat)
			continue
		}
		backoff = retryMin
		c.met.messages.WithLabelValues("sent", "state").Inc()
	}
}

// retryMin is the first pause before a failed state send is retried.
const retryMin = 100 * time.Millisecond

func (c *Cluster) stateMessage() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return encode(kindState, c.tab.localState(c.hash, true))
}

// rejoinLoop joins, every Rejoin, the peers that are not alive members: at
// start, after a failed join, and after a partition heals.
func (c *Cluster) rejoinLoop(ctx context.Context) {
	t := time.NewTicker(c.timings.Rejoin)
	defer t.Stop()
	warned := false
	for {
		if err := c.rejoin(); err != nil && !warned {
			c.log.Warn("cluster: joining peers failed; serving alone until they answer", zap.Error(err))
			warned = true
		} else if err == nil {
			warned = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) rejoin() error {
	c.mu.Lock()
	peers := slices.Clone(c.peers)
	alive := map[string]bool{c.addr: true, c.bind: true}
	now := c.clock.Now()
	for name, e := range c.members {
		if c.isAlive(name, e, now) {
			alive[e.node.Address()] = true
		}
	}
	c.mu.Unlock()
	ml := c.ml.Load()
	var targets []string
	for _, p := range peers {
		if !alive[p] {
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	n, err := ml.Join(targets)
	if n > 0 {
		c.kick.Store(true)
		c.wakeUp()
		return nil
	}
	return err
}

// persist saves every drain register (tombstones included).
func (c *Cluster) persist() {
	if c.store == nil {
		return
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	all := c.tab.allDrains()
	c.mu.Unlock()
	if err := c.store.SaveClusterDrains(all); err != nil {
		c.log.Error("cluster: saving drains", zap.Error(err))
		c.dirty.Store(true) // try again on the next heartbeat
	}
}

// isAlive reports whether a peer memberlist counts in is alive: heard from
// (or joined) within the expiry. One that memberlist still lists but that has
// been silent longer is suspect. c.mu must be held.
func (c *Cluster) isAlive(name string, e memberEntry, now time.Time) bool {
	last := e.joined
	if p := c.tab.peers[name]; p != nil && p.heard.After(last) {
		last = p.heard
	}
	return now.Sub(last) <= c.timings.Alive
}

// aliveNames returns the names of the alive members, self included, sorted.
func (c *Cluster) aliveNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aliveLocked(c.clock.Now())
}

func (c *Cluster) aliveLocked(now time.Time) []string {
	out := []string{c.name}
	for name, e := range c.members {
		if c.isAlive(name, e, now) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Report records one of this member's own observations (a health
// transition) and sends it to the members at once.
func (c *Cluster) Report(o Observation) {
	c.mu.Lock()
	changed := c.tab.report(o)
	c.mu.Unlock()
	if changed {
		c.kick.Store(true)
		c.wakeUp()
		c.notify()
	}
}

// SetObservations replaces all of this member's own observations (after a
// reload changed the endpoints, or from the checker's full status list).
func (c *Cluster) SetObservations(obs []Observation) {
	c.mu.Lock()
	changed := c.tab.setObservations(obs)
	c.mu.Unlock()
	if changed {
		c.kick.Store(true)
		c.wakeUp()
		c.notify()
	}
}

// View returns the cluster's decision for every observed endpoint.
func (c *Cluster) View() View {
	c.mu.Lock()
	now := c.clock.Now()
	alive := c.aliveLocked(now)
	ballots := c.tab.ballots(alive, now, c.timings.Expire)
	q, qs := c.quorum, c.quorumText()
	c.mu.Unlock()
	return buildView(c.name, ballots, q, len(alive) <= 1, qs)
}

func (c *Cluster) quorumText() string {
	if c.quorum == 0 {
		return "majority"
	}
	return strconv.Itoa(c.quorum)
}

// Alone reports whether no peer is alive.
func (c *Cluster) Alone() bool { return len(c.aliveNames()) <= 1 }

// Drain drains key cluster-wide. The drain is saved in the store before
// Drain returns (an error leaves nothing changed), then broadcast and sent
// to every member at once.
func (c *Cluster) Drain(key DrainKey, r DrainRequest) (Drain, error) {
	return c.write(func(t *table, now time.Time) (Drain, bool) { return t.newDrain(key, r, now), true })
}

// Undrain lifts the drain of key cluster-wide, writing a tombstone. It
// returns ErrNotDrained, and writes nothing, when key is not drained.
func (c *Cluster) Undrain(key DrainKey, by string) (Drain, error) {
	return c.write(func(t *table, now time.Time) (Drain, bool) { return t.newUndrain(key, by, now) })
}

func (c *Cluster) write(make func(*table, time.Time) (Drain, bool)) (Drain, error) {
	c.saveMu.Lock()
	c.mu.Lock()
	d, ok := make(c.tab, c.clock.Now())
	var all []Drain
	if ok && c.store != nil {
		all = c.tab.withDrain(d)
	}
	c.mu.Unlock()
	if !ok {
		c.saveMu.Unlock()
		return Drain{}, ErrNotDrained
	}
	if c.store != nil {
		if err := c.store.SaveClusterDrains(all); err != nil {
			c.saveMu.Unlock()
			return Drain{}, fmt.Errorf("saving the drain: %w", err)
		}
	}
	c.mu.Lock()
	c.tab.merge(d, c.clock.Now())
	c.mu.Unlock()
	c.saveMu.Unlock()

	c.queue.QueueBroadcast(&drainBroadcast{name: d.Key.String(), msg: encode(kindDrains, &stateMsg{From: c.name, Drains: []Drain{d}})})
	c.kick.Store(true)
	c.wakeUp()
	c.notify()
	return d, nil
}

// Drains returns the drains in force, by key, with how many members hold them.
func (c *Cluster) Drains() []DrainInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	alive := c.aliveLocked(c.clock.Now())
	var out []DrainInfo
	for _, d := range c.tab.activeDrains() {
		out = append(out, DrainInfo{Drain: d, KnownOn: c.tab.knownOn(d, alive), Members: len(alive)})
	}
	return out
}

// Reload applies a new configuration: its peers, quorum and hash take effect
// at once. It returns the cluster keys that changed but need a restart
// (name, bind, advertise, secret_key_file), which keep their old values.
func (c *Cluster) Reload(cfg *config.Config) []string {
	c.mu.Lock()
	old := c.cfg.Cluster
	var restart []string
	if cfg.Cluster == nil {
		restart = append(restart, "cluster")
	} else {
		nw := cfg.Cluster
		for _, k := range []struct {
			key      string
			old, new string
		}{
			{"cluster.name", old.Name, nw.Name},
			{"cluster.bind", old.Bind, nw.Bind},
			{"cluster.advertise", old.Advertise, nw.Advertise},
			{"cluster.secret_key_file", old.SecretKeyFile, nw.SecretKeyFile},
		} {
			if k.old != k.new {
				restart = append(restart, k.key)
			}
		}
		c.peers = slices.Clone(nw.Peers)
		c.quorum = nw.Quorum.Count
	}
	c.cfg = cfg
	c.hash = ConfigHash(cfg)
	c.mu.Unlock()
	c.kick.Store(true)
	c.wakeUp()
	c.notify()
	return restart
}

// drainBroadcast is one drain register in memberlist's broadcast queue; a
// newer write of the same key replaces an older one still queued.
type drainBroadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*drainBroadcast)(nil)

func (b *drainBroadcast) Name() string                            { return b.name }
func (b *drainBroadcast) Invalidates(o memberlist.Broadcast) bool { return false }
func (b *drainBroadcast) Message() []byte                         { return b.msg }
func (b *drainBroadcast) Finished()                               {}

// delegate is the Cluster's side of memberlist's Delegate, kept off the
// Cluster's own method set.
type delegate struct{ c *Cluster }

var _ memberlist.Delegate = delegate{}

func (d delegate) NodeMeta(limit int) []byte { return nil }

func (d delegate) NotifyMsg(buf []byte) { d.c.receive(buf, "") }

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.queue.GetBroadcasts(overhead, limit)
}

func (d delegate) LocalState(join bool) []byte {
	d.c.met.messages.WithLabelValues("sent", "push_pull").Inc()
	return d.c.stateMessage()
}

func (d delegate) MergeRemoteState(buf []byte, join bool) { d.c.receive(buf, "push_pull") }

// receive applies a message; label names its kind for the metric, "" to
// take it from the message.
func (c *Cluster) receive(buf []byte, label string) {
	kind, m, err := decode(buf)
	if err != nil {
		c.met.messages.WithLabelValues("dropped", "unknown").Inc()
		c.log.Debug("cluster: dropping a message", zap.Error(err))
		return
	}
	if label == "" {
		label = map[byte]string{kindState: "state", kindDrains: "drains"}[kind]
	}
	c.met.messages.WithLabelValues("received", label).Inc()
	if kind == kindDrains {
		m.From = "" // drains only: no news about the sender's own rows
	}
	c.mu.Lock()
	now := c.clock.Now()
	drains := false
	for _, d := range m.Drains {
		if c.tab.merge(d, now) {
			drains = true
			c.met.propagation.Observe(max(now.Sub(d.At), 0).Seconds())
		}
	}
	m.Drains = nil
	_, obs := c.tab.applyState(m, now)
	c.mu.Unlock()
	if drains {
		c.dirty.Store(true)
		c.wakeUp()
	}
	if drains || obs {
		c.notify()
	}
}

// events is the Cluster's side of memberlist's EventDelegate. memberlist
// calls it holding its node lock, so it only records and wakes the loop.
type events struct{ c *Cluster }

var _ memberlist.EventDelegate = events{}

func (e events) NotifyJoin(n *memberlist.Node) {
	c := e.c
	if n.Name == c.name {
		return
	}
	c.mu.Lock()
	delete(c.gone, n.Name)
	c.members[n.Name] = memberEntry{node: *n, joined: c.clock.Now()}
	c.numPeers.Store(int32(len(c.members)))
	c.mu.Unlock()
	c.kick.Store(true)
	c.wakeUp()
	c.notify()
}

func (e events) NotifyLeave(n *memberlist.Node) {
	c := e.c
	c.mu.Lock()
	if n.Name == c.name {
		c.mu.Unlock()
		return
	}
	delete(c.members, n.Name)
	c.numPeers.Store(int32(len(c.members)))
	c.gone[n.Name] = goneMember{addr: n.Address(), at: c.clock.Now()}
	// Its rows stay: it no longer votes (it is not a member) and they
	// expire as a silent peer's do, but if memberlist only misjudged it and
	// it is back at once, its votes count again without waiting for its
	// next heartbeat.
	c.mu.Unlock()
	c.wakeUp()
	c.notify()
}

func (e events) NotifyUpdate(n *memberlist.Node) {
	c := e.c
	c.mu.Lock()
	if m, ok := c.members[n.Name]; ok {
		m.node = *n
		c.members[n.Name] = m
	}
	c.mu.Unlock()
	c.wakeUp()
}

// zapWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// zap entries; its debug lines are dropped.
type zapWriter struct{ l *zap.Logger }

func (w zapWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		w.l.Error(line)
	case bytes.Contains(p, []byte("[WARN]")):
		w.l.Warn(line)
	case bytes.Contains(p, []byte("[DEBUG]")):
	default:
		w.l.Debug(line)
	}
	return len(p), nil
}
