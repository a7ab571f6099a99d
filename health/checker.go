package health

import (
	"cmp"
	"context"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// Target is one endpoint to probe. Its Check is shared with the caller and
// treated as read-only, like the rest of the configuration.
type Target struct {
	// ID names the target uniquely; the caller uses "dc/service/endpoint".
	ID          string
	DC, Service string
	// Endpoint is the host:port to probe.
	Endpoint string
	// Check says how to probe. A zero Interval, Timeout, Rise, Fall or flap
	// setting means the config package's default (a negative flap setting
	// turns that rule off); an empty Type means "http"; a zero FastInterval
	// means no fast re-probing.
	Check config.Check
	// UpstreamTLS, if not nil, are the TLS settings of the endpoint's
	// service in its DC (config.Config.UpstreamTLSFor): HTTP checks are
	// then sent over TLS with them and TCP checks complete a handshake.
	UpstreamTLS *config.UpstreamTLS
}

func (t *Target) interval() time.Duration {
	return cmp.Or(max(t.Check.Interval.D(), 0), config.DefaultInterval)
}

func (t *Target) timeout() time.Duration {
	return cmp.Or(max(t.Check.Timeout.D(), 0), config.DefaultTimeout)
}

// fastInterval is the pause between the probes of a fast series, or zero
// if the check has none. It is never longer than the interval.
// downInterval is how often a down endpoint is probed: down_interval, or
// zero for the normal slots.
func (t *Target) downInterval() time.Duration {
	return min(max(t.Check.DownInterval.D(), 0), t.interval())
}

func (t *Target) fastInterval() time.Duration {
	return min(max(t.Check.FastInterval.D(), 0), t.interval())
}

func (t *Target) rise() int { return cmp.Or(max(t.Check.Rise, 0), config.DefaultRise) }
func (t *Target) fall() int { return cmp.Or(max(t.Check.Fall, 0), config.DefaultFall) }

// thresholds are the target's decision numbers. A zero flap setting means
// the config package's default and a negative one turns that rule off.
func (t *Target) thresholds() Thresholds {
	c := &t.Check
	return Thresholds{
		Rise:        t.rise(),
		Fall:        t.fall(),
		Window:      cmp.Or(c.FlapWindow, config.DefaultFlapWindow),
		WindowFail:  cmp.Or(c.FlapThreshold, config.DefaultFlapThreshold),
		FlapChanges: cmp.Or(c.FlapChanges, config.DefaultFlapChanges),
		FlapHold:    cmp.Or(c.FlapHold.D(), config.DefaultFlapHold),
	}
}

// Options tune a Checker. The zero value is ready to use.
type Options struct {
	// Clock is the source of time. If nil, RealClock.
	Clock Clock
	// Prober runs the probes. If nil, a new NetProber.
	Prober Prober
	// OnChange, if not nil, is called for every Transition in the order the
	// changes happened, serially, from a checker goroutine. Probe results
	// wait while it runs (ReportPassive does not), so it must not block
	// long. It may call the Checker's methods.
	OnChange func(Transition)
	// MaxConcurrent bounds the probes in flight. If zero or less, 64.
	MaxConcurrent int
	// Rand returns a uniform number in [0, n); it picks each target's phase
	// within its interval. It is never called concurrently with itself.
	// If nil, math/rand/v2's Int64N.
	Rand func(n int64) int64
}

// DefaultMaxConcurrent is the probes in flight when Options.MaxConcurrent is zero.
const DefaultMaxConcurrent = 64

// Checker probes a set of targets, each on its own schedule, and tracks their
// state. Create one with New and start it with Run. All methods are safe for
// concurrent use, including while Run is running.
//
// Every target is probed at once when Run starts (or when SetTargets adds it),
// then on the slots of its interval: a random phase after Run started, then
// every interval; so a thousand targets sharing an interval are spread across
// it rather than probed in the same millisecond. Phases are whole multiples of
// a small grain (see phaseGrain), so that the probes falling in one grain
// start together and the process wakes once per grain, not once per probe.
//
// A target with a FastInterval is re-probed sooner while its state is in
// doubt: after a failed probe of an up target, or a successful probe of a
// down one, the next probe starts FastInterval after the last one started (or
// when it ended, if later), until a probe agrees with the state or rise or
// fall decides it; then its slots resume. ReportPassive feeds it what traffic
// saw.
type Checker struct {
	clock    Clock
	prober   Prober
	onChange func(Transition)
	rand     func(int64) int64
	sem      chan struct{} // bounds probes in flight
	ready    chan struct{}
	wg       sync.WaitGroup

	// emitMu serializes delivering transitions: its holder takes them off
	// queue, in order, and calls OnChange for each with mu released. It is
	// taken before mu.
	emitMu sync.Mutex

	mu      sync.Mutex
	entries map[string]*entry
	// queue holds the transitions not yet delivered, in the order the
	// changes happened; whoever queues one then delivers (see deliver).
	queue []change
	// pending counts targets whose initial Transition is not yet delivered;
	// Ready closes when it reaches zero.
	pending     int
	readyClosed bool
	// runCtx is Run's context, the parent of every probing goroutine; it is
	// nil before Run. SetTargets starts new targets under it.
	runCtx  context.Context
	stopRun context.CancelFunc
	// epoch is when Run started; every target's slots count from it.
	epoch   time.Time
	stopped bool // Stop was called
	closed  bool // Run is joining its goroutines: start no more
}

// change is a Transition waiting in Checker.queue, with its entry.
type change struct {
	e  *entry
	tr Transition
}

// entry is one target as the Checker knows it. t, phase and kick never
// change; the other fields are guarded by Checker.mu.
type entry struct {
	t     Target
	phase time.Duration
	// kick asks the probing goroutine for a probe now; a probe that starts
	// after the send answers it.
	kick    chan struct{}
	tr      Tracker
	pending bool               // counted in Checker.pending
	cancel  context.CancelFunc // stops its goroutine; nil until started
	// passiveDown is when a passive failure last took the target down. A
	// successful probe that started before it is stale and not counted.
	passiveDown time.Time
}

func (e *entry) status() Status {
	s := e.tr.Status()
	s.Target = e.t
	return s
}

// New returns a Checker for targets, as SetTargets would set them. Nothing is
// probed until Run.
func New(targets []Target, opts Options) *Checker {
	c := &Checker{
		clock:    opts.Clock,
		prober:   opts.Prober,
		onChange: opts.OnChange,
		rand:     opts.Rand,
		sem:      make(chan struct{}, cmp.Or(max(opts.MaxConcurrent, 0), DefaultMaxConcurrent)),
		ready:    make(chan struct{}),
		entries:  make(map[string]*entry),
	}
	if c.clock == nil {
		c.clock = RealClock{}
	}
	if c.prober == nil {
		c.prober = &NetProber{}
	}
	if c.rand == nil {
		c.rand = rand.Int64N
	}
	c.SetTargets(targets)
	return c
}

// Run probes until ctx is done or Stop is called, then waits for every probe
// goroutine to exit and returns. Results of probes cut short by the shutdown
// are dropped. Run must be called at most once; later calls return at once.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	if c.runCtx != nil || c.stopped {
		c.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.runCtx, c.stopRun = ctx, cancel
	c.epoch = c.clock.Now()
	for _, e := range c.entries {
		c.start(e)
	}
	c.mu.Unlock()

	<-ctx.Done()
	c.mu.Lock()
	c.closed = true // no wg.Add may race with the Wait below
	c.mu.Unlock()
	c.wg.Wait()
}

