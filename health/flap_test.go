package health

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// defaultThresholds are the thresholds of a check with every default.
var defaultThresholds = Thresholds{
	Rise: config.DefaultRise, Fall: config.DefaultFall,
	Window: config.DefaultFlapWindow, WindowFail: config.DefaultFlapThreshold,
	FlapChanges: config.DefaultFlapChanges, FlapHold: config.DefaultFlapHold,
}

// fourChanges is defaultThresholds with damping after four changes, so the
// sequences stay short.
var fourChanges = func() Thresholds { th := defaultThresholds; th.FlapChanges = 4; return th }()

func TestTrackerFlapping(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// seq is one probe result a second, 'o' OK and 'x' failed; up is the
	// state after each, changed the steps Observe reports; reason, if set,
	// is what the Reason after the last step starts with.
	tests := []struct {
		name             string
		th               Thresholds
		seq, up, changed string
		reason           string
	}{
		{"every other probe failing goes down on the 4th failure", defaultThresholds,
			"oxoxoxox", "UUUUUUUD", "C......C", "flapping: 4 of the last 8 probes failed: connection refused"},
		{"fall still decides consecutive failures", defaultThresholds,
			"oxxx", "UUUD", "C..C", "connection refused"},
		{"the window restarts at each change", defaultThresholds,
			"oxxxooxoxox", "UUUDDUUUUUU", "C..C.C.....", ""},
		{"three failures in ten stay up", defaultThresholds,
			"oxooxooxoooo", "UUUUUUUUUUUU", "C...........", ""},
		{"failures older than the window do not count", Thresholds{Rise: 2, Fall: 3, Window: 4, WindowFail: 3},
			"oxoxooooxoxo", "UUUUUUUUUUUU", "C...........", ""},
		{"a down endpoint failing by turns says flapping", defaultThresholds,
			"xoxoxoxo", "DDDDDDDD", "C.....C.", "flapping: 4 of the last 7 probes failed"},
		{"a solid outage does not", defaultThresholds,
			"oxxxxxxxxxx", "UUUDDDDDDDD", "C..C.......", "connection refused"},
		{"window off is plain rise/fall", Thresholds{Rise: 2, Fall: 3},
			"oxoxoxoxoxox", "UUUUUUUUUUUU", "C...........", ""},
		// Down at 3, up at 5, down at 8, up (raw) at 10: the fourth change
		// in a minute holds it down and says so.
		{"four changes in a minute hold it down", fourChanges,
			"oxxxooxxxoo", "UUUDDUUUDDD", "C..C.C..C.C", "flapping: 4 state changes in 1m0s"},
		{"the default needs six", defaultThresholds,
			"oxxxooxxxoo", "UUUDDUUUDDU", "C..C.C..C.C", ""},
		{"damping off lets it flap", Thresholds{Rise: 2, Fall: 3, Window: 10, WindowFail: 4},
			"oxxxooxxxoo", "UUUDDUUUDDU", "C..C.C..C.C", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			for i, c := range tt.seq {
				r := Result{OK: c == 'o', At: t0.Add(time.Duration(i) * time.Second)}
				if !r.OK {
					r.Err = "connection refused"
				}
				changed := tr.ObserveWith(r, tt.th)
				s := tr.Status()
				if s.Up != (tt.up[i] == 'U') {
					t.Errorf("step %d (%c): Up = %v, want %c (reason %q)", i, c, s.Up, tt.up[i], s.Reason)
				}
				if changed != (tt.changed[i] == 'C') {
					t.Errorf("step %d (%c): changed = %v, want %c", i, c, changed, tt.changed[i])
				}
			}
			if s := tr.Status(); !strings.HasPrefix(s.Reason, tt.reason) || (tt.reason == "") != (s.Reason == "") {
				t.Errorf("Reason = %q, want %q", s.Reason, tt.reason)
			}
		})
	}
}

// TestTrackerFlapHold: a flapping endpoint comes back only after a whole
// hold without a change; a change during the hold starts it again, and the
// Reason's count follows the changes.
func TestTrackerFlapHold(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var tr Tracker
	sec := 0
	feed := func(seq string) {
		for _, c := range seq {
			r := Result{OK: c == 'o', At: t0.Add(time.Duration(sec) * time.Second)}
			if !r.OK {
				r.Err = "status 500, want 200"
			}
			tr.ObserveWith(r, fourChanges)
			sec++
		}
	}
	feed("oxxxooxxxoo") // the fourth change at second 10
	if s := tr.Status(); s.Up || s.Reason != "flapping: 4 state changes in 1m0s" {
		t.Fatalf("after four changes: %+v", s)
	}
	feed(strings.Repeat("o", 20)) // second 30
	feed("xxx")                   // a fifth change at second 33
	if s := tr.Status(); s.Up || s.Reason != "flapping: 5 state changes in 1m0s" {
		t.Fatalf("after a fifth change: up %v reason %q", s.Up, s.Reason)
	}
	feed("oo")                    // the sixth, at second 34
	feed(strings.Repeat("o", 59)) // up to second 93: 59 s stable
	if s := tr.Status(); s.Up {
		t.Fatalf("up %ds after the last change, before the hold: %+v", sec-1-34, s)
	}
	if s := tr.Status(); !strings.HasPrefix(s.Reason, "flapping: ") {
		t.Errorf("reason while held = %q", s.Reason)
	}
	feed("o") // second 95: a full minute since the last change
	s := tr.Status()
	if !s.Up || s.Reason != "" || !s.Since.Equal(t0.Add(95*time.Second)) {
		t.Fatalf("a minute stable: %+v, want up since 95s", s)
	}
	if tr.InDoubt() {
		t.Error("in doubt after coming up")
	}
}

