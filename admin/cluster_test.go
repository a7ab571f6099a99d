package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/cluster"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func TestClusterAPIAndPage(t *testing.T) {
	cfg, _, err := config.Parse([]byte(twoDCs))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	now := time.Now()
	st := &ClusterStatus{
		Snapshot: cluster.Snapshot{Self: "a", Quorum: "majority", Members: []cluster.Member{
			{Name: "a", Address: "127.0.0.2:7946", State: "alive", LastSeen: now, ConfigHash: "h1",
				View: map[string]map[string]string{"api": {"east": "down", "west": "up"}}},
			{Name: "b", Address: "127.0.0.3:7946", State: "alive", LastSeen: now, ConfigHash: "h2", ConfigDiffers: true,
				View: map[string]map[string]string{"api": {"east": "up", "west": "up"}}},
			{Name: "c", Address: "127.0.0.4:7946", State: "suspect", LastSeen: now.Add(-10 * time.Second), ConfigHash: "h1",
				View: map[string]map[string]string{}},
		}},
		DNSView:      "cluster",
		Decision:     map[string]map[string]string{"api": {"east": "up", "west": "up"}},
		Outvoted:     []string{"east/api/127.0.0.1:1001"},
		ProxyDiffers: []ViewDiff{{Service: "api", DC: "east", Proxy: "down", DNS: "up"}},
	}
	for _, tc := range []struct {
		name     string
		opt      func() *ClusterStatus
		set      bool
		api      int
		pageHas  []string
		pageLack []string
	}{
		{"no cluster", nil, false, 404, nil, []string{"<h2>Cluster"}},
		{"not running yet", func() *ClusterStatus { return nil }, true, 503, nil, []string{"<h2>Cluster"}},
		{"three members", func() *ClusterStatus { return st }, true, 200, []string{
			"<h2>Cluster <small>a · quorum majority · DNS answers from the cluster view",
			"Outvoted: this instance's own probes disagree with the cluster on east/api/127.0.0.1:1001",
			"api/east proxy down, DNS up",
			"<td>b</td><td>127.0.0.3:7946</td>", "h2 <b class=\"ep down\">differs</b>", "suspect",
			`<td class="warn">down</td>`, // a's own view of east differs from the decision
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Snapshot: e.Snapshot}
			if tc.set {
				opts.Cluster = tc.opt
			}
			srv := httptest.NewServer(New(opts))
			defer srv.Close()
			code, body := do(t, "GET", srv.URL+"/api/v1/cluster", "", "")
			if code != tc.api {
				t.Errorf("GET /api/v1/cluster: %d %v, want %d", code, body, tc.api)
			}
			if code == 200 {
				for _, k := range []string{"self", "quorum", "alone", "members", "drains", "dns_view", "decision", "outvoted", "proxy_differs"} {
					if _, ok := body[k]; !ok {
						t.Errorf("GET /api/v1/cluster lacks %q", k)
					}
				}
				m := body["members"].([]any)[1].(map[string]any)
				for _, k := range []string{"name", "address", "state", "last_seen", "config_hash", "config_differs", "view"} {
					if _, ok := m[k]; !ok {
						t.Errorf("member lacks %q: %v", k, m)
					}
				}
			}
			resp, err := http.Get(srv.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("page: %d %s", resp.StatusCode, page)
			}
			for _, s := range tc.pageHas {
				if !strings.Contains(string(page), s) {
					t.Errorf("page lacks %s", s)
				}
			}
			for _, s := range tc.pageLack {
				if strings.Contains(string(page), s) {
					t.Errorf("page has %s", s)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", page)
			}
		})
	}
}