// Stop makes Run return (after its goroutines exit); it does not wait. If
// called before Run, Run returns at once. It is safe to call more than once.
func (c *Checker) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.stopRun != nil {
		c.stopRun()
	}
}

// Ready returns a channel closed once every target has its first result and
// OnChange has returned for its initial Transition, so a caller that waits for
// it before serving never serves from unprobed state. Probes of hanging
// endpoints end at their timeout, so Ready takes about one timeout (more if
// over MaxConcurrent endpoints hang). Once closed it stays closed: targets
// that SetTargets adds later do not delay it.
func (c *Checker) Ready() <-chan struct{} { return c.ready }

// Statuses returns every target's status, sorted by ID.
func (c *Checker) Statuses() []Status {
	c.mu.Lock()
	out := make([]Status, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e.status())
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Target.ID, b.Target.ID) })
	return out
}

// Status returns the status of the target with the given ID.
func (c *Checker) Status(id string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return Status{}, false
	}
	return e.status(), true
}

// SetTargets replaces the set of targets. A target equal to one already
// present (same ID, endpoint and check) keeps its state and schedule. A new or
// changed one starts afresh: while Run runs it is probed at once, and its first
// result is reported as Initial. A removed one stops being probed and a result
// it had in flight is dropped. Of targets with the same ID, the first wins.
func (c *Checker) SetTargets(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]*entry, len(targets))
	var added []*entry
	for _, t := range targets {
		if _, dup := next[t.ID]; dup {
			continue
		}
		// DeepEqual rather than a field list, so that a field added to
		// config.Check later cannot be missed.
		if old := c.entries[t.ID]; old != nil && reflect.DeepEqual(old.t, t) {
			next[t.ID] = old
			continue
		}
		e := &entry{t: t, pending: true, kick: make(chan struct{}, 1)}
		// Phases are picked here, under mu, so Rand is never called concurrently.
		e.phase = quantize(time.Duration(c.rand(int64(t.interval()))), t.interval())
		c.pending++
		next[t.ID] = e
		added = append(added, e)
	}
	for id, old := range c.entries {
		if next[id] != old {
			c.retire(old)
		}
	}
	c.entries = next
	if c.runCtx != nil {
		for _, e := range added {
			c.start(e)
		}
	}
	c.maybeReady()
}

