package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// awaitMemberlistProbes waits, when the test ends, for memberlist's probes
// to end: a probe does not watch for shutdown and lasts up to a probe
// interval (3 s with the default timings), longer than goleak waits.
func awaitMemberlistProbes(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * DefaultTimings().ProbeInterval)
		for goleak.Find() != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	})
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

// fastTimings make failure detection and re-joins take about a second on
// loopback.
var fastTimings = Timings{
	ProbeInterval:    250 * time.Millisecond,
	ProbeTimeout:     150 * time.Millisecond, // a loaded CI machine under -race misses shorter ones
	GossipInterval:   50 * time.Millisecond,
	PushPullInterval: 500 * time.Millisecond,
	TCPTimeout:       time.Second,
	SuspicionMult:    3,
	Rejoin:           200 * time.Millisecond,
	Heartbeat:        100 * time.Millisecond,
}

const baseYAML = `
listen: {http: "", dns: "", admin: ""}
health: {interval: 1s, timeout: 500ms}
datacenters:
  - name: east
    services: {api: {endpoints: ["10.0.0.1:80", "10.0.0.2:80"]}}
  - name: west
    services: {api: {endpoints: ["10.0.1.1:80"]}}
services:
  api: {hostnames: [api.example.com]}
`

// network lets tests cut the links between members: a cut address pair
// drops packets and refuses connections both ways.
type network struct {
	mu  sync.Mutex
	cut map[[2]string]bool
}

func (n *network) blocked(from, to string) bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[[2]string{from, to}]
}

// partition cuts every link between the members of side and the others.
func (n *network) partition(side []*member, rest []*member) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]string]bool{}
	for _, a := range side {
		for _, b := range rest {
			n.cut[[2]string{a.addr, b.addr}] = true
			n.cut[[2]string{b.addr, a.addr}] = true
		}
	}
}

func (n *network) heal() {
	n.mu.Lock()
	n.cut = nil
	n.mu.Unlock()
}

// cutTransport is memberlist's network transport with links a test can cut.
type cutTransport struct {
	memberlist.NodeAwareTransport
	self string
	net  *network
}

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.net.blocked(t.self, addr) {
		return time.Now(), nil // lost on the way, as UDP may be
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.net.blocked(t.self, a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, addr) {
		return nil, fmt.Errorf("dial %s: cut by the test", addr)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, a.Addr) {
		return nil, fmt.Errorf("dial %s: cut by the test", a.Addr)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// memStore is a DrainStore in memory, shared across a member's restarts.
type memStore struct {
	mu     sync.Mutex
	drains []Drain
	saves  int
}

func (s *memStore) LoadClusterDrains() ([]Drain, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.drains), nil
}

func (s *memStore) SaveClusterDrains(d []Drain) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains = slices.Clone(d)
	s.saves++
	return nil
}

type member struct {
	*Cluster
	addr   string
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

func (m *member) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	if err := <-m.done; err != nil {
		t.Errorf("%s: Run: %v", m.Name(), err)
	}
}

type memberOpts struct {
	peers   []string
	key     []byte
	net     *network
	store   DrainStore
	timings Timings
	yaml    string // replaces baseYAML
	quorum  string
}

