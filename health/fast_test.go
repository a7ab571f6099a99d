package health

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// scriptProber answers each target's probes from a script, one character a
// probe, the last repeated: 'o' succeeds, 'x' is refused (hard), 's' is a
// 503, 't' hangs until the probe's deadline, 'd' succeeds after 500ms.
type scriptProber struct {
	mu     sync.Mutex
	script map[string]string
	starts map[string][]time.Time
}

func newScriptProber(scripts map[string]string) *scriptProber {
	return &scriptProber{script: scripts, starts: map[string][]time.Time{}}
}

func (p *scriptProber) Probe(ctx context.Context, t Target) Result {
	p.mu.Lock()
	s, i := p.script[t.ID], len(p.starts[t.ID])
	p.starts[t.ID] = append(p.starts[t.ID], time.Now())
	p.mu.Unlock()
	switch s[min(i, len(s)-1)] {
	case 'x':
		return Result{Err: "connection refused", Hard: true}
	case 's':
		return Result{Err: "status 503, want 200"}
	case 't':
		<-ctx.Done()
		return Result{Err: "timeout after " + t.Check.Timeout.String()}
	case 'd':
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return Result{Err: "timeout after " + t.Check.Timeout.String()}
		}
	}
	return Result{OK: true}
}

// startsSince renders when id's probes started, as offsets from t0.
func (p *scriptProber) startsSince(id string, t0 time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.starts[id] {
		out = append(out, s.Sub(t0).String())
	}
	return strings.Join(out, " ")
}

// render writes transitions as "up@0s(initial) down@5.4s:connection refused".
func render(trs []Transition, t0 time.Time) string {
	var out []string
	for _, tr := range trs {
		s := tr.Status
		w := "down"
		if s.Up {
			w = "up"
		}
		w += "@" + s.Since.Sub(t0).String()
		if tr.Initial {
			w += "(initial)"
		}
		if s.Reason != "" {
			w += ":" + s.Reason
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// fastTarget has a 10s interval (its slots at 5s, 15s, 25s with halfRand)
// and a 1s timeout.
func fastTarget(rise, fall int, fast time.Duration) Target {
	return Target{ID: "dc1/api/a", Endpoint: "a:80", Check: config.Check{
		Interval: config.Duration(10 * time.Second), Timeout: config.Duration(time.Second),
		Rise: rise, Fall: fall, FastInterval: config.Duration(fast),
	}}
}

func TestCheckerFastReprobe(t *testing.T) {
	const fast = 200 * time.Millisecond
	tests := []struct {
		name       string
		rise, fall int
		fast       time.Duration
		script     string
		wantStarts string // within the first 30s
		want       string // transitions
	}{
		{"refused goes down two fast intervals after the first failure", 2, 3, fast, "ox",
			"0s 5s 5.2s 5.4s 15s 25s", "up@0s(initial) down@5.4s:connection refused"},
		{"soft failures too", 2, 3, fast, "os",
			"0s 5s 5.2s 5.4s 15s 25s", "up@0s(initial) down@5.4s:status 503, want 200"},
		{"each timeout waits for the one before", 2, 3, fast, "ot",
			"0s 5s 6s 7s 15s 25s", "up@0s(initial) down@8s:timeout after 1s"},
		{"one dropped probe flips nothing", 2, 3, fast, "oxo",
			"0s 5s 5.2s 15s 25s", "up@0s(initial)"},
		{"two dropped probes flip nothing", 2, 3, fast, "oxxo",
			"0s 5s 5.2s 5.4s 15s 25s", "up@0s(initial)"},
		{"flapping never flips", 2, 3, fast, "oxoxoxoxoxox",
			"0s 5s 5.2s 15s 15.2s 25s 25.2s", "up@0s(initial)"},
		{"recovery ramps at the fast interval", 3, 2, fast, "xo",
			"0s 5s 5.2s 5.4s 15s 25s", "down@0s(initial):connection refused up@5.4s"},
		{"interrupted recovery waits for the next slot", 3, 2, fast, "xooxooo",
			"0s 5s 5.2s 5.4s 15s 15.2s 15.4s 25s", "down@0s(initial):connection refused up@15.4s"},
		{"off: failures a slot apart", 2, 3, 0, "ox",
			"0s 5s 15s 25s", "up@0s(initial) down@25s:connection refused"},
		{"off: recovery a slot apart", 2, 3, 0, "xo",
			"0s 5s 15s 25s", "down@0s(initial):connection refused up@15s"},
		{"thresholds of one need no series", 1, 1, fast, "oxxo",
			"0s 5s 15s 25s", "up@0s(initial) down@5s:connection refused up@25s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tg := fastTarget(tt.rise, tt.fall, tt.fast)
				p := newScriptProber(map[string]string{tg.ID: tt.script})
				var rec recorder
				c := New([]Target{tg}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
				t0 := time.Now()
				stop := run(c)
				time.Sleep(30*time.Second - time.Millisecond)
				stop()
				if got := p.startsSince(tg.ID, t0); got != tt.wantStarts {
					t.Errorf("probes started at %s\nwant %s", got, tt.wantStarts)
				}
				if got := render(rec.take(), t0); got != tt.want {
					t.Errorf("transitions: %s\nwant %s", got, tt.want)
				}
			})
		})
	}
}

// TestCheckerFastLoadIsBounded: a target failing every other probe forever
// costs at most one extra probe per interval. With the flap rules off it
// stays up (rise/fall alone never decide it); TestCheckerFlapping has the
// default, where it goes down.
func TestCheckerFastLoadIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := fastTarget(2, 3, 200*time.Millisecond)
		tg.Check.FlapWindow, tg.Check.FlapChanges = -1, -1
		p := newScriptProber(map[string]string{tg.ID: "o" + strings.Repeat("xo", 1000)})
		c := New([]Target{tg}, Options{Prober: p, Rand: halfRand})
		stop := run(c)
		time.Sleep(time.Hour)
		stop()
		if n := len(p.starts[tg.ID]); n > 2*360+2 {
			t.Errorf("%d probes in an hour of 10s intervals, want at most %d", n, 2*360+2)
		}
		if s, _ := c.Status(tg.ID); !s.Up {
			t.Errorf("flapping target went down: %+v", s)
		}
	})
}

