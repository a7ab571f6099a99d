package main

import "testing"

// TestAnalyzeWindows pins which window each request's latency lands in:
// a request sent before the fault but still held by it counts in the fault
// (a hang holds it), a slow one late in the fault counts in the fault but
// not in its first 2 s, and calm is what none of the windows hold.
func TestAnalyzeWindows(t *testing.T) {
	const (
		s    = int64(1e9)
		ms   = int64(1e6)
		kill = 10 * s
		rst  = 20 * s
	)
	ok := func(sent, lat int64, dc string) httpRecord {
		return httpRecord{sched: sent, sent: sent, lat: lat, status: 200, dc: dc}
	}
	hs := []httpRecord{
		ok(0, 5*ms, "dc1"),   // warm-up: left out
		ok(2*s, 7*ms, "dc1"), // calm
		{sched: kill - ms, sent: kill - ms, lat: 900 * ms}, // in flight at the fault: fault and kill windows, failed
		ok(kill+1*s, 300*ms, "dc2"),                        // first 2 s of the fault
		ok(kill+5*s, 400*ms, "dc2"),                        // fault, later
		ok(rst+1*s, 2*ms, "dc1"),                           // failback window
		ok(rst+5*s, 9*ms, "dc1"),                           // calm again
	}
	f := analyzeHTTP(hs, kill, rst, rst, "dc1", "dc2", s)
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"worst", f.worst, 900 * ms},
		{"fault", f.worstFault, 900 * ms},
		{"kill", f.worstKill, 900 * ms},
		{"fb", f.worstFB, 2 * ms},
		{"calm", f.worstCalm, 9 * ms},
		{"to other", f.toOther, 1*s + 300*ms},
		{"failback", f.failback, 1*s + 2*ms},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d ms, want %d ms", c.name, c.got/ms, c.want/ms)
		}
	}
	if f.failed != 1 || f.preKillFailed != 1 {
		t.Errorf("failed %d, pre-kill failed %d, want 1 and 1", f.failed, f.preKillFailed)
	}

	// Without the held request, the fault's worst is the slow late one,
	// which the first 2 s do not see.
	hs = append(hs[:2], hs[3:]...)
	f = analyzeHTTP(hs, kill, rst, rst, "dc1", "dc2", s)
	if f.worstFault != 400*ms || f.worstKill != 300*ms {
		t.Errorf("fault %d ms, kill %d ms, want 400 and 300", f.worstFault/ms, f.worstKill/ms)
	}
}
