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
	// Check says how to probe. A zero Interval, Timeout, Rise or Fall means
	// the config package's default; an empty Type means "http".
	Check config.Check
}

func (t *Target) interval() time.Duration {
	return cmp.Or(max(t.Check.Interval.D(), 0), config.DefaultInterval)
}

func (t *Target) timeout() time.Duration {
	return cmp.Or(max(t.Check.Timeout.D(), 0), config.DefaultTimeout)
}

func (t *Target) rise() int { return cmp.Or(max(t.Check.Rise, 0), config.DefaultRise) }
func (t *Target) fall() int { return cmp.Or(max(t.Check.Fall, 0), config.DefaultFall) }

// Options tune a Checker. The zero value is ready to use.
type Options struct {
	// Clock is the source of time. If nil, RealClock.
	Clock Clock
	// Prober runs the probes. If nil, a new NetProber.
	Prober Prober
	// OnChange, if not nil, is called for every Transition in the order the
	// changes happened, serially, from a checker goroutine. Probe results
	// wait while it runs, so it must not block long. It may call the
	// Checker's methods.
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
// then again after a random phase within its interval, then every interval;
// so a thousand targets sharing an interval are spread across it rather than
// probed in the same millisecond.
type Checker struct {
	clock    Clock
	prober   Prober
	ownNet   *NetProber // the default Prober, which Run tidies up after
	onChange func(Transition)
	rand     func(int64) int64
	sem      chan struct{} // bounds probes in flight
	ready    chan struct{}
	wg       sync.WaitGroup

	// emitMu serializes recording results and calling OnChange, so that
	// transitions reach OnChange one at a time and in order. It is taken
	// before mu, and OnChange runs with it held but mu released.
	emitMu sync.Mutex

	mu      sync.Mutex
	entries map[string]*entry
	// pending counts targets whose initial Transition is not yet delivered;
	// Ready closes when it reaches zero.
	pending     int
	readyClosed bool
	// runCtx is Run's context, the parent of every probing goroutine; it is
	// nil before Run. SetTargets starts new targets under it.
	runCtx  context.Context
	stopRun context.CancelFunc
	stopped bool // Stop was called
	closed  bool // Run is joining its goroutines: start no more
}

// entry is one target as the Checker knows it. t and phase never change;
// the other fields are guarded by Checker.mu.
type entry struct {
	t       Target
	phase   time.Duration
	tr      Tracker
	pending bool               // counted in Checker.pending
	cancel  context.CancelFunc // stops its goroutine; nil until started
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
		c.ownNet = &NetProber{}
		c.prober = c.ownNet
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
	for _, e := range c.entries {
		c.start(e)
	}
	c.mu.Unlock()

	<-ctx.Done()
	c.mu.Lock()
	c.closed = true // no wg.Add may race with the Wait below
	c.mu.Unlock()
	c.wg.Wait()
	if c.ownNet != nil {
		c.ownNet.CloseIdleConnections()
	}
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
		e := &entry{t: t, pending: true}
		// Phases are picked here, under mu, so Rand is never called concurrently.
		e.phase = time.Duration(c.rand(int64(t.interval())))
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
// Ready; if its initial Transition is being delivered, record settles it.
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

// loop probes e at once, again after its phase, then every interval, until
// ctx is done. The schedule is anchored to its start, not to when probes end,
// so phases stay spread; slots missed behind a slow probe are skipped.
func (c *Checker) loop(ctx context.Context, e *entry) {
	interval := e.t.interval()
	next := c.clock.Now()
	for step := e.phase; ; step = interval {
		if !c.probe(ctx, e) {
			return
		}
		next = next.Add(step)
		now := c.clock.Now()
		if late := now.Sub(next); late > 0 {
			next = next.Add((late/interval + 1) * interval)
		}
		if !c.sleep(ctx, next.Sub(now)) {
			return
		}
	}
}

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func (c *Checker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// probe runs one probe of e within the concurrency bound and records it. It
// returns false once ctx is done; such a probe's result is dropped, since a
// probe cut short by shutdown or removal says nothing about the endpoint.
func (c *Checker) probe(ctx context.Context, e *entry) bool {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, e.t.timeout())
	r := c.prober.Probe(pctx, e.t)
	cancel()
	<-c.sem
	if ctx.Err() != nil {
		return false
	}
	r.At = c.clock.Now()
	c.record(e, r)
	return true
}

// record feeds r to e's tracker and reports a transition to OnChange.
func (c *Checker) record(e *entry, r Result) {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()

	c.mu.Lock()
	if c.entries[e.t.ID] != e { // removed or replaced while probing
		c.mu.Unlock()
		return
	}
	initial := !e.tr.Status().Probed
	changed := e.tr.Observe(r, e.t.rise(), e.t.fall())
	st := e.status()
	c.mu.Unlock()

	if changed && c.onChange != nil {
		c.onChange(Transition{Status: st, Initial: initial})
	}
	if initial {
		c.mu.Lock()
		if e.pending {
			e.pending = false
			c.pending--
			c.maybeReady()
		}
		c.mu.Unlock()
	}
}