func loadConfig(t *testing.T, name string, o memberOpts) *config.Config {
	t.Helper()
	y := baseYAML
	if o.yaml != "" {
		y = o.yaml
	}
	y += fmt.Sprintf("cluster:\n  name: %s\n  bind: 127.0.0.1:0\n", name)
	if len(o.peers) > 0 {
		y += "  peers: [" + strings.Join(o.peers, ", ") + "]\n"
		kf := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(kf, testKey, 0o600); err != nil { // Options.Key says which key is used
			t.Fatal(err)
		}
		y += "  secret_key_file: " + kf + "\n"
	}
	if o.quorum != "" {
		y += "  quorum: " + o.quorum + "\n"
	}
	cfg, _, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startMember(t *testing.T, name string, o memberOpts) *member {
	t.Helper()
	if o.key == nil {
		o.key = testKey
	}
	if o.timings == (Timings{}) {
		o.timings = fastTimings
	}
	cfg := loadConfig(t, name, o)
	reg := prometheus.NewRegistry()
	m := &member{reg: reg, done: make(chan error, 1)}
	c, err := New(Options{
		Config: cfg, Key: o.key, Registerer: reg, Store: o.store, Timings: o.timings,
		WrapTransport: func(tr memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			m.addr = "127.0.0.1:" + strconv.Itoa(tr.(*memberlist.NetTransport).GetAutoBindPort())
			return &cutTransport{NodeAwareTransport: tr, self: m.addr, net: o.net}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Cluster = c
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- c.Run(ctx) }()
	return m
}

// startCluster starts n members; all but the first join the first, and
// every peers list includes the member itself, as one shared list would.
func startCluster(t *testing.T, n int, o memberOpts) []*member {
	t.Helper()
	first := startMember(t, "m0", o)
	ms := []*member{first}
	for i := 1; i < n; i++ {
		po := o
		po.peers = []string{first.addr, "127.0.0.1:1"} // the second is nobody: a failed join must not matter
		ms = append(ms, startMember(t, fmt.Sprintf("m%d", i), po))
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.cancel()
		}
		for _, m := range ms {
			<-m.done
		}
	})
	waitAlive(t, ms, n, 5*time.Second)
	return ms
}

func alive(c *Cluster) int {
	n := 0
	for _, m := range c.Snapshot().Members {
		if m.State == StateAlive {
			n++
		}
	}
	return n
}

func waitAlive(t *testing.T, ms []*member, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() string {
		for _, m := range ms {
			if got := alive(m.Cluster); got != n {
				return fmt.Sprintf("%s sees %d alive members, want %d", m.Name(), got, n)
			}
		}
		return ""
	})
}