// TestTrackerFlapPassive: traffic taking an endpoint down counts as a
// change, so probes and traffic flipping it are caught too.
func TestTrackerFlapPassive(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var tr Tracker
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	tr.ObserveWith(Result{OK: true, At: at(0)}, defaultThresholds)
	for i := 1; i < 10; i += 3 {
		tr.ObservePassive(Passive{Failure: true, Reason: "refused", At: at(i)})
		tr.ObserveWith(Result{OK: true, At: at(i + 1)}, defaultThresholds)
		tr.ObserveWith(Result{OK: true, At: at(i + 2)}, defaultThresholds)
	}
	if s := tr.Status(); s.Up || !strings.HasPrefix(s.Reason, "flapping: 6 state changes") {
		t.Errorf("after passive downs and probe ups: up %v reason %q", s.Up, s.Reason)
	}
	if tr.InDoubt() {
		t.Error("held down with passing probes should not be in doubt (no fast re-probing while held)")
	}
}

func TestTrackerObserveWithAllocs(t *testing.T) {
	var tr Tracker
	ok := Result{OK: true}
	tr.ObserveWith(ok, defaultThresholds)
	allocs := testing.AllocsPerRun(1000, func() {
		ok.At = ok.At.Add(time.Second)
		tr.ObserveWith(ok, defaultThresholds)
	})
	if allocs != 0 {
		t.Errorf("ObserveWith allocates %v times per steady probe, want 0", allocs)
	}
}

// TestCheckerFlapping runs the checker with a default check (zero flap
// settings mean the defaults) against an endpoint that fails every other
// probe from second 3: it goes down by probes alone within 10 s, says
// "flapping", and stays down.
func TestCheckerFlapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := Target{ID: "dc1/api/a", Endpoint: "a:80", Check: config.Check{
			Interval: config.Duration(time.Second), Timeout: config.Duration(800 * time.Millisecond),
			Rise: 2, Fall: 3,
		}}
		p := newScriptProber(map[string]string{tg.ID: "ooo" + strings.Repeat("xo", 60)})
		var rec recorder
		c := New([]Target{tg}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		start := time.Now()
		stop := run(c)
		defer stop()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		trs := rec.take()
		if len(trs) != 2 || !trs[0].Status.Up || trs[1].Status.Up {
			t.Fatalf("transitions %+v, want up then down only", trs)
		}
		firstFailure := p.starts[tg.ID][3]
		if d := trs[1].Status.Since.Sub(firstFailure); d > 10*time.Second {
			t.Errorf("down %s after the first failure, want within 10s", d)
		}
		if r := trs[1].Status.Reason; !strings.HasPrefix(r, "flapping: 4 of the last") {
			t.Errorf("reason %q", r)
		}
		t.Logf("down %s after start", trs[1].Status.Since.Sub(start))
	})
}

// TestCheckerFlapDamping: an endpoint that restarts over and over is held
// down, with the count in its Reason delivered to OnChange, until it has
// been stable for the hold.
func TestCheckerFlapDamping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := Target{ID: "dc1/api/a", Endpoint: "a:80", Check: config.Check{
			Interval: config.Duration(time.Second), Timeout: config.Duration(800 * time.Millisecond),
			Rise: 2, Fall: 3, FlapChanges: 4, FlapHold: config.Duration(30 * time.Second),
		}}
		// Down at 3, up at 5, down at 8, up (held) at 10, then healthy.
		p := newScriptProber(map[string]string{tg.ID: "oxxxooxxxo" + "o"})
		var rec recorder
		c := New([]Target{tg}, Options{Prober: p, OnChange: rec.onChange, Rand: halfRand})
		stop := run(c)
		defer stop()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		s, _ := c.Status(tg.ID)
		if s.Up || s.Reason != "flapping: 4 state changes in 30s" {
			t.Fatalf("after restarts: up %v reason %q", s.Up, s.Reason)
		}
		var reasons []string
		for _, tr := range rec.take() {
			reasons = append(reasons, tr.Status.Reason)
		}
		if last := reasons[len(reasons)-1]; last != s.Reason {
			t.Errorf("OnChange got reasons %q, want the flapping one last", reasons)
		}
		time.Sleep(21 * time.Second) // 30 s after the change at 10 s
		synctest.Wait()
		if s, _ := c.Status(tg.ID); !s.Up {
			t.Errorf("stable for the hold and still down: %+v", s)
		}
	})
}
