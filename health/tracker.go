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

// Status returns the tracked state. Its Target is zero; the Checker fills it.
func (t *Tracker) Status() Status { return t.s }

func reason(r Result) string {
	if r.Err == "" {
		return "probe failed"
	}
	return r.Err
}
