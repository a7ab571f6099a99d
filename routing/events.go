package routing

import "time"

// EventKind names what happened.
type EventKind string

// The kinds of events the engine records.
const (
	EventEndpointUp     EventKind = "endpoint_up"
	EventEndpointDown   EventKind = "endpoint_down"
	EventDCUp           EventKind = "dc_up"
	EventDCDown         EventKind = "dc_down"
	EventDrained        EventKind = "drained"
	EventUndrained      EventKind = "undrained"
	EventAllDown        EventKind = "all_down"
	EventAllDownCleared EventKind = "all_down_cleared"
	EventConfigReloaded EventKind = "config_reloaded"
	// EventDNSSECExpiring: the earliest DNSSEC signature held for serving
	// expires soon (signature refresh is failing); Reason says when.
	EventDNSSECExpiring EventKind = "dnssec_expiring"
)

// Event is one change of routing state.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	DC       string    `json:"dc,omitempty"`
	Service  string    `json:"service,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	Mode     string    `json:"mode,omitempty"`
	// Initial marks the first state learned at start-up or for a new
	// endpoint, as opposed to a change.
	Initial bool `json:"initial,omitempty"`
}

// eventLog is a bounded ring of events. It is not safe for concurrent use;
// the Engine guards it.
type eventLog struct {
	buf  []Event
	next int
	full bool
	seq  uint64
}

func newEventLog(n int) *eventLog { return &eventLog{buf: make([]Event, n)} }

// add numbers ev, records it and returns it numbered.
func (l *eventLog) add(ev Event) Event {
	l.seq++
	ev.Seq = l.seq
	l.buf[l.next] = ev
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
	return ev
}

func (l *eventLog) since(t time.Time) []Event {
	var out []Event
	if l.full {
		out = append(out, l.buf[l.next:]...)
	}
	out = append(out, l.buf[:l.next]...)
	// Times come from several sources and need not be monotonic: filter, not search.
	kept := out[:0]
	for _, ev := range out {
		if !ev.Time.Before(t) {
			kept = append(kept, ev)
		}
	}
	return kept
}
