package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func TestStampOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b Stamp
		less bool
	}{
		{Stamp{1, 0, "a"}, Stamp{2, 0, "a"}, true},
		{Stamp{2, 0, "a"}, Stamp{1, 9, "z"}, false},
		{Stamp{1, 1, "a"}, Stamp{1, 2, "a"}, true},
		{Stamp{1, 1, "a"}, Stamp{1, 1, "b"}, true},
		{Stamp{1, 1, "b"}, Stamp{1, 1, "a"}, false},
		{Stamp{1, 1, "a"}, Stamp{1, 1, "a"}, false},
	} {
		if got := tc.a.Less(tc.b); got != tc.less {
			t.Errorf("%v.Less(%v) = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
}

func TestHLC(t *testing.T) {
	var h hlc
	s1 := h.now(100, "a")
	s2 := h.now(100, "a") // same physical time: the counter orders them
	s3 := h.now(50, "a")  // the wall clock stepped back: still later
	if !s1.Less(s2) || !s2.Less(s3) {
		t.Fatalf("stamps not increasing: %v %v %v", s1, s2, s3)
	}
	// A stamp from a member whose clock runs ahead: what we write after
	// seeing it must still win.
	remote := Stamp{Wall: 1000, Logical: 7, Node: "b"}
	h.observe(60, remote)
	if s := h.now(70, "a"); !remote.Less(s) {
		t.Fatalf("local write %v after observing %v does not win", s, remote)
	}
}

// TestDrainLWW: the later stamp wins whatever the order of arrival, an
// undrain is a tombstone that an older drain cannot revive, and every member
// ends with the same registers.
func TestDrainLWW(t *testing.T) {
	key := DrainKey{DC: "east"}
	a, b := newTable("a", 1), newTable("b", 1)
	drainA := a.newDrain(key, DrainRequest{Reason: "maintenance", By: "alice", Mode: "soft", Deadline: t0.Add(time.Hour)}, t0)
	a.merge(drainA, t0)
	// b's clock is 5 s behind, but it saw a's drain before undraining.
	if !b.merge(drainA, t0.Add(-5*time.Second)) {
		t.Fatal("b did not take a's drain")
	}
	undo, ok := b.newUndrain(key, "bob", t0.Add(-4*time.Second))
	if !ok {
		t.Fatal("b: east is drained, undrain refused")
	}
	b.merge(undo, t0)
	if !drainA.Stamp.Less(undo.Stamp) {
		t.Fatalf("undrain %v made after seeing drain %v orders before it", undo.Stamp, drainA.Stamp)
	}
	// a receives the tombstone: east is no longer drained there.
	if !a.merge(undo, t0) || len(a.activeDrains()) != 0 {
		t.Fatalf("a still drained after the tombstone: %+v", a.activeDrains())
	}
	// The old drain arriving late (a third member cut off until now) is refused.
	if a.merge(drainA, t0) || b.merge(drainA, t0) {
		t.Fatal("an older drain replaced the tombstone")
	}
	if _, ok := a.newUndrain(key, "x", t0); ok {
		t.Fatal("undrain of a DC that is not drained was accepted")
	}
	// Concurrent drains on both sides of a partition, same wall time: the
	// node name breaks the tie identically everywhere.
	c, d := newTable("c", 1), newTable("d", 1)
	dc := c.newDrain(DrainKey{DC: "west"}, DrainRequest{Reason: "from c"}, t0.Add(time.Minute))
	dd := d.newDrain(DrainKey{DC: "west"}, DrainRequest{Reason: "from d"}, t0.Add(time.Minute))
	c.merge(dc, t0)
	d.merge(dd, t0)
	c.merge(dd, t0)
	d.merge(dc, t0)
	if c.drains[DrainKey{DC: "west"}].Reason != "from d" || d.drains[DrainKey{DC: "west"}].Reason != "from d" {
		t.Fatalf("members disagree: c has %q, d has %q", c.drains[DrainKey{DC: "west"}].Reason, d.drains[DrainKey{DC: "west"}].Reason)
	}
	// Every field travels.
	got := b.drains[key]
	if got.Origin != "b" || got.By != "bob" || !got.Deleted {
		t.Fatalf("tombstone fields: %+v", got)
	}
	if a.drains[key] != got {
		t.Fatalf("registers differ: a %+v, b %+v", a.drains[key], got)
	}
}

func TestWithDrainIsWhatMergeMakes(t *testing.T) {
	tab := newTable("a", 1)
	tab.merge(tab.newDrain(DrainKey{DC: "west"}, DrainRequest{}, t0), t0)
	d := tab.newDrain(DrainKey{DC: "east"}, DrainRequest{Reason: "r"}, t0)
	pre := tab.withDrain(d)
	tab.merge(d, t0)
	if fmt.Sprint(pre) != fmt.Sprint(tab.allDrains()) {
		t.Fatalf("withDrain %v, after merge %v", pre, tab.allDrains())
	}
}

func obsMsg(from string, seq uint64, up ...bool) *stateMsg {
	m := &stateMsg{From: from, Seq: seq}
	for i, u := range up {
		m.Obs = append(m.Obs, Observation{EndpointKey: EndpointKey{DC: "east", Service: "api", Endpoint: fmt.Sprintf("10.0.0.%d:80", i+1)}, Up: u})
	}
	return m
}

var ep1 = EndpointKey{DC: "east", Service: "api", Endpoint: "10.0.0.1:80"}

// TestSilentPeerExpires: a peer's rows vote while it keeps talking and
// are dropped when it has been silent longer than the expiry; an older
// message does not replace a newer one; only the sender's rows change.
func TestSilentPeerExpires(t *testing.T) {
	tab := newTable("a", 1)
	tab.report(Observation{EndpointKey: ep1, Up: true})
	const maxAge = 3 * time.Second
	if _, obs := tab.applyState(obsMsg("b", 10, false), t0); !obs {
		t.Fatal("b's first observation not taken")
	}
	tab.applyState(obsMsg("c", 10, false), t0)
	alive := []string{"a", "b", "c"}
	v := buildView("a", tab.ballots(alive, t0, maxAge), 0, false, "majority")
	if !v.Down(ep1) || !v.Endpoints[ep1].Outvoted {
		t.Fatalf("b and c see ep1 down: want down and a outvoted, got %+v", v.Endpoints[ep1])
	}
	// An older message from b (overtaken) is ignored but b is heard.
	tab.applyState(obsMsg("b", 9, true), t0.Add(time.Second))
	if tab.peers["b"].obs[ep1].Up {
		t.Fatal("an older message replaced b's newer rows")
	}
	// c keeps talking, b goes silent.
	tab.applyState(obsMsg("c", 11, false), t0.Add(3*time.Second))
	now := t0.Add(4*time.Second + time.Millisecond)
	if v := buildView("a", tab.ballots(alive, now, maxAge), 0, false, "majority"); v.Endpoints[ep1].UpVotes+v.Endpoints[ep1].DownVotes != 2 {
		t.Fatalf("silent b still votes: %+v", v.Endpoints[ep1])
	}
	if !tab.expire(now, maxAge) || tab.peers["b"].obs != nil || tab.peers["c"].obs == nil {
		t.Fatalf("expire: b %v, c %v", tab.peers["b"].obs, tab.peers["c"].obs)
	}
	// a (up) and c (down) are left: a majority of 2 is 2, so ep1 is up.
	v = buildView("a", tab.ballots(alive, now, maxAge), 0, false, "majority")
	if e := v.Endpoints[ep1]; e.Down || e.Required != 2 || e.UpVotes != 1 || e.DownVotes != 1 {
		t.Fatalf("after b expired: %+v", e)
	}
	// A drains-only message names no sender: it does not refresh anyone.
	m := &stateMsg{Drains: []Drain{{Key: DrainKey{DC: "x"}, Stamp: Stamp{Wall: 5, Node: "c"}}}}
	if d, o := tab.applyState(m, now); !d || o {
		t.Fatalf("drains-only message: drains %v obs %v", d, o)
	}
	// Our own rows are never written by a peer's message.
	tab.applyState(obsMsg("a", 99, false), now)
	if !tab.own[ep1].Up {
		t.Fatal("a message claiming to be from self changed our rows")
	}
}

// TestQuorum: the rule with 1 to 5 voters, majority and counts, and the
// fallback of a count larger than the voters.
func TestQuorum(t *testing.T) {
	for _, tc := range []struct {
		up, down, quorum int
		wantDown         bool
		required         int
		fallback         bool
	}{
		{0, 0, 0, false, 0, false},
		{1, 0, 0, false, 1, false},
		{0, 1, 0, true, 1, false},
		{1, 1, 0, false, 2, false},
		{0, 2, 0, true, 2, false},
		{2, 1, 0, false, 2, false},
		{1, 2, 0, true, 2, false},
		{2, 2, 0, false, 3, false},
		{1, 3, 0, true, 3, false},
		{3, 2, 0, false, 3, false},
		{2, 3, 0, true, 3, false},
		{4, 1, 1, true, 1, false}, // "one": any vantage point
		{3, 2, 2, true, 2, false},
		{4, 1, 2, false, 2, false},
		{0, 5, 5, true, 5, false}, // "all"
		{1, 4, 5, false, 5, false},
		{1, 2, 5, true, 2, true}, // 5 > 3 voters: majority of 3
		{2, 1, 5, false, 2, true},
		{0, 1, 3, true, 1, true}, // alone with quorum 3
	} {
		name := fmt.Sprintf("up%d_down%d_q%d", tc.up, tc.down, tc.quorum)
		t.Run(name, func(t *testing.T) {
			down, req, fb := decide(tc.up, tc.down, tc.quorum)
			if down != tc.wantDown || req != tc.required || fb != tc.fallback {
				t.Errorf("decide = down %v, required %d, fallback %v; want %v, %d, %v", down, req, fb, tc.wantDown, tc.required, tc.fallback)
			}
		})
	}
}

// TestViewSources: an endpoint is decided by the members that observe it;
// one that is alone says so; one without its own observation says it uses
// the peers'; a member without an observation abstains.
func TestViewSources(t *testing.T) {
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprintf("%d members, self down, others up", n), func(t *testing.T) {
			tab := newTable("m0", 1)
			tab.report(Observation{EndpointKey: ep1, Up: false})
			alive := []string{"m0"}
			for i := 1; i < n; i++ {
				name := fmt.Sprintf("m%d", i)
				alive = append(alive, name)
				tab.applyState(obsMsg(name, 1, true), t0)
			}
			v := buildView("m0", tab.ballots(alive, t0, time.Minute), 0, n == 1, "majority")
			e := v.Endpoints[ep1]
			// Down only when alone: a majority of two or more needs another
			// member to agree.
			wantDown := n == 1
			if e.Down != wantDown || e.Outvoted != !wantDown {
				t.Fatalf("%d members: %+v", n, e)
			}
			wantSource := SourceCluster
			if n == 1 {
				wantSource = SourceSelf
			}
			if e.Source != wantSource || v.Alone != (n == 1) {
				t.Fatalf("source %q alone %v", e.Source, v.Alone)
			}
		})
	}
	t.Run("peers only, one abstains", func(t *testing.T) {
		tab := newTable("m0", 1)
		tab.applyState(obsMsg("m1", 1, false), t0)
		tab.applyState(obsMsg("m2", 1, false), t0)
		tab.applyState(&stateMsg{From: "m3", Seq: 1}, t0) // observes nothing
		v := buildView("m0", tab.ballots([]string{"m0", "m1", "m2", "m3"}, t0, time.Minute), 0, false, "majority")
		e := v.Endpoints[ep1]
		if !e.Down || e.Source != SourcePeers || e.DownVotes != 2 || e.UpVotes != 0 || e.Outvoted {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("suspect member abstains", func(t *testing.T) {
		tab := newTable("m0", 1)
		tab.report(Observation{EndpointKey: ep1, Up: true})
		tab.applyState(obsMsg("m1", 1, false), t0)
		tab.applyState(obsMsg("m2", 1, false), t0)
		// m2 is not in alive (suspect): 1 up, 1 down, majority 2: up.
		v := buildView("m0", tab.ballots([]string{"m0", "m1"}, t0, time.Minute), 0, false, "majority")
		if e := v.Endpoints[ep1]; e.Down || e.DownVotes != 1 {
			t.Fatalf("%+v", e)
		}
	})
}

func TestWireRoundTrip(t *testing.T) {
	tab := newTable("a", 7)
	tab.report(Observation{EndpointKey: ep1, Up: false, Since: t0, Reason: "connection refused"})
	d := tab.newDrain(DrainKey{DC: "east"}, DrainRequest{Reason: "r", By: "alice", Mode: "soft", Deadline: t0}, t0)
	tab.merge(d, t0)
	buf := encode(kindState, tab.localState("h1", true))
	kind, m, err := decode(buf)
	if err != nil || kind != kindState {
		t.Fatal(kind, err)
	}
	if m.From != "a" || m.Seq != 8 || m.Hash != "h1" || len(m.Obs) != 1 || m.Obs[0].Reason != "connection refused" || !m.Obs[0].Since.Equal(t0) {
		t.Fatalf("%+v", m)
	}
	if len(m.Drains) != 1 || m.Drains[0].Stamp != d.Stamp || m.Drains[0].Mode != "soft" || len(m.Held) != 1 {
		t.Fatalf("%+v", m.Drains)
	}
	buf[0] = 9
	if _, _, err := decode(buf); err == nil {
		t.Fatal("a message of an unknown version was accepted")
	}
	if _, _, err := decode([]byte{wireVersion, 42, '{', '}'}); err == nil {
		t.Fatal("a message of an unknown kind was accepted")
	}
}

func TestKnownOn(t *testing.T) {
	a := newTable("a", 1)
	d := a.newDrain(DrainKey{DC: "east"}, DrainRequest{}, t0)
	a.merge(d, t0)
	b := newTable("b", 1)
	b.merge(d, t0)
	a.applyState(b.localState("", false), t0)
	a.applyState(&stateMsg{From: "c", Held: []heldDrain{}}, t0)
	if n := a.knownOn(d, []string{"a", "b", "c"}); n != 2 {
		t.Fatalf("known on %d, want 2 (a and b)", n)
	}
}

func TestTimingDefaults(t *testing.T) {
	for _, tc := range []struct {
		interval                 time.Duration
		heartbeat, expire, alive time.Duration
	}{
		{time.Second, time.Second, 3 * time.Second, 3 * time.Second},
		{500 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{5 * time.Second, 2 * time.Second, 15 * time.Second, 15 * time.Second},
		{30 * time.Second, 2 * time.Second, 90 * time.Second, 20 * time.Second},
	} {
		cfg := &config.Config{Health: config.Check{Interval: config.Duration(tc.interval)}}
		got := Timings{}.orDefaults(cfg)
		if got.Heartbeat != tc.heartbeat || got.Expire != tc.expire || got.Alive != tc.alive {
			t.Errorf("interval %s: heartbeat %s expire %s alive %s; want %s %s %s", tc.interval, got.Heartbeat, got.Expire, got.Alive, tc.heartbeat, tc.expire, tc.alive)
		}
		if got.ProbeInterval != DefaultTimings().ProbeInterval || got.Rejoin != 3*time.Second {
			t.Errorf("memberlist timings %+v", got)
		}
	}
}
