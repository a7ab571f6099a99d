package health

import "time"

// Clock is the checker's source of time. Tests inject a fake one (or run under
// testing/synctest) so that thresholds and intervals are checked without sleeping.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the checker uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the Clock of package time. The zero value is ready to use.
type RealClock struct{}

var _ Clock = RealClock{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer that fires once after d.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }
