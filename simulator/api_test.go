package simulator

import (
	"net/http"
	"slices"
	"testing"
)

func createCluster(t *testing.T, s *Server) string {
	t.Helper()
	r := do(t, "POST", s.URL()+"/v2/clusters", `{"name":"c"}`, nil)
	if r.code != http.StatusOK {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	return decode[map[string]string](t, r.body)["id"]
}

func TestClusterIDsFollowPartition(t *testing.T) {
	tests := []struct {
		start, inc int
		want       []string
	}{
		{0, 0, []string{"00000001", "00000002", "00000003"}},
		{3, 10, []string{"00000003", "00000013", "00000023"}},
		{17, 100, []string{"00000017", "00000117", "00000217"}},
	}
	for _, tt := range tests {
		s := startServer(t, Options{IDStart: tt.start, IDIncrement: tt.inc})
		var got []string
		for range tt.want {
			got = append(got, createCluster(t, s))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("start %d inc %d: ids %v, want %v", tt.start, tt.inc, got, tt.want)
		}
	}
}

func TestClusterIDsSurviveRefuse(t *testing.T) {
	s := startServer(t, Options{IDStart: 3, IDIncrement: 10})
	first := createCluster(t, s)
	s.SetFault(Fault{Mode: Refuse})
	s.SetFault(Fault{})
	if second := createCluster(t, s); first != "00000003" || second != "00000013" {
		t.Errorf("ids across a restart: %s then %s, want 00000003 then 00000013", first, second)
	}
	if r := do(t, "GET", s.URL()+"/v2/clusters/"+first, "", nil); r.code != http.StatusOK {
		t.Errorf("cluster lost across a restart: %d", r.code)
	}
}

func TestDatacenterServersShareStoreAndSequence(t *testing.T) {
	d, err := StartDatacenter(DCOptions{Name: "west", IDStart: 2, IDIncrement: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, b := d.Servers()[0], d.Servers()[1]
	ida, idb := createCluster(t, a), createCluster(t, b)
	if ida != "00000002" || idb != "00000012" {
		t.Errorf("ids %s %s, want 00000002 00000012", ida, idb)
	}
	c := decode[Cluster](t, do(t, "GET", a.URL()+"/v2/clusters/"+idb, "", nil).body)
	if c.ID != idb || c.DC != "west" {
		t.Errorf("cluster from sibling: %+v", c)
	}
}

func TestClusterLifecycle(t *testing.T) {
	s := startServer(t, Options{})
	hdr := map[string]string{"Coopr-UserID": "alice", "Coopr-TenantID": "acme"}
	r := do(t, "POST", s.URL()+"/v2/clusters", `{"name":"hadoop"}`, hdr)
	id := decode[map[string]string](t, r.body)["id"]

	steps := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/v2/clusters/" + id, "", 200},
		{"GET", "/v2/clusters/99999999", "", 404},
		{"POST", "/v2/clusters", "not json", 400},
		{"POST", "/v2/clusters/" + id, `{"config":{"a":1}}`, 200},
		{"PUT", "/v2/clusters/" + id + "/config", `{"b":2}`, 200},
		{"GET", "/v2/clusters/" + id + "/config", "", 200},
		{"POST", "/v2/clusters/" + id + "/pause", "", 200},
		{"POST", "/v2/clusters/" + id + "/resume", "", 200},
		{"POST", "/v2/clusters/" + id + "/abort", "", 200},
		{"GET", "/v2/clusters/" + id + "/status", "", 200},
		{"DELETE", "/v2/clusters/" + id, "", 200},
		{"DELETE", "/v2/clusters/" + id, "", 404},
		{"GET", "/v2/clusters/" + id + "/status", "", 404},
	}
	for _, st := range steps {
		if r := do(t, st.method, s.URL()+st.path, st.body, nil); r.code != st.want {
			t.Errorf("%s %s: %d %s, want %d", st.method, st.path, r.code, r.body, st.want)
		}
	}
	createCluster(t, s)
	list := decode[[]Cluster](t, do(t, "GET", s.URL()+"/v2/clusters", "", nil).body)
	if len(list) != 1 || list[0].ID != "00000002" {
		t.Errorf("list after delete: %+v", list)
	}
}

func TestClusterRecordsIdentity(t *testing.T) {
	s := startServer(t, Options{})
	r := do(t, "POST", s.URL()+"/v2/clusters", `{"name":"hadoop"}`, map[string]string{"Coopr-UserID": "alice", "Coopr-TenantID": "acme"})
	id := decode[map[string]string](t, r.body)["id"]
	c := decode[Cluster](t, do(t, "GET", s.URL()+"/v2/clusters/"+id, "", nil).body)
	if c.Name != "hadoop" || c.OwnerID != "alice" || c.TenantID != "acme" || c.Status != "active" {
		t.Errorf("cluster %+v", c)
	}
}

func TestWritesToForeignShardConflict(t *testing.T) {
	s := startServer(t, Options{DC: "dc1", IDStart: 1, IDIncrement: 10})
	own := createCluster(t, s)
	tests := []struct {
		method, path string
		want         int // before the takeover
		takeover     int // after SetOwnedStarts(3)
	}{
		{"POST", "/v2/clusters/" + own + "/pause", 200, 200},
		{"GET", "/v2/clusters/00000013", 404, 404},
		{"POST", "/v2/clusters/00000013", 409, 404},
		{"PUT", "/v2/clusters/00000013/config", 409, 404},
		{"DELETE", "/v2/clusters/00000013", 409, 404},
		{"PATCH", "/v2/clusters/00000013/services", 409, 404},
		{"POST", "/v2/clusters/00000013/abort", 409, 404},
		{"POST", "/v2/clusters/00000025/abort", 409, 409},
		{"POST", "/v2/clusters", 200, 200},
	}
	for _, phase := range []string{"own", "takeover"} {
		if phase == "takeover" {
			s.SetOwnedStarts(3)
		}
		s.ResetCounters()
		wantConflicts := int64(0)
		for _, tt := range tests {
			want := tt.want
			if phase == "takeover" {
				want = tt.takeover
			}
			r := do(t, tt.method, s.URL()+tt.path, "", nil)
			if r.code != want {
				t.Errorf("%s: %s %s: %d %s, want %d", phase, tt.method, tt.path, r.code, r.body, want)
			}
			if r.code == http.StatusConflict {
				wantConflicts++
				body := decode[map[string]any](t, r.body)
				if body["owner_partition"] == nil || body["error"] == nil {
					t.Errorf("409 body lacks owner_partition or error: %s", r.body)
				}
			}
		}
		if got := s.Conflicts(); got != wantConflicts {
			t.Errorf("%s: Conflicts() = %d, want %d", phase, got, wantConflicts)
		}
	}
}

func TestRequestIDsRecordWritesOnly(t *testing.T) {
	s := startServer(t, Options{})
	do(t, "GET", s.URL()+"/v2/clusters", "", map[string]string{"X-Request-Id": "get-1"})
	do(t, "POST", s.URL()+"/v2/clusters", "{}", map[string]string{"X-Request-Id": "post-1"})
	do(t, "DELETE", s.URL()+"/v2/clusters/00000001", "", map[string]string{"X-Request-Id": "del-1"})
	s.SetFault(Fault{Mode: Error500})
	do(t, "POST", s.URL()+"/v2/clusters", "{}", map[string]string{"X-Request-Id": "post-2"})
	if got, want := s.RequestIDs(), []string{"post-1", "del-1", "post-2"}; !slices.Equal(got, want) {
		t.Errorf("RequestIDs() = %v, want %v", got, want)
	}
	s.ResetCounters()
	if len(s.RequestIDs()) != 0 || s.Requests() != 0 {
		t.Errorf("ResetCounters left %v, %d", s.RequestIDs(), s.Requests())
	}
}

func TestEchoPassesHeadersThrough(t *testing.T) {
	s := startServer(t, Options{DC: "east"})
	hdr := map[string]string{"Coopr-UserID": "alice", "Coopr-TenantID": "acme", "Coopr-ApiKey": "k3y", "X-Custom": "v"}
	r := do(t, "POST", s.URL()+"/echo?x=1", "hello", hdr)
	e := decode[echoReply](t, r.body)
	for k, v := range hdr {
		if got := e.Headers.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if e.Method != "POST" || e.Path != "/echo" || e.Query != "x=1" || e.Host != s.Addr() || e.BodyBytes != 5 || e.DC != "east" || e.RemoteAddr == "" {
		t.Errorf("echo %+v", e)
	}
}
