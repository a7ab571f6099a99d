package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// fakeProber answers from a per-target script and records when it was asked.
// Targets answer OK unless told otherwise. Probes take delay, or until ctx is
// done, whichever is first.
type fakeProber struct {
	delay time.Duration

	mu       sync.Mutex
	down     map[string]bool
	calls    map[string][]time.Time
	inFlight int
	maxIn    int
}

func newFakeProber() *fakeProber {
	return &fakeProber{down: map[string]bool{}, calls: map[string][]time.Time{}}
}

func (f *fakeProber) Probe(ctx context.Context, t Target) Result {
	f.mu.Lock()
	f.calls[t.ID] = append(f.calls[t.ID], time.Now())
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()

	if f.delay > 0 {
		timer := time.NewTimer(f.delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return Result{Err: "timeout after " + t.Check.Timeout.String()}
		}
	}
	f.mu.Lock()
	down := f.down[t.ID]
	f.mu.Unlock()
	if down {
		return Result{Err: "connection refused", Hard: true}
	}
	return Result{OK: true}
}

func (f *fakeProber) setDown(id string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[id] = down
}

func (f *fakeProber) maxInFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxIn
}

func (f *fakeProber) probes(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[id]...)
}

// recorder collects the transitions reported to OnChange.
type recorder struct {
	mu sync.Mutex
	tr []Transition
}

func (r *recorder) onChange(t Transition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tr = append(r.tr, t)
}

func (r *recorder) take() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.tr
	r.tr = nil
	return out
}

func target(id string, interval time.Duration, rise, fall int) Target {
	return Target{ID: id, Endpoint: id + ":80", Check: config.Check{
		Type:     "http",
		Interval: config.Duration(interval),
		Timeout:  config.Duration(interval / 2),
		Rise:     rise,
		Fall:     fall,
	}}
}

// run starts c.Run and returns a function that cancels it and waits for it.
func run(c *Checker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// halfRand places every phase in the middle of the interval.
func halfRand(n int64) int64 { return n / 2 }

func TestCheckerFirstRoundDecidesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		p.setDown("c", true)
		var rec recorder
		c := New([]Target{target("b", time.Second, 2, 3), target("c", time.Second, 2, 3), target("a", time.Second, 2, 3)},
			Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		if isClosed(c.Ready()) {
			t.Fatal("Ready closed before Run")
		}
		start := time.Now()
		stop := run(c)
		defer stop()

		<-c.Ready()
		if d := time.Since(start); d != 0 {
			t.Errorf("Ready after %v, want at once", d)
		}
		got := rec.take()
		if len(got) != 3 {
			t.Fatalf("got %d transitions, want 3 initial ones: %+v", len(got), got)
		}
		for _, tr := range got {
			wantUp := tr.Status.Target.ID != "c"
			if !tr.Initial || tr.Status.Up != wantUp || !tr.Status.Probed {
				t.Errorf("transition %+v, want Initial and Up=%v", tr, wantUp)
			}
		}
		sts := c.Statuses()
		var ids []string
		for _, s := range sts {
			ids = append(ids, s.Target.ID)
		}
		if fmt.Sprint(ids) != "[a b c]" {
			t.Errorf("Statuses IDs = %v, want sorted [a b c]", ids)
		}
		if s, _ := c.Status("c"); s.Up || s.Reason != "connection refused" || !s.Last.Hard || !s.Since.Equal(start) {
			t.Errorf("Status(c) = %+v, want down for connection refused since start", s)
		}
		if _, ok := c.Status("nope"); ok {
			t.Error("Status of an unknown ID reported ok")
		}
	})
}

func TestCheckerFallAndRise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		var rec recorder
		c := New([]Target{target("a", time.Second, 2, 3)}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		start := time.Now()
		stop := run(c)
		defer stop()
		<-c.Ready()
		rec.take()

		// Probes run at 0, 0.5s, 1.5s, 2.5s, ...
		time.Sleep(time.Second) // t=1s, two probes done
		p.setDown("a", true)
		time.Sleep(2 * time.Second) // t=3s: failures at 1.5s and 2.5s
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("down after 2 failures with fall=3: %+v", got)
		}
		time.Sleep(time.Second) // t=4s: third failure at 3.5s
		synctest.Wait()
		got := rec.take()
		if len(got) != 1 || got[0].Status.Up || got[0].Initial {
			t.Fatalf("after 3 failures got %+v, want one non-initial down transition", got)
		}
		if s := got[0].Status; s.Reason != "connection refused" || s.ConsecutiveFail != 3 ||
			!s.Since.Equal(start.Add(3500*time.Millisecond)) {
			t.Errorf("down status = %+v, want reason, 3 failures, since 3.5s", s)
		}

		time.Sleep(3 * time.Second) // t=7s: more failures change nothing
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("further failures reported %+v", got)
		}
		p.setDown("a", false)
		time.Sleep(time.Second) // t=8s: one success at 7.5s
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("up after 1 success with rise=2: %+v", got)
		}
		time.Sleep(time.Second) // t=9s: second success at 8.5s
		synctest.Wait()
		got = rec.take()
		if len(got) != 1 || !got[0].Status.Up || got[0].Status.Reason != "" ||
			!got[0].Status.Since.Equal(start.Add(8500*time.Millisecond)) {
			t.Fatalf("after 2 successes got %+v, want one up transition since 8.5s", got)
		}
		if n := len(p.probes("a")); n != 10 {
			t.Errorf("%d probes in 9s, want 10 (0s, 0.5s, then every second)", n)
		}
	})
}

func TestCheckerStaggersWithinInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, interval = 200, time.Second
		p := newFakeProber()
		var targets []Target
		for i := range n {
			targets = append(targets, target(fmt.Sprint("t", i), interval, 2, 3))
		}
		rnd := rand.New(rand.NewPCG(1, 2))
		c := New(targets, Options{Prober: p, Rand: rnd.Int64N})
		start := time.Now()
		stop := run(c)
		defer stop()
		time.Sleep(3*interval - time.Millisecond)
		stop()

		buckets := map[time.Duration]int{} // second probes by 100ms slice of the interval
		for _, tg := range targets {
			calls := p.probes(tg.ID)
			if len(calls) < 3 {
				t.Fatalf("%s: %d probes in ~3 intervals, want at least 3", tg.ID, len(calls))
			}
			if !calls[0].Equal(start) {
				t.Errorf("%s: first probe at %v, want at once", tg.ID, calls[0].Sub(start))
			}
			phase := calls[1].Sub(start)
			if phase < 0 || phase >= interval {
				t.Errorf("%s: second probe at %v, want within the first interval", tg.ID, phase)
			}
			if phase%phaseGrain != 0 {
				t.Errorf("%s: phase %v is not a multiple of %v, so its probes start alone", tg.ID, phase, phaseGrain)
			}
			for i := 2; i < len(calls); i++ {
				if d := calls[i].Sub(calls[i-1]); d != interval {
					t.Errorf("%s: probes %d and %d are %v apart, want %v", tg.ID, i-1, i, d, interval)
				}
			}
			buckets[phase/(interval/10)]++
		}
		// 200 uniform phases leave no tenth of the interval empty and crowd none.
		for b := range time.Duration(10) {
			if buckets[b] == 0 || buckets[b] > n/4 {
				t.Errorf("phases are not spread: %v", buckets)
				break
			}
		}
	})
}

func TestCheckerMaxConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		p.delay = 100 * time.Millisecond
		var targets []Target
		for i := range 50 {
			targets = append(targets, target(fmt.Sprint("t", i), 10*time.Second, 2, 3))
		}
		c := New(targets, Options{Prober: p, MaxConcurrent: 5})
		start := time.Now()
		stop := run(c)
		defer stop()
		<-c.Ready()
		if d := time.Since(start); d != time.Second {
			t.Errorf("Ready after %v, want 1s (50 probes of 100ms, 5 at a time)", d)
		}
		if n := p.maxInFlight(); n != 5 {
			t.Errorf("at most %d probes in flight, want 5", n)
		}
	})
}

func TestCheckerSetTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		p.setDown("keep", true)
		var rec recorder
		keep, change, drop := target("keep", time.Second, 2, 3), target("change", time.Second, 2, 3), target("drop", time.Second, 2, 3)
		c := New([]Target{keep, change, drop}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		start := time.Now()
		stop := run(c)
		defer stop()
		<-c.Ready()
		time.Sleep(700 * time.Millisecond) // second probes at 0.5s
		synctest.Wait()
		rec.take()
		keepBefore, _ := c.Status("keep")

		changed := change
		changed.Check.Path = "/other"
		added := target("added", time.Second, 2, 3)
		c.SetTargets([]Target{keep, changed, added})
		synctest.Wait()

		got := map[string]Transition{}
		for _, tr := range rec.take() {
			got[tr.Status.Target.ID] = tr
		}
		if len(got) != 2 || !got["added"].Initial || !got["change"].Initial || got["change"].Status.Target.Check.Path != "/other" {
			t.Errorf("after SetTargets got %+v, want initial transitions of added and change only", got)
		}
		if n := len(p.probes("added")); n != 1 {
			t.Errorf("added target probed %d times, want once at once", n)
		}
		if keepAfter, _ := c.Status("keep"); keepAfter.ConsecutiveFail != keepBefore.ConsecutiveFail || !keepAfter.Since.Equal(start) {
			t.Errorf("unchanged target lost its state: before %+v, after %+v", keepBefore, keepAfter)
		}
		if n := len(p.probes("keep")); n != 2 {
			t.Errorf("unchanged target probed %d times, want 2: SetTargets must not reset its schedule", n)
		}
		if _, ok := c.Status("drop"); ok {
			t.Error("removed target still has a status")
		}
		dropped := len(p.probes("drop"))

		time.Sleep(5 * time.Second)
		if n := len(p.probes("drop")); n != dropped {
			t.Errorf("removed target probed %d more times", n-dropped)
		}
		if s, _ := c.Status("keep"); !s.Since.Equal(start) || s.ConsecutiveFail != 7 {
			t.Errorf("unchanged target = %+v, want down since start with 7 failures", s)
		}
		if len(c.Statuses()) != 3 {
			t.Errorf("Statuses has %d entries, want 3", len(c.Statuses()))
		}
	})
}

