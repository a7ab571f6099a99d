package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

type scopedStatus struct {
	ScopedDrains []struct {
		DC, Service, Endpoint, Reason, Mode, By string
	} `json:"scoped_drains"`
	Services []struct {
		Name        string `json:"name"`
		Datacenters []struct {
			Name       string `json:"name"`
			State      string `json:"state"`
			Healthy    int    `json:"healthy"`
			DrainScope string `json:"drain_scope"`
			Endpoints  []struct {
				Address string          `json:"address"`
				Drain   *map[string]any `json:"drain"`
			} `json:"endpoints"`
		} `json:"datacenters"`
	} `json:"services"`
}

func (s scopedStatus) dc(service, dc string) (state string, healthy int, scope string) {
	for _, svc := range s.Services {
		for _, d := range svc.Datacenters {
			if svc.Name == service && d.Name == dc {
				return d.State, d.Healthy, d.DrainScope
			}
		}
	}
	return "", 0, ""
}

func dnsA(t *testing.T, server, name string) (string, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	in, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
	if err != nil {
		return "error: " + err.Error(), nil
	}
	var out []string
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return dns.RcodeToString[in.Rcode], out
}

// TestDrainServiceAndEndpointWithCLI drains one service in a DC and one
// endpoint with the CLI, checks DNS, the proxy and the status API, kills the
// process (SIGKILL) and starts it again: both drains are back before the
// first answer, which comes only after the first probe round.
func TestDrainServiceAndEndpointWithCLI(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	httpAddr, dnsAddr, admin := freePort(t), freePort(t), freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, httpAddr, dnsAddr, ""), admin)
	east := fleet.Datacenter("east")
	drainedEP := east.Servers()[0].Addr()
	status := func() scopedStatus {
		var st scopedStatus
		getJSON(t, "http://"+admin+"/api/v1/status", &st)
		return st
	}

	// One service in a DC: api leaves east, ui stays.
	if code, out, errOut := cli(t, admin, "drain", "east", "-service", "api", "-reason", "deploy", "-token", testToken); code != 0 || !strings.Contains(out, "east/api drained (hard)") {
		t.Fatalf("drain -service: %d %q %q", code, out, errOut)
	}
	st := status()
	if s, _, scope := st.dc("api", "east"); s != "drained" || scope != "service" {
		t.Errorf("api in east: %s (%s), want drained by a service drain", s, scope)
	}
	if s, _, _ := st.dc("ui", "east"); s != "up" {
		t.Errorf("ui in east: %s, want up", s)
	}
	if _, a := dnsA(t, dnsAddr, "api.coopr.example.com."); strings.Join(a, ",") != "192.0.2.20" {
		t.Errorf("api answer %v, want west's 192.0.2.20", a)
	}
	if _, a := dnsA(t, dnsAddr, "coopr.example.com."); strings.Join(a, ",") != "192.0.2.11" {
		t.Errorf("ui answer %v, want east's 192.0.2.11", a)
	}
	if code, out, errOut := cli(t, admin, "undrain", "east", "-service", "api", "-token", testToken); code != 0 || !strings.Contains(out, "east/api undrained") {
		t.Fatalf("undrain -service: %d %q %q", code, out, errOut)
	}
	if s, _, _ := status().dc("api", "east"); s != "up" {
		t.Errorf("api in east after undrain: %s", s)
	}

	// One endpoint: out of east's healthy set; the proxy stops using it.
	if code, out, errOut := cli(t, admin, "drain", "east", "-service", "api", "-endpoint", drainedEP, "-reason", "disk", "-token", testToken); code != 0 || !strings.Contains(out, "east/api/"+drainedEP+" drained") {
		t.Fatalf("drain -endpoint: %d %q %q", code, out, errOut)
	}
	if s, healthy, _ := status().dc("api", "east"); s != "up" || healthy != 1 {
		t.Errorf("api in east with an endpoint drained: %s with %d healthy, want up with 1", s, healthy)
	}
	for range 20 {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
		req.Host = "api.coopr.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ep := resp.Header.Get(simulator.HeaderEndpoint); resp.StatusCode != 200 || ep == drainedEP || resp.Header.Get(simulator.HeaderDC) != "east" {
			t.Fatalf("GET answered %d by %s in %s; the drained endpoint is %s", resp.StatusCode, ep, resp.Header.Get(simulator.HeaderDC), drainedEP)
		}
	}
	// And a service drain of ui, for the restart.
	if code, _, errOut := cli(t, admin, "drain", "east", "-service", "ui", "-reason", "redesign", "-token", testToken); code != 0 {
		t.Fatalf("drain ui: %s", errOut)
	}

	// Mistakes name what is wrong; changes need the token on the new paths.
	if code, _, errOut := cli(t, admin, "drain", "east", "-service", "db", "-token", testToken); code == 0 || !strings.Contains(errOut, `unknown service "db"`) {
		t.Errorf("drain of an unknown service: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, admin, "drain", "west", "-endpoint", drainedEP, "-token", testToken); code == 0 || !strings.Contains(errOut, `unknown endpoint "`+drainedEP+`" in datacenter "west"`) {
		t.Errorf("drain of an endpoint west lacks: %d %q", code, errOut)
	}
	resp, err := http.Post("http://"+admin+"/api/v1/datacenters/east/services/api/drain", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("service drain without a token: %d, want 401", resp.StatusCode)
	}

	// SIGKILL, and start again while DNS is asked all along.
	g.cmd.Process.Kill()
	<-g.done
	// The first probe round takes 300 ms: every answer before it must be
	// SERVFAIL (or no answer while nothing is bound), never one that
	// forgets a drain.
	for _, dc := range fleet.Datacenters() {
		dc.SetFault(simulator.Fault{Mode: simulator.Slow, Delay: 300 * time.Millisecond})
	}
	var mu sync.Mutex
	var answers []string
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			rcode, a := dnsA(t, dnsAddr, "coopr.example.com.")
			mu.Lock()
			answers = append(answers, rcode+" "+strings.Join(a, ","))
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	g2 := startGSLBFile(t, g.cfgPath, admin)
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	var servfail, noerror int
	for _, a := range answers {
		switch {
		case strings.HasPrefix(a, "SERVFAIL"):
			if noerror > 0 {
				t.Errorf("SERVFAIL after the first answer: %v", answers)
			}
			servfail++
		case strings.HasPrefix(a, "NOERROR"):
			noerror++
			if a != "NOERROR 192.0.2.21" {
				t.Errorf("answer %q after restart, want west's 192.0.2.21 (ui drained in east)", a)
			}
		}
	}
	if servfail == 0 || noerror == 0 {
		t.Errorf("want SERVFAIL until the first probe round, then answers: %d SERVFAIL, %d NOERROR", servfail, noerror)
	}
	st = scopedStatus{}
	getJSON(t, "http://"+admin+"/api/v1/status", &st)
	if len(st.ScopedDrains) != 2 {
		t.Fatalf("after SIGKILL and start: scoped drains %+v, want the endpoint's and ui's", st.ScopedDrains)
	}
	if s, healthy, _ := st.dc("api", "east"); s != "up" || healthy != 1 {
		t.Errorf("after restart api in east: %s with %d healthy, want up with 1", s, healthy)
	}
	if s, _, scope := st.dc("ui", "east"); s != "drained" || scope != "service" {
		t.Errorf("after restart ui in east: %s (%s)", s, scope)
	}
	for _, dc := range fleet.Datacenters() {
		dc.SetFault(simulator.Fault{})
	}
	if code, _, errOut := cli(t, g2.admin, "undrain", "east", "-service", "api", "-endpoint", drainedEP, "-token", testToken); code != 0 {
		t.Fatalf("undrain -endpoint: %s", errOut)
	}
	eventually(t, 5*time.Second, "api in east back to 2 healthy", func() bool {
		_, healthy, _ := status().dc("api", "east")
		return healthy == 2
	})
}
