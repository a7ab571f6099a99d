package routing

import (
	"strings"
	"testing"
	"time"
)

func TestSetDrains(t *testing.T) {
	f := newFixture(t, "failover", "serve_all", "1")
	f.now = f.now.Add(time.Minute)
	start := f.now
	kinds := func() string {
		var k []string
		for _, ev := range f.e.Events(start) {
			k = append(k, string(ev.Kind)+":"+ev.DC+":"+ev.By)
		}
		return strings.Join(k, ",")
	}
	since := f.now
	east := Drain{Reason: "kernel", By: "alice", Since: since, Origin: "a", KnownOn: 1, Members: 3}
	steps := []struct {
		name   string
		drains map[string]Drain
		events string
		state  State
		gen    bool // a new snapshot is published
	}{
		{"a new drain is one event", map[string]Drain{"east": east, "mars": {}}, "drained:east:alice", StateDrained, true},
		{"the same drain again is nothing", map[string]Drain{"east": east}, "drained:east:alice", StateDrained, false},
		{"better known: published, no event", map[string]Drain{"east": {Reason: "kernel", By: "alice", Since: since, Origin: "a", KnownOn: 3, Members: 3}}, "drained:east:alice", StateDrained, true},
		{"a newer drain of the DC is an event", map[string]Drain{"east": {Reason: "network", By: "bob", Since: since.Add(time.Second), Mode: "soft"}}, "drained:east:alice,drained:east:bob", StateDrained, true},
		{"gone is an undrain", map[string]Drain{}, "drained:east:alice,drained:east:bob,undrained:east:carol", StateUp, true},
	}
	for _, st := range steps {
		gen := f.e.Snapshot().Generation
		f.e.SetDrains(st.drains, func(dc string) string { return "carol" })
		if got := kinds(); got != st.events {
			t.Errorf("%s: events %s, want %s", st.name, got, st.events)
		}
		if got := f.e.Snapshot().Service("api").DC("east").State; got != st.state {
			t.Errorf("%s: east %s, want %s", st.name, got, st.state)
		}
		if published := f.e.Snapshot().Generation != gen; published != st.gen {
			t.Errorf("%s: published %v, want %v", st.name, published, st.gen)
		}
		if _, ok := f.e.Snapshot().Drains["mars"]; ok {
			t.Errorf("%s: a drain of an unknown DC was kept", st.name)
		}
	}
	f.e.SetDrains(map[string]Drain{"east": east}, nil)
	if d := f.e.Snapshot().Drains["east"]; d.Mode != "hard" || d.KnownOn != 1 || d.Origin != "a" {
		t.Errorf("drain kept %+v", d)
	}
}
