package routing

// SetDrains replaces every drain in effect with drains (by datacenter name),
// as a replicated source such as the cluster decides them. A DC that gains
// or loses a drain, or whose drain changed (reason, mode, author or start),
// gets an event as Drain and Undrain give; a change only in the deadline or
// in how widely the drain is known (Origin, KnownOn, Members) is published
// without one. Drains of DCs the configuration does not name are ignored.
// undrainedBy names who lifted a drain, for the event; it may be nil.
func (e *Engine) SetDrains(drains map[string]Drain, undrainedBy func(dc string) string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := false
	now := e.opts.Now()
	for dc := range e.drains {
		if _, ok := drains[dc]; ok {
			continue
		}
		delete(e.drains, dc)
		by := ""
		if undrainedBy != nil {
			by = undrainedBy(dc)
		}
		e.emitLocked(Event{Time: now, Kind: EventUndrained, DC: dc, By: by})
		changed = true
	}
	for dc, d := range drains {
		if !e.hasDC(dc) {
			continue
		}
		if d.Mode == "" {
			d.Mode = "hard"
		}
		if d.Since.IsZero() {
			d.Since = now
		}
		old, had := e.drains[dc]
		if had && sameDrain(old, d) {
			continue
		}
		e.drains[dc] = d
		changed = true
		if had && old.Reason == d.Reason && old.Mode == d.Mode && old.By == d.By && old.Since.Equal(d.Since) {
			continue // the same drain, better known: no new event
		}
		e.emitLocked(Event{Time: d.Since, Kind: EventDrained, DC: dc, Reason: d.Reason, By: d.By, Mode: d.Mode})
	}
	if changed {
		e.publishLocked()
	}
}

func sameDrain(a, b Drain) bool {
	return a.Reason == b.Reason && a.Mode == b.Mode && a.By == b.By && a.Since.Equal(b.Since) && a.Deadline.Equal(b.Deadline) &&
		a.Origin == b.Origin && a.KnownOn == b.KnownOn && a.Members == b.Members
}