// eventually polls cond (which says what is still wrong, or "") until it
// holds or within has passed, and returns how long it took.
func eventually(t *testing.T, within time.Duration, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		msg := cond()
		if msg == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("after %s: %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var (
	east1 = EndpointKey{DC: "east", Service: "api", Endpoint: "10.0.0.1:80"}
	east2 = EndpointKey{DC: "east", Service: "api", Endpoint: "10.0.0.2:80"}
	west1 = EndpointKey{DC: "west", Service: "api", Endpoint: "10.0.1.1:80"}
)

func report(m *member, up ...bool) {
	keys := []EndpointKey{east1, east2, west1}
	var obs []Observation
	for i, u := range up {
		o := Observation{EndpointKey: keys[i], Up: u, Since: time.Now()}
		if !u {
			o.Reason = "connection refused"
		}
		obs = append(obs, o)
	}
	m.SetObservations(obs)
}

// TestObservationsConverge: three members on loopback; one sees east down
// alone and is outvoted; when a second agrees, every member counts it down;
// the snapshot lists every member with its view and the same config hash.
func TestObservationsConverge(t *testing.T) {
	ms := startCluster(t, 3, memberOpts{})
	a, b, c := ms[0], ms[1], ms[2]
	report(a, false, false, true)
	report(b, true, true, true)
	report(c, true, true, true)
	eventually(t, 2*time.Second, func() string {
		for _, m := range ms {
			e := m.View().Endpoints[east1]
			if e.UpVotes != 2 || e.DownVotes != 1 || e.Down {
				return fmt.Sprintf("%s: %+v", m.Name(), e)
			}
		}
		if e := a.View().Endpoints[east1]; !e.Outvoted || e.Source != SourceCluster {
			return fmt.Sprintf("a is not outvoted: %+v", e)
		}
		return ""
	})
	// The change notification fired on b.
	select {
	case <-b.Changed():
	default:
		t.Error("b's Changed channel is empty after its view changed")
	}
	report(b, false, false, true)
	eventually(t, 2*time.Second, func() string {
		for _, m := range ms {
			if e := m.View().Endpoints[east1]; !e.Down || e.DownVotes != 2 || e.Required != 2 {
				return fmt.Sprintf("%s: %+v", m.Name(), e)
			}
		}
		if e := c.View().Endpoints[east1]; !e.Outvoted {
			return "c should be outvoted now"
		}
		return ""
	})

	s := c.Snapshot()
	if s.Self != "m2" || s.Quorum != "majority" || s.Alone || len(s.Members) != 3 {
		t.Fatalf("snapshot %+v", s)
	}
	for _, m := range s.Members {
		if m.State != StateAlive || m.ConfigHash == "" || m.ConfigHash != s.Members[0].ConfigHash || m.ConfigDiffers || m.Address == "" {
			t.Errorf("member %+v", m)
		}
		want := "down"
		if m.Name == "m2" {
			want = "up"
		}
		if m.View["api"]["east"] != want || m.View["api"]["west"] != "up" {
			t.Errorf("%s view %v, want east %s", m.Name, m.View, want)
		}
	}
	if got := testutil.ToFloat64(c.met.members.WithLabelValues(StateAlive)); got != 3 {
		t.Errorf("members{state=alive} = %v", got)
	}
	if got := testutil.ToFloat64(c.met.messages.WithLabelValues("received", "state")); got == 0 {
		t.Error("no state message counted")
	}
}

// TestDrainPropagation: a drain given to one member is on every member
// within 2 s of Drain returning, with all its fields; the undrain too. The
// heartbeat is slowed to 10 s so only the prompt exchange can make it.
func TestDrainPropagation(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			timings := fastTimings
			timings.Heartbeat = 10 * time.Second
			timings.PushPullInterval = 30 * time.Second
			timings.Expire = time.Minute
			ms := startCluster(t, n, memberOpts{timings: timings})
			key := DrainKey{DC: "east"}
			d, err := ms[0].Drain(key, DrainRequest{Reason: "maintenance", By: "alice", Mode: "soft", Deadline: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			took := eventually(t, 2*time.Second, func() string {
				for _, m := range ms {
					ds := m.Drains()
					if len(ds) != 1 || ds[0].Stamp != d.Stamp {
						return fmt.Sprintf("%s has drains %+v", m.Name(), ds)
					}
				}
				return ""
			})
			t.Logf("drain reached all %d members in %s", n, took)
			got := ms[n-1].Drains()[0]
			if got.Reason != "maintenance" || got.By != "alice" || got.Mode != "soft" || got.Origin != "m0" || got.Deadline.IsZero() {
				t.Errorf("drain fields lost: %+v", got)
			}
			if _, err := ms[n-1].Undrain(DrainKey{DC: "west"}, "bob"); err != ErrNotDrained {
				t.Errorf("undrain of a DC not drained: %v, want ErrNotDrained", err)
			}
			if _, err := ms[n-1].Undrain(key, "bob"); err != nil {
				t.Fatal(err)
			}
			took = eventually(t, 2*time.Second, func() string {
				for _, m := range ms {
					if ds := m.Drains(); len(ds) != 0 {
						return fmt.Sprintf("%s still has %+v", m.Name(), ds)
					}
				}
				return ""
			})
			t.Logf("undrain reached all %d members in %s", n, took)
		})
	}
}

