package health

import (
	"fmt"
	"math/bits"
	"strings"
	"time"
)

// Status is an endpoint's state. It is a value copy, safe to keep and to share.
type Status struct {
	Target Target
	// Up is the endpoint's decided state; it is false until the first result.
	Up bool
	// Probed is true once the endpoint has its first result.
	Probed bool
	// ConsecutiveOK and ConsecutiveFail count the current run of successes
	// or failures; at most one of them is non-zero.
	ConsecutiveOK, ConsecutiveFail int
	// Last is the most recent result.
	Last Result
	// Since is when Up last changed (or the first result's time).
	Since time.Time
	// Reason says, in words, why the endpoint went down: the error of the
	// failure that made it go down. It is "" while the endpoint is up, and is
	// not rewritten by later failures (Last.Err holds the latest one), except
	// to say that the endpoint is flapping ("flapping: 3 of the last 6 probes
	// failed: ...", "flapping: 5 state changes in 1m0s", whose count follows
	// the changes).
	Reason string
	// Passive is the latest passive report (see Checker.ReportPassive), or
	// the zero Passive if there was none.
	Passive Passive
}

// Passive is what traffic, rather than a probe, saw of an endpoint: requests
// to it failed until it was taken out of rotation (Failure, with Reason
// saying why), or it served a request again.
type Passive struct {
	Failure bool
	Reason  string
	At      time.Time
}

// Transition reports one change of Up, or the first result of an endpoint
// (Initial), which decides its state at once, or a new Reason of an endpoint
// that stays down (the count of a flapping one's changes).
type Transition struct {
	Status  Status
	Initial bool
}

// Thresholds are the numbers a Tracker decides with. Rise and Fall below 1
// count as 1. A Window or FlapChanges of zero or less turns that rule off, so
// Thresholds{Rise: r, Fall: f} is the plain rise/fall machine.
type Thresholds struct {
	Rise, Fall int
	// Window is how many of the latest probe results count towards
	// WindowFail (at most MaxWindow); the window restarts whenever the
	// endpoint changes state. An up endpoint goes down as soon as WindowFail
	// of the results in its window failed, even if no Fall of them were
	// consecutive: that catches an endpoint failing every other probe.
	Window, WindowFail int
	// FlapChanges state changes within FlapHold mark an endpoint as
	// flapping: it is held down, whatever its probes say, until it has
	// made no state change for FlapHold.
	FlapChanges int
	FlapHold    time.Duration
}

// MaxWindow is the largest Thresholds.Window; a larger one counts as this.
const MaxWindow = 64

// Tracker is the rise/fall state machine of one endpoint, with a window of
// recent results and flap damping (see Thresholds). The zero value is an
// endpoint not yet probed. It is not safe for concurrent use.
//
// It keeps two states: the raw one, which rise, fall and the window decide,
// and the decided one in Status.Up, which is the raw one unless the endpoint
// is flapping, when it is down.
type Tracker struct {
	s Status
	// raw is the state rise, fall and the window decide.
	raw bool
	// win holds the latest results since the last raw change, newest in
	// bit 0, a set bit for a failure; n of its bits are in use.
	win uint64
	n   int
	// changes are the times of the raw changes within the hold, oldest
	// first; flapping holds the endpoint down until it is empty again.
	changes  []time.Time
	flapping bool
	// rawReason is why the raw state went down.
	rawReason string
	// flapCount is the count of changes the flapping Reason gives.
	flapCount int
	// th is the latest thresholds, for ObservePassive.
	th Thresholds
}

// Observe records one result with plain rise and fall thresholds: the first
// result decides the state at once (up if OK, down if not); afterwards going
// down takes fall consecutive failures and coming up takes rise consecutive
// successes. Rise or fall below 1 count as 1. Observe reports whether Up
// changed or this was the first result.
func (t *Tracker) Observe(r Result, rise, fall int) (changed bool) {
	return t.ObserveWith(r, Thresholds{Rise: rise, Fall: fall})
}

// ObserveWith records one result under th. Besides rise and fall, an up
// endpoint goes down when th.WindowFail of the results in its window failed
// (Reason "flapping: 3 of the last 6 probes failed: ..."), and one that
// changed state th.FlapChanges times within th.FlapHold is held down until it
// has been stable for th.FlapHold (Reason "flapping: 4 state changes in
// 1m0s"). It reports whether Up changed, this was the first result, or the
// Reason of a down endpoint changed to say so.
func (t *Tracker) ObserveWith(r Result, th Thresholds) (changed bool) {
	t.th = th
	rise, fall := max(th.Rise, 1), max(th.Fall, 1)
	window := min(th.Window, MaxWindow)
	s := &t.s
	s.Last = r
	if r.OK {
		s.ConsecutiveOK++
		s.ConsecutiveFail = 0
	} else {
		s.ConsecutiveFail++
		s.ConsecutiveOK = 0
	}
	if !s.Probed {
		s.Probed = true
		t.raw, s.Up = r.OK, r.OK
		s.Since = r.At
		s.Reason = ""
		if !r.OK {
			t.rawReason = reason(r)
			s.Reason = t.rawReason
		}
		t.push(r.OK, window)
		return true
	}
	t.push(r.OK, window)

	switch {
	case t.raw && s.ConsecutiveFail >= fall:
		t.setRaw(false, reason(r), r.At, th)
	case t.raw && window > 0 && th.WindowFail > 0 && t.failures() >= th.WindowFail:
		t.setRaw(false, fmt.Sprintf("flapping: %d of the last %d probes failed: %s", t.failures(), t.n, reason(r)), r.At, th)
	case !t.raw && s.ConsecutiveOK >= rise:
		t.setRaw(true, "", r.At, th)
	case !t.raw && window > 0 && th.WindowFail > 0 && t.failures() >= th.WindowFail && t.failures() < t.n &&
		!strings.HasPrefix(t.rawReason, "flapping: "):
		// A down endpoint whose probes pass and fail by turns is flapping
		// too: say so (once), so that one taken out by traffic, or by a
		// run of failures, tells why it stays out.
		t.rawReason = fmt.Sprintf("flapping: %d of the last %d probes failed: %s", t.failures(), t.n, reason(r))
	}
	return t.decide(r.At, th)
}

// push adds one result to the window.
func (t *Tracker) push(ok bool, window int) {
	if window <= 0 {
		return
	}
	t.win <<= 1
	if !ok {
		t.win |= 1
	}
	t.n = min(t.n+1, window)
	if t.n < 64 {
		t.win &= 1<<t.n - 1
	}
}

func (t *Tracker) failures() int { return bits.OnesCount64(t.win) }

// setRaw changes the raw state at time at and restarts the window.
func (t *Tracker) setRaw(up bool, why string, at time.Time, th Thresholds) {
	t.raw = up
	t.rawReason = why
	t.win, t.n = 0, 0
	if th.FlapChanges > 0 && th.FlapHold > 0 {
		t.changes = append(t.changes, at)
	}
}

// decide derives Status.Up from the raw state and the flap damping at time
// now, and reports whether Up or a down endpoint's Reason changed.
func (t *Tracker) decide(now time.Time, th Thresholds) (changed bool) {
	s := &t.s
	if th.FlapChanges <= 0 || th.FlapHold <= 0 {
		t.changes, t.flapping = t.changes[:0], false
	} else {
		// Forget the changes older than the hold; they no longer count.
		i := 0
		for i < len(t.changes) && now.Sub(t.changes[i]) >= th.FlapHold {
			i++
		}
		t.changes = append(t.changes[:0], t.changes[i:]...)
		if len(t.changes) >= th.FlapChanges {
			t.flapping = true
		} else if len(t.changes) == 0 {
			t.flapping = false // stable for the hold
		}
	}
	up := t.raw && !t.flapping
	why := t.rawReason
	switch {
	case up:
		why = ""
	case t.flapping:
		// While held, the count follows the changes that go on and age out;
		// it is formatted only when it moves.
		if n := len(t.changes); n != t.flapCount || !strings.HasPrefix(s.Reason, "flapping: ") || s.Up {
			t.flapCount = n
			why = fmt.Sprintf("flapping: %d state changes in %s", n, th.FlapHold)
		} else {
			why = s.Reason
		}
	}
	if up == s.Up && why == s.Reason {
		return false
	}
	if up != s.Up {
		s.Since = now
	}
	s.Up, s.Reason = up, why
	return true
}

// ObservePassive records a passive report and reports whether Up changed.
// A failure takes an up endpoint down at once, with p.Reason (or "passive
// failure") as its Reason, and restarts its count of successes, so that
// coming back takes rise successful probes. Any other report is only noted in
// Status.Passive: a success never brings an endpoint up, and a failure of one
// already down does not hold it down.
func (t *Tracker) ObservePassive(p Passive) (changed bool) {
	s := &t.s
	s.Passive = p
	if !p.Failure || !t.raw || !s.Probed {
		return false
	}
	why := p.Reason
	if why == "" {
		why = "passive failure"
	}
	s.ConsecutiveOK = 0
	// Traffic taking an endpoint down is a state change like any other:
	// an endpoint that traffic and probes keep flipping is flapping too.
	t.setRaw(false, why, p.At, t.th)
	return t.decide(p.At, t.th)
}

// InDoubt reports whether the latest probe disagrees with the state: an up
// endpoint failed it, or a down one passed it. It stays so until a probe
// agrees or rise or fall changes the state.
// Doubt follows the raw state: an endpoint held down for flapping whose
// probes pass is not in doubt, so it is not re-probed fast while held.
func (t *Tracker) InDoubt() bool {
	s := &t.s
	return s.Probed && (t.raw && s.ConsecutiveFail > 0 || !t.raw && s.ConsecutiveOK > 0)
}

// Status returns the tracked state. Its Target is zero; the Checker fills it.
func (t *Tracker) Status() Status { return t.s }

func reason(r Result) string {
	if r.Err == "" {
		return "probe failed"
	}
	return r.Err
}
