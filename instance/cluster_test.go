package instance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/cluster"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

const clusterToken = "cluster-test-token"

// clusterYAML is runYAML with a state dir, a token and a cluster block.
func clusterYAML(t *testing.T, endpoint, name, peers, keyFile, extra string) string {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "ops "+clusterToken+"\n")
	return fmt.Sprintf(runYAML, endpoint, fmt.Sprintf(`admin: {state_dir: %q, token_file: %q}
cluster:
  name: %s
  bind: "127.0.0.1:0"
  peers: [%s]
  secret_key_file: %q
%s`, filepath.Join(dir, "state"), tokens, name, peers, keyFile, extra))
}

func adminDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"reason": "maintenance"}`))
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterWiring runs two clustered instances in-process: drains given
// to one API are saved before it answers and reach the other's proxy and
// DNS engines; an undrain of a DC that is not drained is a 404 that writes
// nothing; both derive the same affinity key; peers and quorum reload live
// while the other cluster keys and the block itself need a restart.
func TestClusterWiring(t *testing.T) {
	be := backend(t)
	before := goleak.IgnoreCurrent()
	keyFile := filepath.Join(t.TempDir(), "key")
	writeFile(t, keyFile, strings.Repeat("ab", 32)+"\n")

	cfgA, pathA := loadYAML(t, clusterYAML(t, be.Addr().String(), "a", `"127.0.0.1:1"`, keyFile, ""))
	a := start(t, cfgA, Options{ConfigPath: pathA})
	addrA := a.inst.cw.cl.Load().Address()
	cfgB, _ := loadYAML(t, clusterYAML(t, be.Addr().String(), "b", fmt.Sprintf("%q", addrA), keyFile, ""))
	b := start(t, cfgB, Options{})
	waitFor(t, 10*time.Second, "a and b see each other", func() bool {
		return !a.inst.cw.cl.Load().Alone() && !b.inst.cw.cl.Load().Alone()
	})
	adminA, adminB := "http://"+a.inst.Addrs().Admin, "http://"+b.inst.Addrs().Admin

	// The drain is in a's state dir when its API answers.
	code, body := adminDo(t, "POST", adminA+"/api/v1/datacenters/east/drain")
	if code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	saved, err := os.ReadFile(filepath.Join(cfgA.Admin.StateDir, "cluster-drains.json"))
	if err != nil || !bytes.Contains(saved, []byte(`"east"`)) || !bytes.Contains(saved, []byte(`"maintenance"`)) {
		t.Fatalf("cluster-drains.json when the API answered: %v %s", err, saved)
	}
	if st := a.inst.Engine().Snapshot().Service("api").DC("east").State; st != routing.StateDrained {
		t.Errorf("a's engine: east %s when the API answered", st)
	}
	waitFor(t, 2*time.Second, "b's proxy and DNS engines have the drain", func() bool {
		p := b.inst.Engine().Snapshot().Service("api").DC("east")
		d := b.inst.dnsEngine().Snapshot().Service("api").DC("east")
		return p.State == routing.StateDrained && d.State == routing.StateDrained && p.Drain.Origin == "a" && p.Drain.By == "ops"
	})
	if code, body := adminDo(t, "DELETE", adminB+"/api/v1/datacenters/east/drain"); code != 200 {
		t.Fatalf("undrain via b: %d %s", code, body)
	}
	waitFor(t, 2*time.Second, "a serves east again", func() bool {
		return a.inst.dnsEngine().Snapshot().Service("api").DC("east").State == routing.StateUp
	})
	fileB := filepath.Join(cfgB.Admin.StateDir, "cluster-drains.json")
	savedB, _ := os.ReadFile(fileB)
	if code, body := adminDo(t, "DELETE", adminB+"/api/v1/datacenters/east/drain"); code != 404 {
		t.Errorf("undrain of a DC not drained: %d %s, want 404", code, body)
	}
	if again, _ := os.ReadFile(fileB); !bytes.Equal(again, savedB) {
		t.Errorf("a 404 undrain wrote the state file")
	}
	if code, _ := adminDo(t, "POST", adminA+"/api/v1/datacenters/mars/drain"); code != 404 {
		t.Errorf("drain of an unknown DC: %d, want 404", code)
	}

	// GET /api/v1/cluster, from the DNS's view.
	resp, err := http.Get(adminA + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc struct {
		Self    string `json:"self"`
		Quorum  any    `json:"quorum"`
		Alone   *bool  `json:"alone"`
		DNSView string `json:"dns_view"`
		Members []struct {
			Name, Address, State, ConfigHash string
			ConfigDiffers                    *bool                        `json:"config_differs"`
			LastSeen                         time.Time                    `json:"last_seen"`
			View                             map[string]map[string]string `json:"view"`
		} `json:"members"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Self != "a" || doc.Quorum != "majority" || doc.Alone == nil || *doc.Alone || doc.DNSView != "cluster" || len(doc.Members) != 2 {
		t.Errorf("GET /api/v1/cluster: %s", raw)
	}
	for _, m := range doc.Members {
		if m.Address == "" || m.State != "alive" || m.ConfigDiffers == nil || m.LastSeen.IsZero() || m.View["api"]["east"] != "up" {
			t.Errorf("member %+v in %s", m, raw)
		}
	}

	// One affinity key for every member, unless a file names one.
	ka, kb := a.inst.cw.affinityKey(cfgA), b.inst.cw.affinityKey(cfgB)
	if ka == nil || !bytes.Equal(ka, kb) || !bytes.Equal(ka, cluster.DeriveSecret(bytes.Repeat([]byte{0xab}, 32), cluster.SecretAffinity)) {
		t.Errorf("affinity keys differ or are not derived: %x %x", ka, kb)
	}
	if ca, cb := a.inst.cw.dnsCookieSecret(), b.inst.cw.dnsCookieSecret(); len(ca) != 32 || !bytes.Equal(ca, cb) || bytes.Equal(ca, ka) {
		t.Errorf("DNS cookie secrets: %x %x", ca, cb)
	}
	withFile := *cfgA
	withFile.Proxy.AffinityKeyFile = "/etc/coopr-gslb/affinity.key"
	if k := a.inst.cw.affinityKey(&withFile); k != nil {
		t.Errorf("proxy.affinity_key_file set, yet the key is derived")
	}

	// Reload: quorum and peers live; the rest and the block need a restart.
	yamlA, _ := os.ReadFile(pathA)
	steps := []struct {
		name        string
		edit        func(string) string
		restart     []string
		quorum      any
		wantCluster bool
	}{
		{"quorum and peers", func(s string) string {
			return strings.Replace(s, "  peers: [", "  quorum: 2\n  peers: [\"127.0.0.1:2\", ", 1)
		}, nil, 2, true},
		{"bind", func(s string) string { return strings.Replace(s, `bind: "127.0.0.1:0"`, `bind: "127.0.0.1:7999"`, 1) }, []string{"cluster.bind"}, "majority", true},
		{"no block", func(s string) string { return s[:strings.Index(s, "cluster:\n")] }, []string{"cluster"}, "majority", true},
	}
	for _, st := range steps {
		writeFile(t, pathA, st.edit(string(yamlA)))
		if err := a.inst.Reload(); err != nil {
			t.Fatalf("%s: reload: %v", st.name, err)
		}
		last := a.inst.reloads.Last()
		if !slices.Equal(last.NeedsRestart, st.restart) {
			t.Errorf("%s: needs_restart %v, want %v", st.name, last.NeedsRestart, st.restart)
		}
		if q := a.inst.cw.cl.Load().Snapshot().Quorum; q != st.quorum {
			t.Errorf("%s: quorum %v, want %v", st.name, q, st.quorum)
		}
		if cur := a.inst.reloads.currentConfig(); (cur.Cluster != nil) != st.wantCluster {
			t.Errorf("%s: running config has the cluster block: %v", st.name, cur.Cluster != nil)
		}
	}

	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	// memberlist's probe goroutine outlives its Shutdown by up to a probe
	// interval (see cluster.Close); everything else has ended.
	deadline := time.Now().Add(6 * time.Second)
	for goleak.Find(before) != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	goleak.VerifyNone(t, before)
}

