package routing

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestEventsOffTheLock: an OnEvent that blocks (a state log nobody reads)
// delays neither endpoint updates nor drains; what the queue cannot hold is
// counted; delivered events carry the history's sequence numbers.
func TestEventsOffTheLock(t *testing.T) {
	cfg := newFixture(t, "failover", "serve_all", "1").e.Snapshot().Config
	release := make(chan struct{})
	var mu sync.Mutex
	var got []Event
	e := New(cfg, Options{QueueSize: 4, OnEvent: func(ev Event) {
		<-release
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Deliver(ctx) }()

	start := time.Now()
	for i := range 50 {
		e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001", Up: i%2 == 0, Reason: "refused"})
	}
	if err := e.Drain("west", Drain{Reason: "maint"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("50 updates and a drain took %v with a blocked consumer", d)
	}
	if e.Snapshot().Service("api").DC("west").State != StateDrained {
		t.Fatal("the drain is not in the snapshot")
	}
	if e.DroppedEvents() == 0 {
		t.Error("a full queue dropped nothing")
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	history := map[uint64]Event{}
	for _, ev := range e.Events(time.Time{}) {
		history[ev.Seq] = ev
	}
	if len(got) == 0 {
		t.Fatal("nothing delivered")
	}
	for i, ev := range got {
		if ev.Seq == 0 || history[ev.Seq].Kind != ev.Kind || history[ev.Seq].Time != ev.Time {
			t.Errorf("delivered event %d (%+v) does not match the history's %+v", i, ev, history[ev.Seq])
		}
		if i > 0 && ev.Seq <= got[i-1].Seq {
			t.Errorf("delivered out of order: %d after %d", ev.Seq, got[i-1].Seq)
		}
	}
}

// TestDrainRetryIsOneEvent: the same drain again (a client retrying) is not a
// second event.
func TestDrainRetryIsOneEvent(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	for range 7 {
		if err := f.e.Drain("west", Drain{Reason: "maint", By: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, ev := range f.e.Events(time.Time{}) {
		if ev.Kind == EventDrained {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d drained events for one drain retried 7 times", n)
	}
	if err := f.e.Drain("west", Drain{Reason: "another", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if evs := f.e.Events(time.Time{}); evs[len(evs)-1].Kind != EventDrained || evs[len(evs)-1].Reason != "another" {
		t.Errorf("a changed drain is a new event: %+v", evs[len(evs)-1])
	}
}

// TestNothingAnnouncedBeforeProbed: a DC with an endpoint not probed yet is
// not announced down (nor the service all down) until its probes decide.
func TestNothingAnnouncedBeforeProbed(t *testing.T) {
	cfg := newFixture(t, "failover", "serve_all", "1").e.Snapshot().Config
	e := New(cfg, Options{})
	defer e.Close()
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1001", Up: false, Reason: "refused"})
	for _, ev := range e.Events(time.Time{}) {
		if ev.Kind == EventDCDown || ev.Kind == EventAllDown {
			t.Fatalf("announced before the probes decided: %+v", ev)
		}
	}
	e.UpdateEndpoint(EndpointUpdate{DC: "east", Service: "api", Endpoint: "127.0.0.1:1002", Up: false, Reason: "refused"})
	var down []Event
	for _, ev := range e.Events(time.Time{}) {
		if ev.Kind == EventDCDown {
			down = append(down, ev)
		}
	}
	if len(down) != 1 || down[0].DC != "east" || !down[0].Initial {
		t.Fatalf("want one initial dc_down for east once both probes are in, got %+v", down)
	}
}

// TestWatch: a watcher sees the current snapshot, then the newest after each
// publish, outside the lock (it may call back into the engine).
func TestWatch(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan *Snapshot, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.e.Watch(ctx, func(s *Snapshot) {
			_ = f.e.Snapshot() // no deadlock: not called under the lock
			seen <- s
		})
	}()
	if s := <-seen; s != f.e.Snapshot() {
		t.Fatal("the first call is not the current snapshot")
	}
	if err := f.e.Drain("west", Drain{Reason: "maint"}); err != nil {
		t.Fatal(err)
	}
	want := f.e.Snapshot()
	for s := range seen {
		if s == want {
			break
		}
	}
	cancel()
	<-done
}
