package e2e

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// The e2e cluster: instances on loopback, each probing from its own source
// address (a distinct vantage point) and gossiping on its own address, with
// one state directory each. Links are cut with the binary's test-only
// COOPR_GSLB_TEST_GOSSIP_DROP hook (a file of gossip addresses not to talk
// to), so a partition needs neither root nor iptables and the DNS server
// keeps answering.

// eastAddr and westAddr (chaos_test.go) are the DCs' DNS addresses.

// member is one instance of an e2e cluster.
type member struct {
	*gslb
	name, ip, gossip, dns string
	dropFile, cfgPath     string
	env                   []string
	// owner is the test that owns the process: a member restarted inside
	// a subtest keeps running after it.
	owner *testing.T
}

// freePortOn is freePort on another loopback address.
func freePortOn(t *testing.T, ip string) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort(ip, fmt.Sprint(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port on " + ip)
	return ""
}

// clusterSpec describes the members to configure.
type clusterSpec struct {
	n       int
	keyFile string
	// tweak changes one member's YAML (e.g. a different key or config).
	tweak func(i int, yaml string) string
}

func writeKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := crand.Read(raw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// planCluster writes the members' configurations (nothing is started):
// member i probes from 127.0.0.(2+i) and gossips there.
func planCluster(t *testing.T, fleet *simulator.Fleet, spec clusterSpec) []*member {
	t.Helper()
	var ms []*member
	var peers []string
	for i := range spec.n {
		ip := fmt.Sprintf("127.0.0.%d", 2+i)
		m := &member{name: string(rune('a' + i)), ip: ip, gossip: freePortOn(t, ip)}
		peers = append(peers, fmt.Sprintf("%q", m.gossip))
		ms = append(ms, m)
	}
	for i, m := range ms {
		admin, dns := freePort(t), freePort(t)
		m.dns = dns
		dir := t.TempDir()
		tokenFile := filepath.Join(dir, "tokens")
		os.WriteFile(tokenFile, []byte("alice "+testToken+"\n"), 0o600)
		m.dropFile = filepath.Join(dir, "gossip-drop")
		os.WriteFile(m.dropFile, nil, 0o600)
		m.env = []string{"COOPR_GSLB_TEST_GOSSIP_DROP=" + m.dropFile}
		extra := fmt.Sprintf("admin:\n  state_dir: %q\n  token_file: %q\ncluster:\n  name: %s\n  bind: %q\n  peers: [%s]\n  secret_key_file: %q\n",
			filepath.Join(dir, "state"), tokenFile, m.name, m.gossip, strings.Join(peers, ", "), spec.keyFile)
		yaml := twoDCConfig(fleet, "", dns, admin, extra)
		yaml = strings.Replace(yaml, "health:\n", fmt.Sprintf("health:\n  source_address: %s\n", m.ip), 1)
		if spec.tweak != nil {
			yaml = spec.tweak(i, yaml)
		}
		m.cfgPath = filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(m.cfgPath, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		m.gslb = &gslb{t: t, admin: admin, cfgPath: m.cfgPath}
		m.owner = t
	}
	return ms
}

// start runs the member's binary (again, after a kill) and waits until it
// is ready.
func (m *member) start(t *testing.T) {
	t.Helper()
	dir := m.owner.TempDir()
	g := &gslb{t: m.owner, stderr: &syncBuffer{}, stdout: &syncBuffer{}, stateLog: filepath.Join(dir, "state.jsonl"), admin: m.admin, done: make(chan struct{}), cfgPath: m.cfgPath}
	g.cmd = exec.Command(binary, "run", "-config", m.cfgPath, "-state-log", g.stateLog)
	g.cmd.Env = append(os.Environ(), m.env...)
	g.cmd.Stdout, g.cmd.Stderr = g.stdout, g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	m.owner.Cleanup(g.stop)
	m.gslb = g
	g.waitReady(20 * time.Second)
}

// kill SIGKILLs the member: no leave, no last save.
func (m *member) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// clusterDoc is GET /api/v1/cluster.
type clusterDoc struct {
	Self    string `json:"self"`
	Quorum  any    `json:"quorum"`
	Alone   bool   `json:"alone"`
	DNSView string `json:"dns_view"`
	Members []struct {
		Name          string                       `json:"name"`
		Address       string                       `json:"address"`
		State         string                       `json:"state"`
		LastSeen      time.Time                    `json:"last_seen"`
		ConfigHash    string                       `json:"config_hash"`
		ConfigDiffers bool                         `json:"config_differs"`
		View          map[string]map[string]string `json:"view"`
	} `json:"members"`
	Drains []struct {
		Key     struct{ DC string } `json:"key"`
		Origin  string              `json:"origin"`
		By      string              `json:"by"`
		KnownOn int                 `json:"known_on"`
		Members int                 `json:"members"`
	} `json:"drains"`
	Outvoted     []string         `json:"outvoted"`
	ProxyDiffers []map[string]any `json:"proxy_differs"`
}

func (m *member) cluster(t *testing.T) clusterDoc {
	t.Helper()
	var d clusterDoc
	getJSON(t, "http://"+m.admin+"/api/v1/cluster", &d)
	return d
}

// alive counts the members this one sees alive, and whether one differs.
func (d clusterDoc) alive() int {
	n := 0
	for _, m := range d.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

func (d clusterDoc) member(name string) (state string, differs, ok bool) {
	for _, m := range d.Members {
		if m.Name == name {
			return m.State, m.ConfigDiffers, true
		}
	}
	return "", false, false
}

// answer asks the member's DNS server with dig for the api name's A
// records; "" when it does not answer.
func (m *member) answer(t *testing.T, digTool string) string {
	host, port, _ := net.SplitHostPort(m.dns)
	out, err := exec.Command(digTool, "@"+host, "-p", port, "+norec", "+short", "+time=1", "+tries=1", "api.coopr.example.com", "A").Output()
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

func allAnswer(t *testing.T, digTool string, ms []*member, want string) bool {
	for _, m := range ms {
		if m.answer(t, digTool) != want {
			return false
		}
	}
	return true
}

func (m *member) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startCluster starts every member and waits until each sees all alive.
func startCluster(t *testing.T, ms []*member) {
	t.Helper()
	for _, m := range ms {
		m.start(t)
	}
	eventually(t, 20*time.Second, "every member sees every other alive", func() bool {
		for _, m := range ms {
			if m.cluster(t).alive() != len(ms) {
				return false
			}
		}
		return true
	})
}

// TestClusterThreeMembers is issue 14's "done means" with three instances:
// a vantage point outvoted, failover agreement, replicated drains across a
// SIGKILL, a partition and its healing, and the admission checks.
func TestClusterThreeMembers(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	key := writeKey(t)
	ms := planCluster(t, fleet, clusterSpec{n: 3, keyFile: key})
	a, b, c := ms[0], ms[1], ms[2]
	startCluster(t, ms)
	east := fleet.Datacenter("east")

	t.Run("shape", func(t *testing.T) {
		var raw map[string]any
		getJSON(t, "http://"+a.admin+"/api/v1/cluster", &raw)
		for _, k := range []string{"self", "quorum", "alone", "members"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("GET /api/v1/cluster lacks %q: %v", k, raw)
			}
		}
		d := a.cluster(t)
		if d.Self != "a" || d.Quorum != "majority" || d.Alone || len(d.Members) != 3 || d.DNSView != "cluster" {
			t.Errorf("cluster doc: %+v", d)
		}
		for _, m := range d.Members {
			if m.Address == "" || m.ConfigHash == "" || m.ConfigDiffers || m.LastSeen.IsZero() || m.View["api"]["east"] != "up" {
				t.Errorf("member %+v", m)
			}
		}
		resp, err := http.Get("http://" + a.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{`coopr_gslb_cluster_members{state="alive"} 3`, "coopr_gslb_cluster_gossip_messages_total", "coopr_gslb_cluster_drain_propagation_seconds", "coopr_gslb_cluster_config_differs_members 0", "coopr_gslb_cluster_alone 0"} {
			if !strings.Contains(string(metrics), name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		resp, err = http.Get("http://" + a.admin + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, s := range []string{"<h2>Cluster", "<td>a</td>", "<td>b</td>", "<td>c</td>"} {
			if !strings.Contains(string(page), s) {
				t.Errorf("the status page lacks %s", s)
			}
		}
		code, out, _ := cli(t, a.admin, "status")
		if code != 0 || !strings.Contains(out, "cluster: a, 3/3 members alive") {
			t.Errorf("coopr-gslb status has no cluster line:\n%s", out)
		}
	})

	t.Run("outvoted vantage point, then failover", func(t *testing.T) {
		east.RefuseFrom(netip.MustParseAddr(a.ip))
		eventually(t, 10*time.Second, "a's own probes see east down", func() bool { return a.status().dcState("api", "east") == "down" })
		eventually(t, 5*time.Second, "a shows it is outvoted", func() bool {
			d := a.cluster(t)
			return len(d.Outvoted) > 0 && len(d.ProxyDiffers) > 0
		})
		// No instance drains east: DNS answers from the quorum.
		for range 5 {
			for _, m := range ms {
				if got := m.answer(t, digTool); got != eastAddr {
					t.Fatalf("%s answers %q while only a's path to east is broken, want %s", m.name, got, eastAddr)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if st := b.status().dcState("api", "east"); st != "up" {
			t.Errorf("b sees east %s", st)
		}
		east.SetFault(simulator.Fault{Mode: simulator.Refuse})
		killed := time.Now()
		// interval 500ms * fall 3 + 2 s
		eventually(t, 3500*time.Millisecond, "all three answer west", func() bool { return allAnswer(t, digTool, ms, westAddr) })
		t.Logf("FIGURE failover agreement (3 members): all answer west %s after east was killed (detection interval*fall = 1.5 s)", time.Since(killed).Round(10*time.Millisecond))
		east.SetFault(simulator.Fault{})
		east.RefuseFrom()
		eventually(t, 10*time.Second, "all three answer east again", func() bool { return allAnswer(t, digTool, ms, eastAddr) })
	})

	t.Run("replicated drain across a SIGKILL", func(t *testing.T) {
		code, body := a.api(t, "POST", "/api/v1/datacenters/east/drain", `{"reason": "kernel upgrade"}`)
		answered := time.Now()
		if code != 200 {
			t.Fatalf("drain via a: %d %s", code, body)
		}
		eventually(t, 2*time.Second, "b and c answer without east", func() bool { return allAnswer(t, digTool, []*member{b, c}, westAddr) })
		t.Logf("FIGURE drain propagation (3 members): b and c answer without east %s after a's API answered", time.Since(answered).Round(time.Millisecond))
		eventually(t, 5*time.Second, "the drain is known on 3 members", func() bool {
			d := c.cluster(t)
			return len(d.Drains) == 1 && d.Drains[0].KnownOn == 3 && d.Drains[0].Origin == "a" && d.Drains[0].By == "alice"
		})
		var st struct {
			Drains map[string]struct {
				By      string `json:"by"`
				Origin  string `json:"origin"`
				KnownOn int    `json:"known_on"`
				Members int    `json:"members"`
				Since   time.Time
			} `json:"drains"`
		}
		// The status API's drain info says who, where, when and on how many
		// members.
		eventually(t, 2*time.Second, "b's status shows the drain on 3 members", func() bool {
			getJSON(t, "http://"+b.admin+"/api/v1/status", &st)
			d := st.Drains["east"]
			return d.By == "alice" && d.Origin == "a" && d.KnownOn == 3 && d.Members == 3 && !d.Since.IsZero()
		})

		b.kill()
		b.start(t)
		if got := b.status().dcState("api", "east"); got != "drained" {
			t.Fatalf("restarted b: east %s, want drained", got)
		}
		if got := b.answer(t, digTool); got != westAddr {
			t.Errorf("restarted b answers %q, want %s", got, westAddr)
		}
		eventually(t, 20*time.Second, "b is back in the cluster", func() bool { return c.cluster(t).alive() == 3 && b.cluster(t).alive() == 3 })

		code, body = c.api(t, "DELETE", "/api/v1/datacenters/east/drain", "")
		answered = time.Now()
		if code != 200 {
			t.Fatalf("undrain via c: %d %s", code, body)
		}
		eventually(t, 2*time.Second, "all three serve east again", func() bool { return allAnswer(t, digTool, ms, eastAddr) })
		t.Logf("FIGURE undrain propagation (3 members): all serve east %s after c's API answered", time.Since(answered).Round(time.Millisecond))
		if code, body := c.api(t, "DELETE", "/api/v1/datacenters/east/drain", ""); code != 404 {
			t.Errorf("undrain of a DC not drained: %d %s, want 404", code, body)
		}
	})

	t.Run("partition", func(t *testing.T) {
		cut := func(m *member, from ...*member) {
			var lines []string
			for _, o := range from {
				lines = append(lines, o.gossip)
			}
			os.WriteFile(m.dropFile, []byte(strings.Join(lines, "\n")), 0o600)
		}
		cut(a, b, c)
		cut(b, a)
		cut(c, a)
		eventually(t, 15*time.Second, "both sides see the partition", func() bool {
			return a.cluster(t).alive() == 1 && b.cluster(t).alive() == 2 && c.cluster(t).alive() == 2
		})
		eventually(t, 2*time.Second, "a says it answers alone, from its own view", func() bool {
			d := a.cluster(t)
			return d.Alone && d.DNSView == "self"
		})
		if code, body := a.api(t, "POST", "/api/v1/datacenters/east/drain", `{"reason": "on a's side"}`); code != 200 {
			t.Fatalf("drain on a's side: %d %s", code, body)
		}
		time.Sleep(time.Second)
		// Each side keeps serving from what it knows.
		if got := a.answer(t, digTool); got != westAddr {
			t.Errorf("a answers %q during the partition, want %s", got, westAddr)
		}
		for _, m := range []*member{b, c} {
			if got := m.answer(t, digTool); got != eastAddr {
				t.Errorf("%s answers %q during the partition, want %s", m.name, got, eastAddr)
			}
		}
		cut(a)
		cut(b)
		cut(c)
		healed := time.Now()
		eventually(t, 10*time.Second, "after healing all agree", func() bool {
			if !allAnswer(t, digTool, ms, westAddr) {
				return false
			}
			for _, m := range ms {
				if d := m.cluster(t); len(d.Drains) != 1 || d.alive() != 3 {
					return false
				}
			}
			return true
		})
		t.Logf("FIGURE partition heal (3 members): all agree %s after healing", time.Since(healed).Round(10*time.Millisecond))
		if code, body := b.api(t, "DELETE", "/api/v1/datacenters/east/drain", ""); code != 200 {
			t.Fatalf("undrain via b: %d %s", code, body)
		}
		eventually(t, 2*time.Second, "all three serve east again", func() bool { return allAnswer(t, digTool, ms, eastAddr) })
	})

	t.Run("admission", func(t *testing.T) {
		peers := []string{a.gossip}
		others := planCluster(t, fleet, clusterSpec{n: 5, keyFile: key, tweak: func(i int, yaml string) string {
			switch i {
			case 3: // a wrong key
				return strings.Replace(yaml, key, writeKey(t), 1)
			case 4: // a different configuration
				return strings.Replace(yaml, "dns_ttl: 5", "dns_ttl: 7", 1)
			}
			return yaml
		}})
		intruder, differs := others[3], others[4]
		for _, m := range []*member{intruder, differs} {
			// Join the running cluster rather than the plan's members.
			data, _ := os.ReadFile(m.cfgPath)
			yaml := string(data)
			start := strings.Index(yaml, "  peers: [")
			end := strings.Index(yaml[start:], "]\n")
			yaml = yaml[:start] + "  peers: [\"" + strings.Join(peers, "\", \"") + "\"]\n" + yaml[start+end+2:]
			os.WriteFile(m.cfgPath, []byte(yaml), 0o644)
			m.start(t)
		}
		eventually(t, 20*time.Second, "the member with a different config is flagged", func() bool {
			st, differ, ok := a.cluster(t).member("e")
			return ok && st == "alive" && differ
		})
		if _, _, ok := a.cluster(t).member("d"); ok {
			t.Errorf("the member with a wrong key was admitted: %+v", a.cluster(t))
		}
		if d := intruder.cluster(t); !d.Alone || d.alive() != 1 {
			t.Errorf("the intruder should be alone: %+v", d)
		}
		differs.stop()
		intruder.stop()
	})
}

// TestClusterFiveMembersFigures measures, with five members, how long the
// members take to agree on a failover and to carry a drain.
func TestClusterFiveMembersFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("five instances")
	}
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	ms := planCluster(t, fleet, clusterSpec{n: 5, keyFile: writeKey(t)})
	startCluster(t, ms)
	east := fleet.Datacenter("east")

	east.SetFault(simulator.Fault{Mode: simulator.Refuse})
	killed := time.Now()
	eventually(t, 3500*time.Millisecond, "all five answer west", func() bool { return allAnswer(t, digTool, ms, westAddr) })
	t.Logf("FIGURE failover agreement (5 members): all answer west %s after east was killed (detection interval*fall = 1.5 s)", time.Since(killed).Round(10*time.Millisecond))
	east.SetFault(simulator.Fault{})
	eventually(t, 10*time.Second, "all five answer east again", func() bool { return allAnswer(t, digTool, ms, eastAddr) })

	if code, body := ms[0].api(t, "POST", "/api/v1/datacenters/east/drain", `{"reason": "figures"}`); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	answered := time.Now()
	eventually(t, 2*time.Second, "the four others answer without east", func() bool { return allAnswer(t, digTool, ms[1:], westAddr) })
	t.Logf("FIGURE drain propagation (5 members): the four others answer without east %s after the API answered", time.Since(answered).Round(time.Millisecond))
	if code, body := ms[4].api(t, "DELETE", "/api/v1/datacenters/east/drain", ""); code != 200 {
		t.Fatalf("undrain: %d %s", code, body)
	}
	answered = time.Now()
	eventually(t, 2*time.Second, "all five serve east again", func() bool { return allAnswer(t, digTool, ms, eastAddr) })
	t.Logf("FIGURE undrain propagation (5 members): all serve east %s after the API answered", time.Since(answered).Round(time.Millisecond))
}