// TestDrainKnownOnAndRestart: a drain shows on how many members it is
// known; a member restarted with its store knows the drain before it hears
// from anyone, and one that missed an undrain while down learns it.
func TestDrainKnownOnAndRestart(t *testing.T) {
	stores := []*memStore{{}, {}, {}}
	o := memberOpts{}
	first := startMember(t, "m0", memberOpts{store: stores[0]})
	ms := []*member{first}
	for i := 1; i < 3; i++ {
		ms = append(ms, startMember(t, fmt.Sprintf("m%d", i), memberOpts{store: stores[i], peers: []string{first.addr}}))
	}
	_ = o
	defer func() {
		for _, m := range ms {
			m.cancel()
			<-m.done
		}
	}()
	waitAlive(t, ms, 3, 5*time.Second)
	key := DrainKey{DC: "east"}
	if _, err := ms[0].Drain(key, DrainRequest{Reason: "r", By: "alice", Mode: "hard"}); err != nil {
		t.Fatal(err)
	}
	if len(stores[0].drains) != 1 {
		t.Fatal("the drain was not saved before Drain returned")
	}
	eventually(t, 3*time.Second, func() string {
		for _, m := range ms {
			if ds := m.Drains(); len(ds) != 1 || ds[0].KnownOn != 3 || ds[0].Members != 3 {
				return fmt.Sprintf("%s: %+v", m.Name(), ds)
			}
		}
		for i, s := range stores {
			s.mu.Lock()
			n := len(s.drains)
			s.mu.Unlock()
			if n != 1 {
				return fmt.Sprintf("store %d holds %d drains", i, n)
			}
		}
		return ""
	})
	// Stop m1, undrain on m2 while it is down, restart m1.
	ms[1].stop(t)
	if _, err := ms[2].Undrain(key, "bob"); err != nil {
		t.Fatal(err)
	}
	ms[1] = startMember(t, "m1", memberOpts{store: stores[1], peers: []string{first.addr}})
	if ds := ms[1].Drains(); len(ds) != 1 {
		t.Fatalf("restarted member does not know the drain from its store: %+v", ds)
	}
	eventually(t, 3*time.Second, func() string {
		if ds := ms[1].Drains(); len(ds) != 0 {
			return fmt.Sprintf("restarted member still drained: %+v", ds)
		}
		return ""
	})
}

// TestWrongKeyNotAdmitted: a member with another key cannot join, and one
// without a key cannot either.
func TestWrongKeyNotAdmitted(t *testing.T) {
	ms := startCluster(t, 2, memberOpts{})
	for _, key := range [][]byte{[]byte("another key of thirty-two bytes!"), {} /* no encryption */} {
		bad := startMember(t, "intruder", memberOpts{peers: []string{ms[0].addr}, key: key})
		time.Sleep(500 * time.Millisecond) // several re-join attempts
		for _, m := range ms {
			if n := alive(m.Cluster); n != 2 {
				t.Errorf("%s sees %d alive members after a wrong-key join", m.Name(), n)
			}
		}
		if n := alive(bad.Cluster); n != 1 {
			t.Errorf("the intruder sees %d members", n)
		}
		if !bad.Alone() {
			t.Error("the intruder is not alone")
		}
		bad.stop(t)
	}
}

