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
