package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

const shardOwnerHeader = "X-Coopr-GSLB-Shard-Owner"

// shardConfig is proxyConfig with Coopr's custom replication: each DC takes
// the other's shards over, and the api service sends cluster writes to the
// shard's owner and pins sessions with the affinity cookie.
func shardConfig(t *testing.T, fleet *simulator.Fleet, admin, httpAddr string) string {
	t.Helper()
	cfg := proxyConfig(t, fleet, admin, httpAddr, "")
	for _, dc := range fleet.Datacenters() {
		other := "west"
		if dc.Name() == "west" {
			other = "east"
		}
		ids := "    coopr_ids: {start: " + strconv.Itoa(dc.IDStart()) + ", increment: " + strconv.Itoa(dc.IDIncrement()) + "}\n"
		if !strings.Contains(cfg, ids) {
			t.Fatalf("config lacks %q", ids)
		}
		cfg = strings.Replace(cfg, ids, ids+"    takeover: ["+other+"]\n", 1)
	}
	api := "    policy: failover\n    dns_ttl: 5\n"
	if !strings.Contains(cfg, api) {
		t.Fatalf("config lacks %q", api)
	}
	return strings.Replace(cfg, api, api+"    affinity: cookie\n    shard_routing: writes\n", 1)
}

// apiClient talks to the api service through the proxy and keeps its
// affinity cookie as a browser or a cookie-aware CLI would.
type apiClient struct {
	t      *testing.T
	proxy  string
	cookie string
}

// apiAnswer is what a client saw.
type apiAnswer struct {
	code        int
	dc, owner   string // the DC that served, the shard owner header
	body        []byte
	setCookie   bool
	simulatorDC string // the DC the simulator that answered belongs to
}

func (c *apiClient) do(method, path, body string) apiAnswer {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+c.proxy+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Host = "api.coopr.example.com"
	req.Header.Set("Coopr-UserID", "alice")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "coopr_gslb_dc", Value: c.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := apiAnswer{code: resp.StatusCode, dc: resp.Header.Get("X-Coopr-GSLB-DC"), owner: resp.Header.Get(shardOwnerHeader),
		body: b, simulatorDC: resp.Header.Get(simulator.HeaderDC)}
	for _, ck := range resp.Cookies() {
		if ck.Name == "coopr_gslb_dc" {
			c.cookie, a.setCookie = ck.Value, true
		}
	}
	return a
}