// TestPartitionHeals: a member cut off keeps working alone and accepts a
// drain, the other side accepts another; after the cut heals every member
// holds both within 10 s.
func TestPartitionHeals(t *testing.T) {
	nw := &network{}
	ms := startCluster(t, 3, memberOpts{net: nw})
	for _, m := range ms {
		report(m, true, true, true)
	}
	nw.partition(ms[:1], ms[1:])
	eventually(t, 5*time.Second, func() string {
		if !ms[0].Alone() {
			return "m0 is not alone"
		}
		for _, m := range ms[1:] {
			if n := alive(m.Cluster); n != 2 {
				return fmt.Sprintf("%s sees %d alive", m.Name(), n)
			}
		}
		return ""
	})
	if s := ms[1].Snapshot(); s.Members[0].State == StateAlive {
		t.Errorf("m1 still sees m0 alive: %+v", s.Members[0])
	}
	if _, err := ms[0].Drain(DrainKey{DC: "east"}, DrainRequest{Reason: "a side"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms[2].Drain(DrainKey{DC: "west"}, DrainRequest{Reason: "b side"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(ms[1].Drains()); n != 1 {
		t.Fatalf("m1 has %d drains across the cut", n)
	}
	nw.heal()
	took := eventually(t, 10*time.Second, func() string {
		for _, m := range ms {
			if ds := m.Drains(); len(ds) != 2 {
				return fmt.Sprintf("%s has %d drains", m.Name(), len(ds))
			}
			if n := alive(m.Cluster); n != 3 {
				return fmt.Sprintf("%s sees %d alive", m.Name(), n)
			}
		}
		return ""
	})
	t.Logf("after healing, all members agree in %s", took)
}

// TestConfigDiffers: a member whose configuration differs is flagged, and
// still votes.
func TestConfigDiffers(t *testing.T) {
	a := startMember(t, "m0", memberOpts{})
	other := strings.Replace(baseYAML, "interval: 1s", "interval: 2s", 1)
	b := startMember(t, "m1", memberOpts{peers: []string{a.addr}, yaml: other})
	defer func() {
		a.stop(t)
		b.stop(t)
	}()
	report(a, true, true, true)
	report(b, false, true, true)
	eventually(t, 3*time.Second, func() string {
		for _, m := range a.Snapshot().Members {
			if m.Name == "m1" && !m.ConfigDiffers {
				return "m1 not flagged"
			}
			if m.Name == "m0" && m.ConfigDiffers {
				return "self flagged"
			}
		}
		if e := a.View().Endpoints[east1]; e.DownVotes != 1 {
			return fmt.Sprintf("m1 does not vote: %+v", e)
		}
		return ""
	})
	eventually(t, time.Second, func() string {
		if got := testutil.ToFloat64(a.met.configDiffers); got != 1 {
			return fmt.Sprintf("config_differs_members = %v", got)
		}
		return ""
	})
}

// TestSilentPeerAbstains: a member cut off stops voting within the expiry,
// and is no longer alive.
func TestSilentPeerAbstains(t *testing.T) {
	nw := &network{}
	ms := startCluster(t, 3, memberOpts{net: nw, quorum: "3"})
	report(ms[0], true, true, true)
	report(ms[1], false, true, true)
	report(ms[2], false, true, true)
	eventually(t, 2*time.Second, func() string {
		if e := ms[0].View().Endpoints[east1]; !e.Down || e.Required != 3 || e.Fallback {
			// quorum 3 of 3 voters: two down votes are not enough
			if e.DownVotes == 2 && !e.Down && e.Required == 3 {
				return ""
			}
			return fmt.Sprintf("%+v", e)
		}
		return "down with 2 of 3 votes and quorum 3"
	})
	nw.partition(ms[2:], ms[:2])
	eventually(t, 3*time.Second, func() string {
		e := ms[0].View().Endpoints[east1]
		// m2 is silent: 2 voters, quorum 3 falls back to a majority of 2.
		if e.UpVotes+e.DownVotes != 2 || !e.Fallback || e.Required != 2 || e.Down {
			return fmt.Sprintf("%+v", e)
		}
		return ""
	})
}

func TestConfigHash(t *testing.T) {
	load := func(y string) *config.Config {
		cfg, _, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	base := ConfigHash(load(baseYAML))
	if base != ConfigHash(load(baseYAML)) {
		t.Fatal("hash is not deterministic")
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		same bool
	}{
		{"listen", func(s string) string { return strings.Replace(s, `http: ""`, `http: "127.0.0.1:1"`, 1) }, true},
		{"cluster block", func(s string) string { return s + "cluster: {name: x, bind: 127.0.0.1:0}\n" }, true},
		{"source address", func(s string) string {
			return strings.Replace(s, "timeout: 500ms}", "timeout: 500ms, source_address: 127.0.0.9}", 1)
		}, true},
		{"state dir", func(s string) string { return s + "admin: {state_dir: /tmp/x}\n" }, true},
		{"health interval", func(s string) string { return strings.Replace(s, "interval: 1s", "interval: 2s", 1) }, false},
		{"endpoint", func(s string) string { return strings.Replace(s, "10.0.1.1:80", "10.0.1.2:80", 1) }, false},
		{"service", func(s string) string { return strings.Replace(s, "api.example.com", "www.example.com", 1) }, false},
		{"proxy policy", func(s string) string { return s + "proxy: {dc_header: X-DC}\n" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ConfigHash(load(tc.edit(baseYAML)))
			if (got == base) != tc.same {
				t.Errorf("hash %s vs base %s; want same=%v", got, base, tc.same)
			}
		})
	}
}

func TestDeriveSecret(t *testing.T) {
	a := DeriveSecret(testKey, SecretDNSCookie)
	if len(a) != 32 || string(a) != string(DeriveSecret(testKey, SecretDNSCookie)) {
		t.Fatal("not deterministic or not 32 bytes")
	}
	if string(a) == string(DeriveSecret(testKey, SecretAffinity)) {
		t.Fatal("two labels share a secret")
	}
	if string(a) == string(DeriveSecret([]byte("0123456789abcdef"), SecretDNSCookie)) {
		t.Fatal("two keys share a secret")
	}
}

// TestDefaultTimings runs three members with the timings a deployment gets
// (only the heartbeat, health.interval, is 1 s as by default): a drain
// reaches everyone within 2 s; a member cut off is no longer alive well
// before 25 s; after the cut heals, drains given on both sides agree within
// 10 s.
func TestDefaultTimings(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 10 s")
	}
	awaitMemberlistProbes(t) // registered first, so it runs after the members stop
	nw := &network{}
	ms := startCluster(t, 3, memberOpts{net: nw, timings: Timings{Heartbeat: time.Second}})
	d, err := ms[1].Drain(DrainKey{DC: "east"}, DrainRequest{Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 2*time.Second, func() string {
		for _, m := range ms {
			if ds := m.Drains(); len(ds) != 1 || ds[0].Stamp != d.Stamp {
				return m.Name() + " lacks the drain"
			}
		}
		return ""
	})
	t.Logf("default timings: drain reached 3 members in %s", took)

	nw.partition(ms[:1], ms[1:])
	took = eventually(t, 25*time.Second, func() string {
		for _, m := range ms[1].Snapshot().Members {
			if m.Name == "m0" && m.State == StateAlive {
				return "m0 still alive on m1"
			}
		}
		return ""
	})
	t.Logf("default timings: a cut-off member stopped being alive after %s", took)
	if _, err := ms[0].Undrain(DrainKey{DC: "east"}, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := ms[2].Drain(DrainKey{DC: "west"}, DrainRequest{Reason: "other side"}); err != nil {
		t.Fatal(err)
	}
	nw.heal()
	took = eventually(t, 10*time.Second, func() string {
		for _, m := range ms {
			ds := m.Drains()
			if len(ds) != 1 || ds[0].Key.DC != "west" {
				return fmt.Sprintf("%s has %+v", m.Name(), ds)
			}
		}
		return ""
	})
	t.Logf("default timings: after healing all agree in %s", took)
}

// TestReload: peers and quorum change on reload; the other keys are
// reported as needing a restart.
func TestReload(t *testing.T) {
	ms := startCluster(t, 3, memberOpts{})
	report(ms[0], false, true, true)
	report(ms[1], true, true, true)
	report(ms[2], true, true, true)
	eventually(t, 2*time.Second, func() string {
		if e := ms[0].View().Endpoints[east1]; e.UpVotes+e.DownVotes != 3 || e.Down {
			return fmt.Sprintf("%+v", e)
		}
		return ""
	})
	cfg := loadConfig(t, "m0", memberOpts{quorum: "1"})
	cfg.Cluster.Bind = "127.0.0.1:1"
	restart := ms[0].Reload(cfg)
	if fmt.Sprint(restart) != "[cluster.bind]" {
		t.Errorf("restart keys %v, want [cluster.bind]", restart)
	}
	if e := ms[0].View().Endpoints[east1]; !e.Down || e.Required != 1 {
		t.Errorf("quorum 1 after reload: %+v", e)
	}
	if s := ms[0].Snapshot(); s.Quorum != 1 {
		t.Errorf("snapshot quorum %v", s.Quorum)
	}
}

// TestFailoverAgreement: when every member's probes see east go down, how
// long until every member's view counts it down (the gossip part of
// failover; detection by the probes comes before). The heartbeat is slowed
// so only the prompt send on a change can make it.
func TestFailoverAgreement(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			timings := fastTimings
			timings.Heartbeat = 10 * time.Second
			timings.Expire = time.Minute
			ms := startCluster(t, n, memberOpts{timings: timings})
			for _, m := range ms {
				report(m, true, true, true)
			}
			eventually(t, 2*time.Second, func() string {
				for _, m := range ms {
					if e := m.View().Endpoints[east1]; e.UpVotes != n {
						return fmt.Sprintf("%s: %s", m.Name(), votes(e))
					}
				}
				return ""
			})
			for _, m := range ms {
				report(m, false, false, true)
			}
			took := eventually(t, time.Second, func() string {
				for _, m := range ms {
					if e := m.View().Endpoints[east1]; !e.Down || e.DownVotes != n {
						return fmt.Sprintf("%s: %s", m.Name(), votes(e))
					}
				}
				return ""
			})
			t.Logf("%d members agree east is down %s after the last report", n, took)
		})
	}
}

func votes(e EndpointView) string {
	return fmt.Sprintf("down=%v up_votes=%d down_votes=%d required=%d source=%s down_by=%v", e.Down, e.UpVotes, e.DownVotes, e.Required, e.Source, e.DownBy)
}

// TestLifecycle: a Cluster that is never run closes cleanly, Close is
// idempotent, Run runs once, and a port in use is an error from New.
func TestLifecycle(t *testing.T) {
	cfg := loadConfig(t, "solo", memberOpts{})
	c, err := New(Options{Config: cfg, Timings: fastTimings})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Alone() || c.Address() == "" || c.Name() != "solo" {
		t.Errorf("alone %v address %q name %q", c.Alone(), c.Address(), c.Name())
	}
	taken := loadConfig(t, "other", memberOpts{})
	taken.Cluster.Bind = c.Address()
	if _, err := New(Options{Config: taken}); err == nil || !strings.Contains(err.Error(), "cluster.bind") {
		t.Errorf("New on a port in use: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := New(Options{Config: loadConfig(t, "runner", memberOpts{}), Timings: fastTimings})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("a second Run did not fail")
	}

	if _, err := New(Options{Config: &config.Config{}}); err == nil {
		t.Error("New without a cluster block did not fail")
	}
}

// TestSnapshotJSON: the shape GET /api/v1/cluster answers.
func TestSnapshotJSON(t *testing.T) {
	ms := startCluster(t, 2, memberOpts{})
	report(ms[0], true, false, true)
	eventually(t, 2*time.Second, func() string {
		for _, m := range ms[1].Snapshot().Members {
			if m.Name == "m0" && m.View["api"]["east"] == "" {
				return "m1 lacks m0's view"
			}
		}
		return ""
	})
	data, err := json.Marshal(ms[1].Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"self", "quorum", "alone", "members"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no %q in %s", k, data)
		}
	}
	if doc["self"] != "m1" || doc["quorum"] != "majority" || doc["alone"] != false {
		t.Errorf("top level: %s", data)
	}
	members := doc["members"].([]any)
	if len(members) != 2 {
		t.Fatalf("members: %s", data)
	}
	for _, m := range members {
		m := m.(map[string]any)
		for _, k := range []string{"name", "address", "state", "last_seen", "config_hash", "config_differs", "view"} {
			if _, ok := m[k]; !ok {
				t.Errorf("member lacks %q: %v", k, m)
			}
		}
		if m["name"] == "m0" {
			// min_healthy 1: one of east's two endpoints up is enough.
			if v := m["view"].(map[string]any)["api"].(map[string]any); v["east"] != "up" || v["west"] != "up" {
				t.Errorf("m0's view: %v", v)
			}
		}
	}
}

// TestMetrics: the instruments are on the injected registry, by the names
// the issue gives, and pass Prometheus's lint.
func TestMetrics(t *testing.T) {
	ms := startCluster(t, 2, memberOpts{})
	if _, err := ms[0].Drain(DrainKey{DC: "east"}, DrainRequest{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() string {
		var h dto.Metric
		if err := ms[1].met.propagation.Write(&h); err != nil {
			return err.Error()
		}
		if h.GetHistogram().GetSampleCount() != 1 || testutil.ToFloat64(ms[1].met.messages.WithLabelValues("received", "state")) == 0 {
			return "no propagation observed on m1"
		}
		return ""
	})
	problems, err := testutil.GatherAndLint(ms[1].reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	mfs, err := ms[1].reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"coopr_gslb_cluster_members", "coopr_gslb_cluster_gossip_messages_total", "coopr_gslb_cluster_drain_propagation_seconds", "coopr_gslb_cluster_config_differs_members", "coopr_gslb_cluster_alone"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}
}
