package simulator

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// FaultMode says how an endpoint misbehaves.
type FaultMode int

const (
	// None is a healthy endpoint.
	None FaultMode = iota
	// Refuse closes the listener and every open connection, so dials fail
	// with "connection refused" until the fault clears; the endpoint then
	// listens again on the same port.
	Refuse
	// Hang accepts connections and reads requests but never answers them.
	Hang
	// Slow answers every request after Fault.Delay.
	Slow
	// Error500 answers every request, /status included, with 500.
	Error500
	// Flap alternates between Error500 and healthy every Fault.FlapPeriod,
	// starting with Error500.
	Flap
	// Blackhole stops answering SYNs, as a host whose packets are dropped:
	// new connections time out, and requests on connections already open
	// are never answered (see blackhole.go for how, on loopback).
	Blackhole
)

// Defaults used when a Fault leaves its duration zero.
const (
	DefaultSlowDelay  = 2 * time.Second
	DefaultFlapPeriod = time.Second
)

var modeNames = [...]string{
	None:      "none",
	Refuse:    "refuse",
	Hang:      "hang",
	Slow:      "slow",
	Error500:  "500",
	Flap:      "flap",
	Blackhole: "blackhole",
}

// failNextMode is accepted by ParseFault although it is not a FaultMode: it
// sets Fault.FailNext on an otherwise healthy endpoint.
const failNextMode = "failnext"

// String returns the name ParseFaultMode accepts for m.
func (m FaultMode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "FaultMode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// MarshalText lets a FaultMode appear by name in JSON and config files.
func (m FaultMode) MarshalText() ([]byte, error) {
	if m < 0 || int(m) >= len(modeNames) {
		return nil, fmt.Errorf("simulator: unknown fault mode %d", int(m))
	}
	return []byte(modeNames[m]), nil
}

// UnmarshalText parses a name accepted by ParseFaultMode.
func (m *FaultMode) UnmarshalText(b []byte) error {
	v, err := ParseFaultMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseFaultMode parses a mode name: none, refuse, hang, slow, 500 (or
// error500), flap or blackhole. Case is ignored.
func ParseFaultMode(s string) (FaultMode, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "error500" {
		return Error500, nil
	}
	for m, name := range modeNames {
		if s == name {
			return FaultMode(m), nil
		}
	}
	return None, fmt.Errorf("simulator: unknown fault mode %q (valid: %s)", s, strings.Join(ValidModes(), ", "))
}

// ValidModes lists the mode names ParseFault accepts, for help and error
// messages.
func ValidModes() []string {
	out := make([]string, 0, len(modeNames)+1)
	out = append(out, modeNames[:]...)
	return append(out, failNextMode)
}

// Fault describes how an endpoint misbehaves. The zero Fault is healthy.
type Fault struct {
	Mode FaultMode
	// Delay is how long Slow holds each request; zero means DefaultSlowDelay.
	Delay time.Duration
	// FlapPeriod is the length of each Flap phase; zero means
	// DefaultFlapPeriod.
	FlapPeriod time.Duration
	// FailNext makes the next FailNext /status requests that would otherwise
	// succeed answer 500, so a test can drop an exact number of health
	// probes. It combines with any Mode; Server.Fault reports how many are
	// left.
	FailNext int
}

// withDefaults fills the zero durations the mode needs, so that Server.Fault
// reports what the endpoint actually does.
func (f Fault) withDefaults() Fault {
	if f.Mode == Slow && f.Delay <= 0 {
		f.Delay = DefaultSlowDelay
	}
	if f.Mode == Flap && f.FlapPeriod <= 0 {
		f.FlapPeriod = DefaultFlapPeriod
	}
	if f.FailNext < 0 {
		f.FailNext = 0
	}
	return f
}

// String renders f compactly, e.g. "slow(2s)" or "none+failnext(1)".
func (f Fault) String() string {
	s := f.Mode.String()
	switch f.Mode {
	case Slow:
		s += "(" + f.Delay.String() + ")"
	case Flap:
		s += "(" + f.FlapPeriod.String() + ")"
	}
	if f.FailNext > 0 {
		s += "+failnext(" + strconv.Itoa(f.FailNext) + ")"
	}
	return s
}

// ParseFault builds a Fault from a mode name (see ValidModes) and query
// parameters: delay (Slow, Go duration), period (Flap, Go duration) and n
// (how many /status probes fail; mode failnext, default 1). The mode
// "failnext" yields a healthy endpoint whose next n probes fail; any other
// mode also takes an optional failnext=N parameter.
func ParseFault(mode string, q url.Values) (Fault, error) {
	var f Fault
	if strings.EqualFold(strings.TrimSpace(mode), failNextMode) {
		n, err := intParam(q, "n", 1)
		if err != nil {
			return Fault{}, err
		}
		f.FailNext = n
		return f, nil
	}
	m, err := ParseFaultMode(mode)
	if err != nil {
		return Fault{}, err
	}
	f.Mode = m
	if f.Delay, err = durationParam(q, "delay"); err != nil {
		return Fault{}, err
	}
	if f.FlapPeriod, err = durationParam(q, "period"); err != nil {
		return Fault{}, err
	}
	if f.FailNext, err = intParam(q, failNextMode, 0); err != nil {
		return Fault{}, err
	}
	return f.withDefaults(), nil
}

func durationParam(q url.Values, key string) (time.Duration, error) {
	v := q.Get(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("simulator: bad %s %q: want a non-negative Go duration such as 2s", key, v)
	}
	return d, nil
}

func intParam(q url.Values, key string, def int) (int, error) {
	v := q.Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("simulator: bad %s %q: want a non-negative integer", key, v)
	}
	return n, nil
}

// faultJSON is Fault's wire form: durations as Go duration strings, which
// people can read and write in control requests and config files.
type faultJSON struct {
	Mode       FaultMode `json:"mode"`
	Delay      string    `json:"delay,omitempty"`
	FlapPeriod string    `json:"flap_period,omitempty"`
	FailNext   int       `json:"fail_next,omitempty"`
}

// MarshalJSON renders f as {"mode":"slow","delay":"2s"}.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Mode: f.Mode, FailNext: f.FailNext}
	if f.Delay > 0 {
		j.Delay = f.Delay.String()
	}
	if f.FlapPeriod > 0 {
		j.FlapPeriod = f.FlapPeriod.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON parses the form MarshalJSON writes.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Fault{Mode: j.Mode, FailNext: j.FailNext}
	var err error
	if j.Delay != "" {
		if out.Delay, err = time.ParseDuration(j.Delay); err != nil {
			return fmt.Errorf("simulator: bad fault delay: %w", err)
		}
	}
	if j.FlapPeriod != "" {
		if out.FlapPeriod, err = time.ParseDuration(j.FlapPeriod); err != nil {
			return fmt.Errorf("simulator: bad fault flap_period: %w", err)
		}
	}
	*f = out
	return nil
}
