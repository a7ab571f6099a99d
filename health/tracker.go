package health

import "time"

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
	// not rewritten by later failures; Last.Err holds the latest one.
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
// (Initial), which decides its state at once.
type Transition struct {
	Status  Status
	Initial bool
}

// Tracker is the rise/fall state machine of one endpoint. The zero value is an
// endpoint not yet probed. It is not safe for concurrent use.
type Tracker struct {
	s Status
}

// Observe records one result. The first result decides the state at once (up
// if OK, down if not); afterwards going down takes fall consecutive failures
// and coming up takes rise consecutive successes. Rise or fall below 1 count
// as 1. Observe reports whether Up changed or this was the first result.
func (t *Tracker) Observe(r Result, rise, fall int) (changed bool) {
	rise, fall = max(rise, 1), max(fall, 1)
	s := &t.s
	s.Last = r
	if r.OK {
		s.ConsecutiveOK++
		s.ConsecutiveFail = 0
	} else {
		s.ConsecutiveFail++
		s.ConsecutiveOK = 0
	}

	switch {
	case !s.Probed:
		s.Probed = true
		s.Up = r.OK
	case s.Up && s.ConsecutiveFail >= fall:
		s.Up = false
	case !s.Up && s.ConsecutiveOK >= rise:
		s.Up = true
	default:
		return false
	}
	s.Since = r.At
	s.Reason = ""
	if !s.Up {
		s.Reason = reason(r)
	}
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
	if !p.Failure || !s.Up {
		return false
	}
	s.Up = false
	s.ConsecutiveOK = 0
	s.Since = p.At
	s.Reason = p.Reason
	if s.Reason == "" {
		s.Reason = "passive failure"
	}
	return true
}

// InDoubt reports whether the latest probe disagrees with the state: an up
// endpoint failed it, or a down one passed it. It stays so until a probe
// agrees or rise or fall changes the state.
func (t *Tracker) InDoubt() bool {
	s := &t.s
	return s.Probed && (s.Up && s.ConsecutiveFail > 0 || !s.Up && s.ConsecutiveOK > 0)
}

// Status returns the tracked state. Its Target is zero; the Checker fills it.
func (t *Tracker) Status() Status { return t.s }

func reason(r Result) string {
	if r.Err == "" {
		return "probe failed"
	}
	return r.Err
}