func TestCheckerReportPassive(t *testing.T) {
	const fast = 200 * time.Millisecond
	const reason = "connection refused (passive)"
	type report struct {
		at      time.Duration
		id      string
		failure bool
	}
	tests := []struct {
		name       string
		rise, fall int
		fast       time.Duration
		script     string
		reports    []report
		wantStarts string
		want       string
	}{
		{"failure takes an up target down, fast probes bring it back", 2, 3, fast, "o",
			[]report{{time.Second, "dc1/api/a", true}},
			"0s 1s 1.2s 5s 15s 25s", "up@0s(initial) down@1s:" + reason + " up@1.2s"},
		{"failing probes keep it down", 2, 3, fast, "ox",
			[]report{{time.Second, "dc1/api/a", true}},
			"0s 1s 5s 15s 25s", "up@0s(initial) down@1s:" + reason},
		{"rise counts only probes after the report", 3, 3, fast, "oooooo",
			[]report{{5100 * time.Millisecond, "dc1/api/a", true}},
			"0s 5s 5.1s 5.3s 5.5s 15s 25s", "up@0s(initial) down@5.1s:" + reason + " up@5.5s"},
		{"a success from before the report is stale", 2, 3, fast, "d",
			[]report{{5200 * time.Millisecond, "dc1/api/a", true}},
			"0s 5s 5.5s 6s 15s 25s", "up@500ms(initial) down@5.2s:" + reason + " up@6.5s"},
		{"off: back by rise probes on the slots", 2, 3, 0, "o",
			[]report{{time.Second, "dc1/api/a", true}},
			"0s 5s 15s 25s", "up@0s(initial) down@1s:" + reason + " up@15s"},
		{"a second failure while down changes nothing", 2, 3, fast, "oxo",
			[]report{{time.Second, "dc1/api/a", true}, {3 * time.Second, "dc1/api/a", true}},
			"0s 1s 5s 5.2s 15s 25s", "up@0s(initial) down@1s:" + reason + " up@5.2s"},
		{"failure of a down target changes nothing", 2, 3, fast, "x",
			[]report{{time.Second, "dc1/api/a", true}},
			"0s 5s 15s 25s", "down@0s(initial):connection refused"},
		{"success does not bring a target up", 2, 3, fast, "x",
			[]report{{time.Second, "dc1/api/a", false}},
			"0s 5s 15s 25s", "down@0s(initial):connection refused"},
		{"success of an up target changes nothing", 2, 3, fast, "o",
			[]report{{time.Second, "dc1/api/a", false}},
			"0s 5s 15s 25s", "up@0s(initial)"},
		{"unknown ID", 2, 3, fast, "o",
			[]report{{time.Second, "dc1/api/zzz", true}},
			"0s 5s 15s 25s", "up@0s(initial)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tg := fastTarget(tt.rise, tt.fall, tt.fast)
				p := newScriptProber(map[string]string{tg.ID: tt.script})
				var rec recorder
				c := New([]Target{tg}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
				t0 := time.Now()
				stop := run(c)
				for _, r := range tt.reports {
					time.Sleep(time.Until(t0.Add(r.at)))
					c.ReportPassive(r.id, r.failure, reason)
				}
				time.Sleep(time.Until(t0.Add(30*time.Second - time.Millisecond)))
				stop()
				if got := p.startsSince(tg.ID, t0); got != tt.wantStarts {
					t.Errorf("probes started at %s\nwant %s", got, tt.wantStarts)
				}
				if got := render(rec.take(), t0); got != tt.want {
					t.Errorf("transitions: %s\nwant %s", got, tt.want)
				}
				last := tt.reports[len(tt.reports)-1]
				s, _ := c.Status(tg.ID)
				if wantNoted := last.id == tg.ID; wantNoted != (s.Passive != Passive{}) ||
					wantNoted && (s.Passive.Failure != last.failure || s.Passive.Reason != reason || !s.Passive.At.Equal(t0.Add(last.at))) {
					t.Errorf("Status.Passive = %+v after report %+v", s.Passive, last)
				}
			})
		})
	}
}