func TestCheckerReadyAfterRemovingUnprobed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if c := New(nil, Options{}); !isClosed(c.Ready()) {
			t.Error("Ready of a Checker without targets is not closed")
		}
		c := New([]Target{target("a", time.Second, 2, 3), target("b", time.Second, 2, 3)}, Options{Prober: newFakeProber()})
		c.SetTargets([]Target{target("a", time.Second, 2, 3)})
		stop := run(c)
		defer stop()
		<-c.Ready() // would hang if the removed b still held it up
		if _, ok := c.Status("b"); ok {
			t.Error("removed target still present")
		}
	})
}

func TestCheckerRunReturnsAfterCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		p.delay = time.Hour // every probe hangs until cancelled
		var rec recorder
		var targets []Target
		for i := range 10 {
			targets = append(targets, target(fmt.Sprint("t", i), time.Second, 2, 3))
		}
		c := New(targets, Options{Prober: p, OnChange: rec.onChange, MaxConcurrent: 4})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			c.Run(ctx)
			close(done)
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-done // synctest.Test also fails if any probe goroutine outlives the bubble
		if got := rec.take(); len(got) != 0 {
			t.Errorf("results of cancelled probes were reported: %+v", got)
		}
		c.Stop()
		c.Stop()
		c.Run(context.Background()) // a second Run returns at once
	})
}

func TestCheckerStopBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		c := New([]Target{target("a", time.Second, 2, 3)}, Options{Prober: p})
		c.Stop()
		c.Run(context.Background())
		if n := len(p.probes("a")); n != 0 {
			t.Errorf("stopped Checker probed %d times", n)
		}
	})
}

func TestCheckerOnChangeIsSerial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		p.delay = time.Millisecond
		var (
			c               *Checker
			active, maxSeen atomic.Int32
			calls           atomic.Int32
		)
		onChange := func(tr Transition) {
			n := active.Add(1)
			defer active.Add(-1)
			if n > maxSeen.Load() {
				maxSeen.Store(n)
			}
			calls.Add(1)
			// Yield to widen the window for a concurrent call. (Not a sleep:
			// goroutines queued on a mutex would keep synctest's clock still.)
			for range 10 {
				runtime.Gosched()
			}
			// Reading back from inside OnChange must not deadlock, and must
			// already show the reported state.
			if s, _ := c.Status(tr.Status.Target.ID); s.Up != tr.Status.Up {
				t.Errorf("Status inside OnChange = %v, transition says %v", s.Up, tr.Status.Up)
			}
		}
		var targets []Target
		for i := range 100 {
			targets = append(targets, target(fmt.Sprint("t", i), time.Second, 1, 1))
		}
		c = New(targets, Options{Prober: p, OnChange: onChange})
		stop := run(c)
		<-c.Ready()
		if calls.Load() != 100 {
			t.Errorf("Ready closed after %d initial OnChange calls, want all 100", calls.Load())
		}
		for i := range 100 {
			p.setDown(fmt.Sprint("t", i), i%2 == 0)
		}
		time.Sleep(3 * time.Second)
		stop()
		if maxSeen.Load() != 1 {
			t.Errorf("OnChange ran %d times concurrently, want 1", maxSeen.Load())
		}
		if calls.Load() != 150 {
			t.Errorf("OnChange called %d times, want 100 initial + 50 down", calls.Load())
		}
	})
}

// offsetClock is a Clock running a fixed offset ahead of package time.
type offsetClock struct {
	RealClock
	off time.Duration
}

func (c offsetClock) Now() time.Time { return time.Now().Add(c.off) }

func TestCheckerUsesInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := offsetClock{off: 24 * time.Hour}
		c := New([]Target{target("a", time.Second, 2, 3)}, Options{Prober: newFakeProber(), Clock: clock})
		stop := run(c)
		defer stop()
		<-c.Ready()
		s, _ := c.Status("a")
		if want := clock.Now(); !s.Since.Equal(want) || !s.Last.At.Equal(want) {
			t.Errorf("Since = %v, Last.At = %v, want the injected clock's %v", s.Since, s.Last.At, want)
		}
	})
}

func TestCheckerDefaultsForZeroCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakeProber()
		c := New([]Target{{ID: "a", Endpoint: "a:80"}}, Options{Prober: p, Rand: func(int64) int64 { return 0 }})
		stop := run(c)
		time.Sleep(10*config.DefaultInterval - time.Millisecond)
		stop()
		// At 0 and 0 (phase zero), then every default interval.
		if n := len(p.probes("a")); n != 11 {
			t.Errorf("%d probes, want 11 at the default interval", n)
		}
	})
}
