package simulator

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStartFleetPartitionsIDs(t *testing.T) {
	f, err := StartFleet(DCOptions{}, DCOptions{Name: "west", Servers: 1, UIs: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dcs := f.Datacenters()
	if len(dcs) != 2 || dcs[0].Name() != "dc1" || dcs[1].Name() != "west" {
		t.Fatalf("datacenters %v", dcs)
	}
	if dcs[0].IDStart() != 1 || dcs[1].IDStart() != 2 || dcs[0].IDIncrement() != 10 || dcs[1].IDIncrement() != 10 {
		t.Errorf("partitions: %d/%d and %d/%d", dcs[0].IDStart(), dcs[0].IDIncrement(), dcs[1].IDStart(), dcs[1].IDIncrement())
	}
	if len(dcs[0].Servers()) != 2 || len(dcs[0].UIs()) != 1 || len(dcs[1].Servers()) != 1 || len(dcs[1].UIs()) != 0 {
		t.Errorf("endpoint counts wrong")
	}
	if id := createCluster(t, dcs[1].Servers()[0]); id != "00000002" {
		t.Errorf("west's first id %s", id)
	}
	ui := dcs[0].UIs()[0]
	if f.Endpoint(ui.Addr()) != ui || f.Endpoint("dc1-ui-1") != ui || f.Endpoint("nope") != nil || f.Datacenter("nope") != nil {
		t.Error("Endpoint/Datacenter lookup")
	}
}

func TestNewFleetRejectsBadPartitions(t *testing.T) {
	start := func(name string, s, inc int) *Datacenter {
		d, err := StartDatacenter(DCOptions{Name: name, IDStart: s, IDIncrement: inc, Servers: 1, UIs: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	a, b, c, a2 := start("a", 1, 10), start("b", 11, 10), start("c", 2, 5), start("a", 3, 10)
	for _, dcs := range [][]*Datacenter{{a, b}, {a, c}, {a, a2}} {
		if _, err := NewFleet(dcs...); err == nil {
			t.Errorf("NewFleet(%s, %s) accepted", dcs[0].Name(), dcs[1].Name())
		}
	}
}

func TestControlHandler(t *testing.T) {
	f, err := StartFleet(DCOptions{Servers: 1}, DCOptions{Servers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctl := httptest.NewServer(f.Handler())
	defer ctl.Close()
	dc1, dc2 := f.Datacenter("dc1"), f.Datacenter("dc2")
	srv1 := dc1.Servers()[0]

	modes := func(d *Datacenter) []FaultMode {
		var out []FaultMode
		for _, s := range d.Endpoints() {
			out = append(out, s.Fault().Mode)
		}
		return out
	}
	steps := []struct {
		method, path string
		want         int
		check        func() bool
	}{
		{"POST", "/dc/dc1/fail?mode=500", 200, func() bool { return slices.Equal(modes(dc1), []FaultMode{Error500, Error500}) }},
		{"POST", "/dc/dc1/fail?mode=slow&delay=2s", 200, func() bool { return srv1.Fault() == Fault{Mode: Slow, Delay: 2 * time.Second} }},
		{"POST", "/dc/dc1/fail?mode=flap&period=1s", 200, func() bool { return srv1.Fault() == Fault{Mode: Flap, FlapPeriod: time.Second} }},
		{"POST", "/dc/dc1/fail?mode=hang", 200, func() bool { return srv1.Fault().Mode == Hang }},
		{"POST", "/dc/dc1/recover", 200, func() bool { return slices.Equal(modes(dc1), []FaultMode{None, None}) }},
		{"POST", "/dc/dc1/fail?mode=refuse", 200, func() bool { return !srv1.Listening() && slices.Equal(modes(dc2), []FaultMode{None, None}) }},
		{"POST", "/dc/dc1/recover", 200, func() bool { return srv1.Listening() }},
		{"POST", "/endpoint/" + srv1.Addr() + "/fail?mode=refuse", 200, func() bool { return !srv1.Listening() && dc1.UIs()[0].Listening() }},
		{"POST", "/endpoint/" + srv1.Addr() + "/recover", 200, func() bool { return srv1.Listening() }},
		{"POST", "/endpoint/dc2-ui-1/fail?mode=failnext&n=2", 200, func() bool { return dc2.UIs()[0].Fault().FailNext == 2 }},
		{"POST", "/dc/dc1/own?starts=2", 200, func() bool { return slices.Equal(srv1.OwnedStarts(), []int{2}) }},
		{"POST", "/dc/dc1/own?starts=x", 400, nil},
		{"POST", "/dc/nope/fail?mode=500", 404, nil},
		{"POST", "/endpoint/127.0.0.1:1/recover", 404, nil},
		{"POST", "/dc/dc1/fail?mode=melt", 400, nil},
		{"POST", "/dc/dc1/fail", 400, nil},
		{"POST", "/dc/dc1/fail?mode=slow&delay=later", 400, nil},
		{"GET", "/dc/dc1/fail?mode=500", 405, nil},
		{"GET", "/dc/dc2", 200, nil},
		{"GET", "/endpoint/dc2-ui-1", 200, nil},
	}
	for _, st := range steps {
		r := do(t, st.method, ctl.URL+st.path, "", nil)
		if r.code != st.want {
			t.Errorf("%s %s: %d %s, want %d", st.method, st.path, r.code, r.body, st.want)
			continue
		}
		if st.want == 400 && strings.Contains(st.path, "mode") && !strings.Contains(r.body, `"valid_modes"`) {
			t.Errorf("%s: 400 without valid_modes: %s", st.path, r.body)
		}
		if st.want == 404 && !strings.Contains(r.body, `"error"`) {
			t.Errorf("%s: 404 without a JSON error: %s", st.path, r.body)
		}
		if st.check != nil && !st.check() {
			t.Errorf("%s %s: state not applied", st.method, st.path)
		}
	}

	dc1.SetFault(Fault{Mode: Slow, Delay: time.Second})
	r := do(t, "GET", ctl.URL+"/", "", nil)
	v := decode[fleetView](t, r.body)
	if r.code != http.StatusOK || len(v.Datacenters) != 2 || len(v.Datacenters[0].Endpoints) != 2 {
		t.Fatalf("GET /: %d %s", r.code, r.body)
	}
	e := v.Datacenters[0].Endpoints[0]
	if e.Addr != srv1.Addr() || e.Role != RoleServer || e.Fault != (Fault{Mode: Slow, Delay: time.Second}) || !e.Listening {
		t.Errorf("endpoint view %+v", e)
	}
	if !strings.Contains(r.body, `"mode": "slow"`) || !strings.Contains(r.body, `"delay": "1s"`) {
		t.Errorf("fault not readable in %s", r.body)
	}
}