// retire stops e's goroutine. If e never got a result it no longer holds up
// Ready; if its initial Transition is queued or being delivered, deliver
// settles it.
// c.mu must be held.
func (c *Checker) retire(e *entry) {
	if e.cancel != nil {
		e.cancel()
	}
	if e.pending && !e.tr.Status().Probed {
		e.pending = false
		c.pending--
	}
}

// maybeReady closes Ready if no initial Transition is outstanding. c.mu must be held.
func (c *Checker) maybeReady() {
	if c.pending == 0 && !c.readyClosed {
		c.readyClosed = true
		close(c.ready)
	}
}

// start launches e's probing goroutine. c.mu must be held and c.runCtx set.
func (c *Checker) start(e *entry) {
	if c.closed {
		return
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	e.cancel = cancel
	c.wg.Go(func() {
		defer cancel()
		c.loop(ctx, e)
	})
}

// phaseGrain is the grain of phases, for intervals of a second and more
// (shorter ones use a fortieth of the interval). Waking an idle process
// costs more than starting a probe, so starting the probes of a grain
// together rather than one by one cut the checker's CPU use by about a
// quarter at a thousand targets (the load harness in load_test.go). It moves
// no probe by more than the grain.
const phaseGrain = 25 * time.Millisecond

// quantize rounds phase down to a multiple of the grain for interval.
func quantize(phase, interval time.Duration) time.Duration {
	g := min(phaseGrain, interval/40)
	if g <= 0 {
		return phase
	}
	return phase / g * g
}

// slot returns e's first slot at or after t. Slots are Run's start plus e's
// phase plus whole intervals. c.epoch must be set.
func (c *Checker) slot(e *entry, t time.Time) time.Time {
	interval := e.t.interval()
	k := time.Duration(0)
	if d := t.Sub(c.epoch) - e.phase; d > 0 {
		k = (d + interval - 1) / interval
	}
	return c.epoch.Add(e.phase + k*interval)
}

// loop probes e at once, then on its slots, or at its fast interval while its
// state is in doubt, or when kicked, until ctx is done. Slots missed behind a
// slow probe are skipped, and none is used twice.
func (c *Checker) loop(ctx context.Context, e *entry) {
	fast, down := e.t.fastInterval(), e.t.downInterval()
	var last time.Time // the last slot used
	for {
		start, doubt, ok := c.probe(ctx, e)
		if !ok {
			return
		}
		now := c.clock.Now()
		next, isSlot := start.Add(fast), false // if already past, at once
		switch {
		case doubt && fast > 0:
		case down > 0 && c.isDown(e):
			// A down endpoint is watched closely so its recovery shows
			// soon; only down ones, so the extra probe load stays small.
			next = start.Add(down)
		default:
			after := now
			if !last.IsZero() && !after.After(last) {
				after = last.Add(1)
			}
			next, isSlot = c.slot(e, after), true
		}
		kicked, ok := c.sleep(ctx, e, next.Sub(now))
		if !ok {
			return
		}
		if isSlot && !kicked {
			last = next
		}
	}
}

// sleep waits d, or until e is kicked, or until ctx is done. It reports
// whether it was kicked and whether ctx is still live.
func (c *Checker) sleep(ctx context.Context, e *entry, d time.Duration) (kicked, ok bool) {
	if d <= 0 {
		return false, ctx.Err() == nil
	}
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, false
	case <-t.C():
		return false, true
	case <-e.kick:
		return true, true
	}
}