// TestNoClusterBlockNoClusterAPI: without a cluster: block the instance has
// no cluster and GET /api/v1/cluster answers 404.
func TestNoClusterBlockNoClusterAPI(t *testing.T) {
	be := backend(t)
	cfg, _ := loadYAML(t, fmt.Sprintf(runYAML, be.Addr(), ""))
	s := start(t, cfg, Options{})
	if s.inst.cw != nil || s.inst.dnsEngine() != s.inst.Engine() {
		t.Fatal("a cluster without a cluster: block")
	}
	resp, err := http.Get("http://" + s.inst.Addrs().Admin + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /api/v1/cluster without a cluster: %d", resp.StatusCode)
	}
}

// TestRestartAnswersFromPeers: a member whose own first probe round is not
// in yet answers DNS from its peers' view, and says so (dns_view "peers");
// once its probes are in, it answers from the cluster's view.
func TestRestartAnswersFromPeers(t *testing.T) {
	// The endpoint answers a's probes (from 127.0.0.1) at once and hangs
	// b's (from 127.0.0.2), so b's first round takes its probe timeout.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.RemoteAddr, "127.0.0.2:") {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "OK")
	}))
	defer srv.Close()
	defer close(release)
	ep := strings.TrimPrefix(srv.URL, "http://")
	keyFile := filepath.Join(t.TempDir(), "key")
	writeFile(t, keyFile, strings.Repeat("cd", 16)+"\n")
	httpCheck := func(s string) string {
		return strings.Replace(s, "check: {type: tcp}", "check: {type: http, path: /status}", 1)
	}

	cfgA, _ := loadYAML(t, httpCheck(clusterYAML(t, ep, "a", `"127.0.0.1:1"`, keyFile, "")))
	a := start(t, cfgA, Options{})
	addrA := a.inst.cw.cl.Load().Address()

	dnsB, adminB := freeLoopback(t), freeLoopback(t)
	yamlB := httpCheck(clusterYAML(t, ep, "b", fmt.Sprintf("%q", addrA), keyFile, ""))
	yamlB = strings.Replace(yamlB, `dns: "127.0.0.1:0", admin: "127.0.0.1:0"`, fmt.Sprintf("dns: %q, admin: %q", dnsB, adminB), 1)
	yamlB = strings.Replace(yamlB, "health: {interval: 100ms, timeout: 100ms,", "health: {source_address: 127.0.0.2, interval: 6s, timeout: 4s,", 1)
	cfgB, _ := loadYAML(t, yamlB)
	instB, err := New(cfgB, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- instB.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ask := func() string {
		m := new(dns.Msg)
		m.SetQuestion("api.coopr.example.com.", dns.TypeA)
		in, err := dns.Exchange(m, dnsB)
		if err != nil || in.Rcode != dns.RcodeSuccess || len(in.Answer) == 0 {
			return ""
		}
		return in.Answer[0].(*dns.A).A.String()
	}
	waitFor(t, 3*time.Second, "b answers from the peers' view before its first probe round", func() bool { return ask() == "192.0.2.10" })
	select {
	case <-instB.Serving():
		t.Fatal("b's first probe round was expected to take its 4 s timeout")
	default:
	}
	resp, err := http.Get("http://" + adminB + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		DNSView string `json:"dns_view"`
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc.DNSView != "peers" {
		t.Errorf("dns_view %q before b's own round, want peers", doc.DNSView)
	}
	<-instB.Serving()
	// b's own probe timed out, but with two voters a majority is two: one
	// down vote leaves the endpoint up, and b is outvoted.
	waitFor(t, 3*time.Second, "b answers from the cluster's view", func() bool { return *instB.cw.source.Load() == "cluster" })
	if got := ask(); got != "192.0.2.10" {
		t.Errorf("b answers %q with its own probe failing, want the quorum's 192.0.2.10", got)
	}
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// TestClusterBlockPresenceNeedsRestart: adding or removing the cluster:
// block is one restart-only key, and the running value is kept; inside the
// block only name, bind, advertise and secret_key_file are. (Each config has
// its own state dir and token file, hence the admin keys.)
func TestClusterBlockPresenceNeedsRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	writeFile(t, keyFile, strings.Repeat("ef", 16)+"\n")
	alone, _ := loadYAML(t, fmt.Sprintf(runYAML, "127.0.0.1:9", ""))
	clustered := func(extra string) *config.Config {
		cfg, _ := loadYAML(t, clusterYAML(t, "127.0.0.1:9", "a", `"127.0.0.1:1"`, keyFile, extra))
		return cfg
	}
	for _, tc := range []struct {
		name          string
		running, next func() *config.Config
		want          []string
		keptBlock     bool
	}{
		{"block added", func() *config.Config { return alone }, func() *config.Config { return clustered("") }, []string{"admin.state_dir", "admin.token_file", "cluster"}, false},
		{"block removed", func() *config.Config { return clustered("") }, func() *config.Config { c := *alone; return &c }, []string{"admin.state_dir", "admin.token_file", "cluster"}, true},
		{"quorum changed", func() *config.Config { return clustered("") }, func() *config.Config { return clustered("  quorum: 2\n") }, []string{"admin.state_dir", "admin.token_file"}, true},
		{"bind changed", func() *config.Config { return clustered("") }, func() *config.Config {
			c := clustered("")
			c.Cluster.Bind = "127.0.0.1:7946"
			return c
		}, []string{"admin.state_dir", "admin.token_file", "cluster.bind"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running, next := tc.running(), tc.next()
			got := keepRestartOnly(running, next)
			if !slices.Equal(got, tc.want) {
				t.Errorf("needs restart %v, want %v", got, tc.want)
			}
			if (next.Cluster != nil) != tc.keptBlock {
				t.Errorf("the running block was not kept: %+v", next.Cluster)
			}
		})
	}
}
