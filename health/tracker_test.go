package health

import (
	"testing"
	"time"
)

func TestTrackerSequences(t *testing.T) {
	// seq is the results in order, 'o' for OK and 'x' for a failure; up is the
	// state after each ('U' or 'D'), changed marks the steps Observe reports.
	tests := []struct {
		name       string
		rise, fall int
		seq        string
		up         string
		changed    string
	}{
		{"first OK decides up", 2, 3, "o", "U", "C"},
		{"first failure decides down", 2, 3, "x", "D", "C"},
		{"fall consecutive failures go down", 2, 3, "oxxxo", "UUUDD", "C..C."},
		{"rise consecutive successes come up", 2, 3, "xoo", "DDU", "C.C"},
		{"interrupted failures do not go down", 2, 3, "oxxoxxoxx", "UUUUUUUUU", "C........"},
		{"interrupted successes do not come up", 2, 3, "xoxoxox", "DDDDDDD", "C......"},
		{"a long outage changes once", 2, 2, "oxxxxxxoo", "UUDDDDDDU", "C.C.....C"},
		{"flapping with thresholds of one", 1, 1, "oxoxo", "UDUDU", "CCCCC"},
		{"thresholds below one count as one", 0, -1, "oxo", "UDU", "CCC"},
		{"down then up then down", 2, 2, "xooxxoo", "DDUUDDU", "C.C.C.C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			for i, c := range tt.seq {
				r := Result{OK: c == 'o'}
				if !r.OK {
					r.Err = "connection refused"
				}
				changed := tr.Observe(r, tt.rise, tt.fall)
				s := tr.Status()
				if got, want := s.Up, tt.up[i] == 'U'; got != want {
					t.Errorf("step %d (%c): Up = %v, want %v", i, c, got, want)
				}
				if got, want := changed, tt.changed[i] == 'C'; got != want {
					t.Errorf("step %d (%c): changed = %v, want %v", i, c, got, want)
				}
				if !s.Probed {
					t.Errorf("step %d: Probed = false", i)
				}
			}
		})
	}
}

func TestTrackerZero(t *testing.T) {
	var tr Tracker
	s := tr.Status()
	if s.Up || s.Probed || !s.Since.IsZero() || s.Reason != "" {
		t.Errorf("zero Tracker status = %+v, want not probed and down", s)
	}
}

func TestTrackerSinceReasonCounters(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	steps := []struct {
		r           Result
		changed, up bool
		since       time.Time
		reason      string
		ok, fail    int
	}{
		{Result{OK: true, At: at(0)}, true, true, at(0), "", 1, 0},
		{Result{OK: true, At: at(1)}, false, true, at(0), "", 2, 0},
		{Result{Err: "status 503, want 200", At: at(2)}, false, true, at(0), "", 0, 1},
		{Result{Err: "timeout after 800ms", At: at(3)}, true, false, at(3), "timeout after 800ms", 0, 2},
		// Later failures keep the reason of the transition; Last has the latest.
		{Result{Err: "connection refused", Hard: true, At: at(4)}, false, false, at(3), "timeout after 800ms", 0, 3},
		{Result{OK: true, At: at(5)}, false, false, at(3), "timeout after 800ms", 1, 0},
		{Result{OK: true, At: at(6)}, true, true, at(6), "", 2, 0},
		{Result{At: at(7)}, false, true, at(6), "", 0, 1},
		{Result{At: at(8)}, true, false, at(8), "probe failed", 0, 2},
	}
	var tr Tracker
	for i, st := range steps {
		changed := tr.Observe(st.r, 2, 2)
		s := tr.Status()
		if changed != st.changed || s.Up != st.up || !s.Since.Equal(st.since) || s.Reason != st.reason ||
			s.ConsecutiveOK != st.ok || s.ConsecutiveFail != st.fail || s.Last != st.r {
			t.Errorf("step %d: changed=%v status=%+v\nwant changed=%v up=%v since=%v reason=%q ok=%d fail=%d last=%+v",
				i, changed, s, st.changed, st.up, st.since, st.reason, st.ok, st.fail, st.r)
		}
	}
}

func TestTrackerObserveAllocs(t *testing.T) {
	var tr Tracker
	ok, bad := Result{OK: true}, Result{Err: "connection refused"}
	allocs := testing.AllocsPerRun(1000, func() {
		tr.Observe(ok, 2, 3)
		tr.Observe(bad, 2, 3)
	})
	if allocs != 0 {
		t.Errorf("Observe allocates %v times per run, want 0", allocs)
	}
}

func TestTrackerPassive(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// seq is the inputs in order: 'o' and 'x' probes, 'P' a passive failure,
	// 'p' a passive success; up is the state after each, changed marks the
	// steps that report a change, doubt those after which InDoubt holds.
	tests := []struct {
		name                    string
		rise, fall              int
		seq, up, changed, doubt string
	}{
		{"failure takes an up endpoint down", 2, 3, "oPoo", "UDDU", "CC.C", "..D."},
		{"and restarts its count of successes", 3, 3, "oooPooo", "UUUDDDU", "C..C..C", "....DD."},
		{"failure of a down endpoint changes nothing", 2, 3, "xPoo", "DDDU", "C..C", "..D."},
		{"before the first probe it changes nothing", 2, 3, "Po", "-U", ".C", ".."},
		{"success never brings it up", 2, 3, "oPpppo", "UDDDDD", "CC....", ".....D"},
		{"failing probes after it keep it down", 2, 3, "oPxxoo", "UDDDDU", "CC...C", "....D."},
		{"an up endpoint in doubt goes down at once", 2, 3, "oxP", "UUD", "C.C", ".D."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			for i, c := range tt.seq {
				at := t0.Add(time.Duration(i) * time.Second)
				var changed bool
				switch c {
				case 'o', 'x':
					changed = tr.Observe(Result{OK: c == 'o', Err: map[rune]string{'x': "connection refused"}[c], At: at}, tt.rise, tt.fall)
				case 'P', 'p':
					changed = tr.ObservePassive(Passive{Failure: c == 'P', Reason: "refused (passive)", At: at})
					if s := tr.Status(); s.Passive.At != at || s.Passive.Failure != (c == 'P') {
						t.Errorf("step %d: Passive = %+v, not noted", i, s.Passive)
					}
				}
				s := tr.Status()
				if want := tt.up[i]; want != '-' && s.Up != (want == 'U') {
					t.Errorf("step %d (%c): Up = %v, want %c", i, c, s.Up, want)
				}
				if changed != (tt.changed[i] == 'C') {
					t.Errorf("step %d (%c): changed = %v", i, c, changed)
				}
				if tr.InDoubt() != (tt.doubt[i] == 'D') {
					t.Errorf("step %d (%c): InDoubt = %v", i, c, tr.InDoubt())
				}
				if c == 'P' && changed && (s.Reason != "refused (passive)" || !s.Since.Equal(at) || s.ConsecutiveOK != 0) {
					t.Errorf("step %d: status after a passive failure = %+v", i, s)
				}
			}
		})
	}
	var tr Tracker
	tr.Observe(Result{OK: true}, 2, 3)
	if tr.ObservePassive(Passive{Failure: true}); tr.Status().Reason != "passive failure" {
		t.Errorf("Reason without words = %q, want \"passive failure\"", tr.Status().Reason)
	}
}