// probe runs one probe of e within the concurrency bound and records it. It
// returns when the probe started and whether e's state is now in doubt (see
// Tracker.InDoubt), and false once ctx is done; such a probe's result is
// dropped, since a probe cut short by shutdown or removal says nothing about
// the endpoint.
func (c *Checker) probe(ctx context.Context, e *entry) (start time.Time, doubt, ok bool) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return start, false, false
	}
	select {
	case <-e.kick: // this probe is the one asked for
	default:
	}
	start = c.clock.Now()
	pctx, cancel := context.WithTimeout(ctx, e.t.timeout())
	r := c.prober.Probe(pctx, e.t)
	cancel()
	<-c.sem
	if ctx.Err() != nil {
		return start, false, false
	}
	r.At = c.clock.Now()
	return start, c.record(e, r, start), true
}

// record feeds r, of a probe that started at start, to e's tracker, delivers
// any transition, and reports whether e's state is in doubt.
func (c *Checker) record(e *entry, r Result, start time.Time) (doubt bool) {
	c.mu.Lock()
	if c.entries[e.t.ID] != e { // removed or replaced while probing
		c.mu.Unlock()
		return false
	}
	// A success from before a passive failure does not count towards rise:
	// the endpoint failed traffic after it.
	if !r.OK || !start.Before(e.passiveDown) {
		initial := !e.tr.Status().Probed
		if e.tr.ObserveWith(r, e.t.thresholds()) {
			c.queue = append(c.queue, change{e, Transition{Status: e.status(), Initial: initial}})
		}
	}
	doubt = e.tr.InDoubt()
	c.mu.Unlock()
	c.deliver()
	return doubt
}

// deliver calls OnChange for every queued transition, in order, waiting
// while another goroutine does so. Whoever queues a transition calls deliver
// afterwards, so none is left behind.
func (c *Checker) deliver() {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, ch := range batch {
			if c.onChange != nil {
				c.onChange(ch.tr)
			}
			if ch.tr.Initial {
				c.mu.Lock()
				if ch.e.pending {
					ch.e.pending = false
					c.pending--
					c.maybeReady()
				}
				c.mu.Unlock()
			}
		}
	}
}

// ReportPassive tells the Checker what traffic saw of the target with the
// given ID ("dc/service/endpoint"): that requests to it failed until it was
// taken out of rotation (failure, with reason saying why), or that it served
// a request again (not failure).
//
// A failure takes an up target down at once, with reason as its Reason, and
// starts a fast series of probes (if its check has a FastInterval) to settle
// it; it comes back up only after rise consecutive successful probes. Every
// other report changes no state: a success does not bring a target up, and a
// failure of a target already down cannot keep it down once its probes pass.
// Reports are noted in Status.Passive. Unknown IDs, and reports while Run is
// not running, are ignored.
//
// ReportPassive never waits for probes or for OnChange, which gets the
// transition from another goroutine, in order with the others.
func (c *Checker) ReportPassive(id string, failure bool, reason string) {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil || c.runCtx == nil || c.closed {
		return
	}
	if !e.tr.ObservePassive(Passive{Failure: failure, Reason: reason, At: now}) {
		return
	}
	e.passiveDown = now
	c.queue = append(c.queue, change{e, Transition{Status: e.status()}})
	// Not c.deliver here: OnChange may take a while, and this is the
	// caller's request path.
	c.wg.Go(c.deliver)
	if e.t.fastInterval() > 0 {
		select {
		case e.kick <- struct{}{}:
		default: // a probe is already asked for
		}
	}
}

// isDown reports whether e has been probed and is down.
func (c *Checker) isDown(e *entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := e.tr.Status()
	return s.Probed && !s.Up
}
