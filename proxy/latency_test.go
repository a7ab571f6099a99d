package proxy

import (
	"testing"
	"time"
)

func TestLatencyBound(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		samples []time.Duration
		floor   time.Duration
		limit   time.Duration
		want    time.Duration
	}{
		{"too few samples: the configured limit", rep(5*ms, latencyMinSamples-1), 150 * ms, 3 * time.Second, 3 * time.Second},
		{"fast endpoint: the floor", rep(5*ms, 64), 150 * ms, 3 * time.Second, 150 * ms},
		{"four times the high percentile", rep(100*ms, 64), 150 * ms, 3 * time.Second, 400 * ms},
		{"capped at the limit", rep(2*time.Second, 64), 150 * ms, 3 * time.Second, 3 * time.Second},
		{"one outlier does not move it", append(rep(50*ms, 63), 5*time.Second), 10 * ms, 3 * time.Second, 200 * ms},
		{"two outliers do", append(rep(50*ms, 62), 500*ms, 500*ms), 10 * ms, 3 * time.Second, 2 * time.Second},
		{"old samples leave the ring", append(rep(time.Second, 64), rep(10*ms, 64)...), 10 * ms, 3 * time.Second, 40 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l latency
			for _, d := range tt.samples {
				l.observe(d)
			}
			if got := l.bound(tt.floor, tt.limit, 4, latencyMinSamples); got != tt.want {
				t.Fatalf("bound = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLatencyFewDials(t *testing.T) {
	var l latency
	for i := 0; i < dialMinSamples; i++ {
		l.observe(time.Millisecond)
	}
	if got := l.bound(dialTimeoutFloor, 2*time.Second, dialMultiple, dialMinSamples); got != dialTimeoutFloor {
		t.Fatalf("after %d dials the bound is %v, want the floor", dialMinSamples, got)
	}
}

func rep(d time.Duration, n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func TestConnectLatencyPerAddress(t *testing.T) {
	var c connectLatency
	a, b := c.of("127.0.0.1:1"), c.of("127.0.0.1:2")
	if a == b || c.of("127.0.0.1:1") != a {
		t.Fatal("connectLatency.of must keep one ring per address")
	}
}