// TestShardRoutingWritesGoToOwner creates clusters in both DCs through the
// proxy, updates and deletes each from a client pinned to the other DC,
// kills an owner so its takeover DC gets its writes, and brings it back.
// The simulated servers answer 409 to a write for a cluster their DC does
// not own, so any misrouted write shows up in their Conflicts.
func TestShardRoutingWritesGoToOwner(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	g := startGSLB(t, shardConfig(t, fleet, admin, httpAddr), admin)
	east, west := fleet.Datacenter("east"), fleet.Datacenter("west")
	dcs := map[string]*simulator.Datacenter{"east": east, "west": west}
	conflicts := func() (n int64) {
		for _, d := range fleet.Datacenters() {
			for _, s := range d.Servers() {
				n += s.Conflicts()
			}
		}
		return n
	}
	requests := func(d *simulator.Datacenter) (n int64) {
		for _, s := range d.Servers() {
			n += s.Requests()
		}
		return n
	}
	homeOf := func(id string) string {
		n, err := strconv.Atoi(id)
		if err != nil {
			t.Fatalf("cluster ID %q: %v", id, err)
		}
		for name, d := range dcs {
			if n%d.IDIncrement() == d.IDStart()%d.IDIncrement() {
				return name
			}
		}
		t.Fatalf("cluster ID %s is in no DC's partition", id)
		return ""
	}
	checkNoConflicts := func(when string) {
		t.Helper()
		if n := conflicts(); n != 0 {
			t.Fatalf("%s: %d writes reached a DC that does not own the cluster (409)", when, n)
		}
	}

	// Pin one client to each DC: east is first by policy; west while east
	// is drained for a moment.
	pinned := map[string]*apiClient{"east": {t: t, proxy: httpAddr}, "west": {t: t, proxy: httpAddr}}
	if a := pinned["east"].do("GET", "/v2/clusters", ""); a.code != 200 || a.dc != "east" || pinned["east"].cookie == "" {
		t.Fatalf("pinning to east: %d from %q, cookie %q", a.code, a.dc, pinned["east"].cookie)
	}
	if code, _, e := cli(t, admin, "drain", "east", "-reason", "pin a client to west", "-token", testToken); code != 0 {
		t.Fatal(e)
	}
	if a := pinned["west"].do("GET", "/v2/clusters", ""); a.code != 200 || a.dc != "west" || pinned["west"].cookie == "" {
		t.Fatalf("pinning to west: %d from %q", a.code, a.dc)
	}
	if code, _, e := cli(t, admin, "undrain", "east", "-token", testToken); code != 0 {
		t.Fatal(e)
	}
	eventually(t, 10*time.Second, "east up", func() bool { return g.status().dcState("api", "east") == "up" })
	other := map[string]string{"east": "west", "west": "east"}

	// Create clusters through the proxy in every DC: the pin decides where.
	created := map[string][]string{}
	for _, dc := range []string{"east", "west"} {
		for i := range 3 {
			a := pinned[dc].do("POST", "/v2/clusters", `{"name":"`+dc+strconv.Itoa(i)+`"}`)
			var res struct{ ID string }
			if a.code != 200 || json.Unmarshal(a.body, &res) != nil || res.ID == "" {
				t.Fatalf("create in %s: %d %s", dc, a.code, a.body)
			}
			if a.dc != dc || homeOf(res.ID) != dc || a.owner != "" {
				t.Fatalf("create from a client pinned to %s: served by %s, ID %s of %s's partition, owner header %q",
					dc, a.dc, res.ID, homeOf(res.ID), a.owner)
			}
			created[dc] = append(created[dc], res.ID)
		}
	}

	// Update and delete each cluster from the client pinned to the other DC.
	write := func(c *apiClient, method, path, body, wantOwner string, wantCode int) apiAnswer {
		t.Helper()
		a := c.do(method, path, body)
		if a.owner != wantOwner || a.simulatorDC != wantOwner {
			t.Errorf("%s %s: shard owner header %q, answered by a %q server; want %s", method, path, a.owner, a.simulatorDC, wantOwner)
		}
		if wantCode != 0 && a.code != wantCode {
			t.Errorf("%s %s: %d %s, want %d", method, path, a.code, a.body, wantCode)
		}
		if a.setCookie {
			t.Errorf("%s %s: a write routed by shard moved the session's pin", method, path)
		}
		return a
	}
	for home, ids := range created {
		c := pinned[other[home]]
		for _, id := range ids {
			write(c, "PUT", "/v2/clusters/"+id+"/config", `{"size":3}`, home, 200)
			write(c, "POST", "/v2/clusters/"+id, `{"services":["hadoop"]}`, home, 200)
			write(c, "POST", "/v2/clusters/"+id+"/pause", "", home, 200)
		}
		write(c, "DELETE", "/v2/clusters/"+ids[0], "", home, 200)
		// Reads follow the pin: the owner's own client sees it gone.
		if a := pinned[home].do("GET", "/v2/clusters/"+ids[0], ""); a.code != 404 || a.dc != home {
			t.Errorf("deleted cluster %s: GET from %s answered %d", ids[0], a.dc, a.code)
		}
	}
	checkNoConflicts("writes from clients pinned to the other DC")
	// Affinity still holds for everything that is not a cluster write.
	for dc, c := range pinned {
		if a := c.do("GET", "/v2/clusters", ""); a.dc != dc || a.owner != "" {
			t.Errorf("client pinned to %s listed clusters from %s (owner header %q)", dc, a.dc, a.owner)
		}
	}

	// Kill west. Coopr's takeover makes east the owner of west's partition;
	// the proxy moves west's writes to east once its probes see west down.
	east.SetOwnedStarts(west.IDStart())
	west.SetFault(simulator.Fault{Mode: simulator.Refuse})
	eventually(t, 10*time.Second, "west down", func() bool { return g.status().dcState("api", "west") == "down" })
	var shards struct {
		Services []struct {
			Name   string `json:"name"`
			Shards []struct {
				Home, Owner string
				TakenOver   bool `json:"taken_over"`
			} `json:"shards"`
		} `json:"services"`
	}
	getJSON(t, "http://"+admin+"/api/v1/status", &shards)
	for _, s := range shards.Services {
		for _, sh := range s.Shards {
			if s.Name == "api" && sh.Home == "west" && (sh.Owner != "east" || !sh.TakenOver) {
				t.Errorf("status shows west's shard owned by %q (taken over %v), want east", sh.Owner, sh.TakenOver)
			}
		}
	}
	eastBefore := requests(east)
	westID := created["west"][1]
	for _, c := range pinned {
		// East has no copy of west's cluster in the simulator, so it may
		// answer 404; what matters is that east, the new owner, got it.
		write(c, "PUT", "/v2/clusters/"+westID+"/config", `{"size":5}`, "east", 0)
		write(c, "POST", "/v2/clusters/"+westID+"/resume", "", "east", 0)
		write(c, "PUT", "/v2/clusters/"+created["east"][1]+"/config", `{"size":5}`, "east", 200)
	}
	if n := requests(east) - eastBefore; n < 6 {
		t.Errorf("east's servers got %d requests during the takeover, want at least 6", n)
	}
	checkNoConflicts("writes during the takeover")
	if !metricAbove(t, admin, `coopr_gslb_proxy_shard_routed_total{owner="east",service="api",taken_over="true"}`, 0) {
		t.Error("no request counted as routed to a takeover owner")
	}

	// Bring west back: its writes stay with east until rise probes see west
	// up, then return to it.
	back := time.Now()
	west.SetFault(simulator.Fault{})
	var toEast int
	var returned time.Duration
	for {
		a := pinned["east"].do("PUT", "/v2/clusters/"+westID+"/config", `{"size":7}`)
		if a.owner == "west" {
			returned = time.Since(back)
			if a.code != 200 || a.simulatorDC != "west" {
				t.Errorf("write after west came back: %d from %q", a.code, a.simulatorDC)
			}
			break
		}
		if a.owner != "east" || a.simulatorDC != "east" {
			t.Fatalf("while west rises, a write went to owner %q, server of %q", a.owner, a.simulatorDC)
		}
		toEast++
		if time.Since(back) > 10*time.Second {
			t.Fatal("writes did not return to west within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// rise: 2 at interval 500ms: the second good probe comes an interval
	// after the first, so the first writes after the fault cleared went to east.
	if toEast == 0 || returned < 400*time.Millisecond {
		t.Errorf("writes returned to west after %s (%d went to east first); want them to wait for rise probes", returned, toEast)
	}
	t.Logf("writes returned to west %s after it came back", returned.Round(time.Millisecond))
	east.SetOwnedStarts()
	write(pinned["east"], "DELETE", "/v2/clusters/"+westID, "", "west", 200)
	write(pinned["west"], "DELETE", "/v2/clusters/"+created["east"][1], "", "east", 200)
	checkNoConflicts("writes after west came back")
}

// metricAbove reports whether the /metrics line starting with series has a
// value above min.
func metricAbove(t *testing.T, admin, series string, min float64) bool {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && f > min
		}
	}
	return false
}