// TestReportPassiveDoesNotWaitForOnChange: ReportPassive is called on the
// request path, so it must return while OnChange is busy, and transitions
// must still reach OnChange one at a time and, per target, in order. (No
// synctest.Wait or Sleep while OnChange blocks: the goroutines queued on the
// Checker's delivery mutex would keep the bubble from settling.)
func TestReportPassiveDoesNotWaitForOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := fastTarget(1, 3, 200*time.Millisecond), fastTarget(1, 3, 200*time.Millisecond)
		b.ID = "dc1/api/b"
		p := newScriptProber(map[string]string{a.ID: "o", b.ID: "o"})
		var (
			mu     sync.Mutex
			got    = map[string][]bool{}
			active int
		)
		entered, release := make(chan struct{}), make(chan struct{})
		c := New([]Target{a, b}, Options{Prober: p, Rand: halfRand, OnChange: func(tr Transition) {
			mu.Lock()
			active++
			if active > 1 {
				t.Error("OnChange ran concurrently")
			}
			id := tr.Status.Target.ID
			got[id] = append(got[id], tr.Status.Up)
			first := !tr.Initial && len(got[id]) == 2 && id == a.ID
			mu.Unlock()
			if first {
				entered <- struct{}{}
				<-release // a slow consumer
			}
			mu.Lock()
			active--
			mu.Unlock()
		}})
		stop := run(c)
		defer stop()
		<-c.Ready()
		time.Sleep(time.Second)
		c.ReportPassive(a.ID, true, "refused (passive)")
		<-entered                                        // OnChange is now busy with a's fall
		c.ReportPassive(b.ID, true, "refused (passive)") // and yet this returns
		if s, _ := c.Status(b.ID); s.Up || s.Reason != "refused (passive)" {
			t.Errorf("status after a passive failure = %+v, want down at once", s)
		}
		close(release)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		// Each falls, and its kicked probe (rise 1) brings it back.
		if fmt.Sprint(got[a.ID]) != "[true false true]" || fmt.Sprint(got[b.ID]) != "[true false true]" {
			t.Errorf("OnChange saw %v, want each target up, down, up", got)
		}
	})
}

// TestReportPassiveConcurrent hammers ReportPassive from many goroutines
// while targets are probed and replaced, for the race detector.
func TestReportPassiveConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var targets []Target
		scripts := map[string]string{}
		for i := range 20 {
			tg := fastTarget(2, 2, 100*time.Millisecond)
			tg.ID = fmt.Sprint("dc1/api/", i)
			targets = append(targets, tg)
			scripts[tg.ID] = "oooxoo"
		}
		var calls sync.Map
		c := New(targets, Options{Prober: newScriptProber(scripts), OnChange: func(tr Transition) {
			calls.Store(tr.Status.Target.ID, tr.Status.Up)
		}})
		stop := run(c)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					c.ReportPassive(fmt.Sprint("dc1/api/", (g+i)%25), i%3 != 0, "passive")
					time.Sleep(37 * time.Millisecond)
				}
			})
		}
		wg.Go(func() {
			for range 10 {
				time.Sleep(time.Second)
				c.SetTargets(targets[:10+time.Now().Second()%10])
			}
		})
		wg.Wait()
		stop()
		c.ReportPassive("dc1/api/1", true, "after Run") // ignored, and no goroutine left behind
	})
}

// TestCheckerDownInterval: a down endpoint is probed every down_interval, so
// its recovery is seen within about down_interval + (rise-1) x fast_interval
// rather than waiting for its next slot.
func TestCheckerDownInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := fastTarget(2, 3, 200*time.Millisecond)
		tg.Check.DownInterval = config.Duration(time.Second)
		p := newScriptProber(map[string]string{tg.ID: "xxxo"})
		var rec recorder
		c := New([]Target{tg}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		t0 := time.Now()
		stop := run(c)
		time.Sleep(30*time.Second - time.Millisecond)
		stop()
		if got, want := p.startsSince(tg.ID, t0), "0s 1s 2s 3s 3.2s 5s 15s 25s"; got != want {
			t.Errorf("probes started at %s\nwant %s", got, want)
		}
		if got, want := render(rec.take(), t0), "down@0s(initial):connection refused up@3.2s"; got != want {
			t.Errorf("transitions: %s\nwant %s", got, want)
		}
	})
}
