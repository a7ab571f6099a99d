package e2e

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// The chaos suite (issue 13): every scenario runs the real binary with
// simulated DCs on loopback and steady open-loop load on both front doors,
// acts out one fault, prints its figures and checks what coopr-gslb
// promises (docs/reliability.md). The short variants run in CI; the long
// ones and the soak run behind flags:
//
//	go test ./e2e/ -run Chaos -args -chaos.long
//	go test ./e2e/ -run ChaosSoak -args -soak 10m -timeout 0
//
// Assertions marked pending (today only the exact DNS detection bound,
// without scheduling slack) only log their figure unless CHAOS_STRICT=1.
var (
	chaosLong = flag.Bool("chaos.long", false, "chaos suite: run each scenario for 30 s instead of a few seconds")
	soakFor   = flag.Duration("soak", 0, "chaos suite: run the soak scenario this long (e.g. 10m); 0 skips it")
	chaosRate = flag.Int("chaos.rate", 100, "chaos suite: GETs a second (POSTs are a tenth, DNS queries a fifth)")
)

// loadRates is the load of every scenario, from -chaos.rate.
func loadRates() rates {
	n := max(*chaosRate, 10)
	return rates{get: n, post: n / 10, dns: n / 5}
}

func chaosStrict() bool { return os.Getenv("CHAOS_STRICT") == "1" }

// Addresses DNS answers for the two DCs' api service (see twoDCConfig).
const (
	eastAddr = "192.0.2.10"
	westAddr = "192.0.2.20"
)

// chaosEnv is one scenario's world.
type chaosEnv struct {
	t                        *testing.T
	fleet                    *simulator.Fleet
	g                        *gslb
	admin, httpAddr, dnsAddr string
}

type chaosCase struct {
	name string
	// cfg edits the configuration (opsConfig's, health every 500 ms, fall 3).
	cfg func(string) string
	// fault and clear act the fault out; clear nil means every DC healthy.
	fault, clear func(e *chaosEnv)
	// gone is the DNS address that must leave within drainLimit (0: the
	// default interval*fall + 1 s) and come back after clear, or "".
	gone       string
	drainLimit time.Duration
	faultFor   time.Duration // 0: 4 s (30 s long)
	// pending names the fix the GET assertions wait for; without
	// CHAOS_STRICT=1 they only log.
	pending string
	// fastGETs asserts the worst GET <= 250 ms during the fault (the
	// proxy's latency-following try and dial timeouts, retries on 5xx).
	fastGETs bool
	// failsGETs: nothing may serve during this fault, so failed GETs are
	// expected (every DC failing).
	failsGETs bool
	// noRestore: the restore is not asserted (flap damping may hold it).
	noRestore bool
	// probesOnly: DNS load only, so no request reaches the proxy and
	// only probes can take the DC out.
	probesOnly bool
	check      func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time)
}

// chaosSlack is the scheduling slack added to the detection bound.
const chaosSlack = time.Second

// flapConfig has the probe defaults of config.example.yaml (interval 1s,
// timeout 800ms, the default flap window) and a short flap_hold, so that a
// scenario need not wait a minute for the restore.
func flapConfig(s string) string {
	return strings.Replace(s, "health:\n  interval: 500ms\n  timeout: 400ms\n", "health:\n  interval: 1s\n  timeout: 800ms\n  flap_hold: 10s\n", 1)
}

// wantFlapping checks that the status API gives east's api a reason that
// says "flapping" (the page and explain show the same reason).
func wantFlapping(e *chaosEnv) {
	for _, svc := range e.g.status().Services {
		for _, dc := range svc.Datacenters {
			if svc.Name == "api" && dc.Name == "east" && !strings.Contains(dc.Reason, "flapping: ") {
				e.t.Errorf("east's reason %q does not say flapping", dc.Reason)
			}
		}
	}
}

func chaosCases() []chaosCase {
	east := func(m simulator.FaultMode) func(e *chaosEnv) {
		return func(e *chaosEnv) { e.fleet.Datacenter("east").SetFault(simulator.Fault{Mode: m}) }
	}
	both := func(m simulator.FaultMode) func(e *chaosEnv) {
		return func(e *chaosEnv) {
			for _, dc := range e.fleet.Datacenters() {
				dc.SetFault(simulator.Fault{Mode: m})
			}
		}
	}
	return []chaosCase{
		{name: "refused", fault: east(simulator.Refuse), gone: eastAddr},
		{name: "hang", fault: east(simulator.Hang), gone: eastAddr, fastGETs: true},
		{name: "blackhole", fault: east(simulator.Blackhole), gone: eastAddr, fastGETs: true},
		// The same with DNS load only: no traffic reaches the proxy, so
		// probes alone take the DC out of DNS.
		{name: "refused, probes alone", fault: east(simulator.Refuse), gone: eastAddr, probesOnly: true},
		{name: "hang, probes alone", fault: east(simulator.Hang), gone: eastAddr, probesOnly: true},
		{name: "blackhole, probes alone", fault: east(simulator.Blackhole), gone: eastAddr, probesOnly: true},
		{name: "slow", gone: eastAddr, fastGETs: true, fault: func(e *chaosEnv) {
			e.fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Slow, Delay: 2 * time.Second})
		}},
		{name: "500", fault: east(simulator.Error500), gone: eastAddr, fastGETs: true},
		{
			// Defaults of config.example.yaml (interval 1s, timeout 800ms,
			// the default flap window); a short flap_hold so the scenario
			// need not wait a minute for the restore.
			name: "flapping", gone: eastAddr, drainLimit: 10 * time.Second, faultFor: 12 * time.Second,
			fastGETs: true, noRestore: true,
			cfg: flapConfig,
			fault: func(e *chaosEnv) {
				e.fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Flap, FlapPeriod: time.Second})
			},
			check: func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time) { wantFlapping(e) },
		},
		{
			name: "flapping, probes alone", gone: eastAddr, drainLimit: 10 * time.Second, faultFor: 12 * time.Second,
			probesOnly: true, noRestore: true, cfg: flapConfig,
			fault: func(e *chaosEnv) {
				e.fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Flap, FlapPeriod: time.Second})
			},
			check: func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time) { wantFlapping(e) },
		},
		{
			name: "one of two endpoints, min_healthy 1",
			cfg: func(s string) string {
				return strings.Replace(s, "    policy: failover\n", "    policy: failover\n    min_healthy: 1\n", 1)
			},
			fault: func(e *chaosEnv) {
				e.fleet.Datacenter("east").Servers()[0].SetFault(simulator.Fault{Mode: simulator.Refuse})
			},
			check: func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time) {
				if n := l.answersWithout(eastAddr, time.Time{}, time.Time{}); n > 0 {
					e.t.Errorf("%d DNS answers without east while one of its endpoints was healthy", n)
				}
			},
		},
		{
			name: "every DC failing, serve_all", fault: both(simulator.Refuse), failsGETs: true,
			check: func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time) {
				// Documented: serve_all answers as if every DC were
				// healthy, so under failover DNS still names east.
				if n := l.answersWithout(eastAddr, clearedAt.Add(-time.Second), clearedAt); n > 0 {
					e.t.Errorf("serve_all: %d answers in the fault's last second lack east", n)
				}
				if st := e.g.status(); st.Services[0].State != "serving_all" {
					e.t.Errorf("serve_all: service state %q, want serving_all", st.Services[0].State)
				}
			},
		},
		{
			name: "every DC failing, refuse", fault: both(simulator.Refuse), failsGETs: true,
			cfg: func(s string) string {
				return strings.Replace(s, "    policy: failover\n", "    policy: failover\n    when_all_down: refuse\n", 1)
			},
			check: func(e *chaosEnv, l *chaosLoad, faultAt, clearedAt time.Time) {
				// Documented: refuse answers nothing: NODATA from DNS, a
				// quick 503 from the proxy.
				if n := l.answersWith(clearedAt.Add(-time.Second), clearedAt); n > 0 {
					e.t.Errorf("refuse: %d DNS answers with addresses in the fault's last second", n)
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				for _, s := range l.gets {
					if s.at.After(clearedAt.Add(-time.Second)) && s.at.Before(clearedAt) && s.err != "status 503" {
						e.t.Errorf("refuse: GET at the end of the fault: %q after %s, want status 503", s.err, s.took)
						return
					}
				}
			},
		},
	}
}

// TestChaos runs the scenarios one after the other, and, not being
// parallel, before the package's parallel tests start: on two cores their
// latency figures would otherwise be noise, and their load would starve
// the neighbours' probes.
func TestChaos(t *testing.T) {
	for _, tc := range chaosCases() {
		t.Run(tc.name, func(t *testing.T) { runChaos(t, tc) })
	}
}

func chaosDurations(tc chaosCase) (faultFor, recoverFor time.Duration) {
	faultFor, recoverFor = 3*time.Second, 2*time.Second
	if tc.faultFor > 0 {
		faultFor = tc.faultFor
	}
	if *chaosLong {
		faultFor, recoverFor = max(faultFor, 30*time.Second), 10*time.Second
	}
	return faultFor, recoverFor
}

func startChaos(t *testing.T, edit func(string) string) *chaosEnv {
	e := &chaosEnv{t: t, fleet: startFleet(t), admin: freePort(t), httpAddr: freePort(t), dnsAddr: freePort(t)}
	// A short idle_timeout reaps the proxy's idle upstream connections
	// (up to 256 an endpoint for 90 s by default) before the leak check.
	cfg := opsConfig(t, e.fleet, e.admin, e.httpAddr, e.dnsAddr, "proxy:\n  access_log: false\n  idle_timeout: 1s\n")
	if edit != nil {
		cfg = edit(cfg)
	}
	e.g = startGSLB(t, cfg, e.admin)
	return e
}

// warm sends a second of load and returns the process's usage once it is
// idle again: the baseline of the leak check, with the pools filled.
func (e *chaosEnv) warm() usage {
	l := startLoad(e.t, e.httpAddr, e.dnsAddr, loadRates())
	time.Sleep(500 * time.Millisecond)
	l.stopLoad()
	for _, dc := range e.fleet.Datacenters() {
		for _, s := range dc.Endpoints() {
			s.ResetCounters()
		}
	}
	time.Sleep(200 * time.Millisecond)
	return processUsage(e.t, e.g)
}

func runChaos(t *testing.T, tc chaosCase) {
	e := startChaos(t, tc.cfg)
	before := e.warm()
	faultFor, recoverFor := chaosDurations(tc)

	r := loadRates()
	if tc.probesOnly {
		r = rates{dns: loadRates().dns}
	}
	l := startLoad(t, e.httpAddr, e.dnsAddr, r)
	time.Sleep(500 * time.Millisecond)
	faultAt := time.Now()
	tc.fault(e)
	time.Sleep(faultFor)
	if tc.check != nil {
		tc.check(e, l, faultAt, time.Now())
	}
	clearedAt := time.Now()
	if tc.clear != nil {
		tc.clear(e)
	} else {
		for _, dc := range e.fleet.Datacenters() {
			dc.SetFault(simulator.Fault{})
		}
	}
	time.Sleep(recoverFor)
	l.stopLoad()

	f := l.figures(tc.gone, faultAt, clearedAt)
	t.Logf("figures (%s): %s", tc.name, f)
	if len(f.firstErrors) > 0 {
		t.Logf("first errors: %q", f.firstErrors)
	}
	after := noGrowth(t, e.g, before)
	t.Logf("usage: before %s, after %s", before, after)
	postIDsOnce(t, e.fleet)

	if f.queriesFailed > 0 {
		t.Errorf("%d of %d DNS queries failed", f.queriesFailed, f.queries)
	}
	if tc.gone != "" {
		limit := tc.drainLimit
		if limit == 0 {
			limit = 500*time.Millisecond*3 + time.Second // interval * fall + 1 s
		}
		// The bound is asserted with a second of slack for scheduling on
		// a loaded machine (go test ./... on 2 cores with -race slipped
		// the probes' timers by up to 0.4 s); the exact bound is asserted
		// with CHAOS_STRICT=1 and reported otherwise.
		switch {
		case f.drain < 0 || f.drain > limit+chaosSlack:
			t.Errorf("DNS off the failed DC after %s, want within %s (+%s slack)", fmtDur(f.drain), limit, chaosSlack)
		case f.drain > limit:
			pendingCheck(t, "scheduling slack on a loaded machine", false, "DNS off the failed DC after %s, over the bound %s", fmtDur(f.drain), limit)
		}
		if !tc.noRestore && f.restore < 0 {
			t.Errorf("DNS did not answer with the DC within %s of its recovery", recoverFor)
		}
	}
	if tc.failsGETs {
		return
	}
	pendingCheck(t, tc.pending, f.getsFailed == 0, "%d of %d GETs failed while a DC was healthy (want 0)", f.getsFailed, f.gets)
	if tc.pending != "" {
		pendingCheck(t, tc.pending, f.worstGET <= 250*time.Millisecond, "worst GET %s (want <= 250ms)", f.worstGET.Round(time.Millisecond))
	}
	if tc.fastGETs {
		// The target is 250 ms, asserted with CHAOS_STRICT=1. Without it a
		// looser bound still catches the proxy waiting for try_timeout or
		// dial_timeout (seconds), without failing on a machine that other
		// work stalls for half a second (seen once: 548 ms in the 500
		// scenario, with POSTs and the DNS drain delayed alike).
		limit := time.Second
		if chaosStrict() {
			limit = 250 * time.Millisecond
		}
		if f.worstGET > limit {
			t.Errorf("worst GET %s (want <= %s)", f.worstGET.Round(time.Millisecond), limit)
		} else if f.worstGET > 250*time.Millisecond {
			t.Logf("worst GET %s, over the 250ms target (asserted with CHAOS_STRICT=1)", f.worstGET.Round(time.Millisecond))
		}
	}
}

// pendingCheck fails the test unless ok, or only logs when the assertion
// waits for pending and CHAOS_STRICT is not 1.
func pendingCheck(t *testing.T, pending string, ok bool, format string, args ...any) {
	t.Helper()
	switch {
	case ok:
	case pending != "" && !chaosStrict():
		t.Logf("PENDING ("+pending+"; CHAOS_STRICT=1 asserts it): "+format, args...)
	default:
		t.Errorf(format, args...)
	}
}

// answersWithout counts the successful DNS answers in [from, to) (zero
// times: all) that lack addr.
func (l *chaosLoad) answersWithout(addr string, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.dnss {
		if s.err == "" && inSpan(s.at, from, to) && !slices.Contains(s.answer, addr) {
			n++
		}
	}
	return n
}

// answersWith counts the DNS answers in [from, to) that hold any address.
func (l *chaosLoad) answersWith(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.dnss {
		if s.err == "" && inSpan(s.at, from, to) && len(s.answer) > 0 {
			n++
		}
	}
	return n
}

func inSpan(at, from, to time.Time) bool {
	return (from.IsZero() || !at.Before(from)) && (to.IsZero() || at.Before(to))
}

// TestChaosReloadStorm sends a SIGHUP every second under load: no request
// fails, and goroutines and open files do not grow.
func TestChaosReloadStorm(t *testing.T) {
	e := startChaos(t, nil)
	before := e.warm()
	faultFor, _ := chaosDurations(chaosCase{})
	if *chaosLong {
		faultFor = time.Minute
	}
	l := startLoad(t, e.httpAddr, e.dnsAddr, loadRates())
	n := 0
	for end := time.Now().Add(faultFor); time.Now().Before(end); n++ {
		if err := e.g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	l.stopLoad()
	f := l.figures("", time.Time{}, time.Time{})
	t.Logf("figures: %d reloads; %s", n, f)
	after := noGrowth(t, e.g, before)
	t.Logf("usage: before %s, after %s", before, after)
	if got := strings.Count(e.g.stderr.String(), "configuration reloaded"); got < n-1 {
		t.Errorf("%d reloads logged for %d SIGHUPs", got, n)
	}
	if f.getsFailed+f.postsFailed+f.queriesFailed > 0 {
		t.Errorf("failed during the reload storm: %d GETs, %d POSTs, %d DNS queries; first: %q", f.getsFailed, f.postsFailed, f.queriesFailed, f.firstErrors)
	}
	postIDsOnce(t, e.fleet)
}

// TestChaosSigkillAndStart kills the process under load with a DC drained,
// and starts it again: the drain is restored, and it answers only after its
// first probe round.
func TestChaosSigkillAndStart(t *testing.T) {
	e := startChaos(t, nil)
	if code, out, errOut := cli(t, e.admin, "drain", "east", "-reason", "chaos", "-token", testToken); code != 0 {
		t.Fatalf("drain: %d %s %s", code, out, errOut)
	}
	l := startLoad(t, e.httpAddr, e.dnsAddr, loadRates())
	time.Sleep(time.Second)
	killAt := time.Now()
	if err := e.g.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.g.done
	e.g = startGSLBFile(t, e.g.cfgPath, e.admin)
	readyAfter := time.Since(killAt)
	if s := e.g.status().dcState("api", "east"); s != "drained" {
		t.Errorf("after SIGKILL and start east is %q, want drained", s)
	}
	before := processUsage(t, e.g)
	time.Sleep(2 * time.Second)
	l.stopLoad()
	f := l.figures("", time.Time{}, time.Time{})
	t.Logf("figures: serving again %s after the kill; %s", readyAfter.Round(10*time.Millisecond), f)
	// Nothing goes to the drained DC, before or after the restart.
	for _, s := range e.fleet.Datacenter("east").Servers() {
		if n := len(s.RequestIDs()); n > 0 {
			t.Errorf("%s got %d POSTs while drained", s.Name(), n)
		}
	}
	if n := l.answersWithout(westAddr, time.Time{}, time.Time{}); n > 0 {
		t.Errorf("%d DNS answers without west", n)
	}
	if n := l.answersWith(time.Time{}, time.Time{}); n != l.answersWithout(eastAddr, time.Time{}, time.Time{}) {
		t.Errorf("DNS answered with drained east")
	}
	after := noGrowth(t, e.g, before)
	t.Logf("usage of the new process: after start %s, after load %s", before, after)
	postIDsOnce(t, e.fleet)
}

// TestChaosSigterm: SIGTERM under load lets the requests in flight finish,
// and the process exits cleanly.
func TestChaosSigterm(t *testing.T) {
	e := startChaos(t, nil)
	// Slow enough that requests are in flight at the signal, not so slow
	// that probes (timeout 400 ms) fail.
	for _, dc := range e.fleet.Datacenters() {
		dc.SetFault(simulator.Fault{Mode: simulator.Slow, Delay: 250 * time.Millisecond})
	}
	before := processUsage(t, e.g)
	l := startLoad(t, e.httpAddr, e.dnsAddr, loadRates())
	time.Sleep(time.Second)
	termAt := time.Now()
	if err := e.g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.g.done:
	case <-time.After(20 * time.Second):
		t.Fatal("not exited 20 s after SIGTERM")
	}
	exited := time.Since(termAt)
	l.stopLoad()
	f := l.figures("", time.Time{}, time.Time{})
	t.Logf("figures: exited %s after SIGTERM (usage before it: %s); %s", exited.Round(10*time.Millisecond), before, f)
	if st := e.g.cmd.ProcessState; st == nil || !st.Success() {
		t.Errorf("exit after SIGTERM: %v", st)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	inflight, failed := 0, 0
	for _, s := range slices.Concat(l.gets, l.posts) {
		// Sent before the signal, and answered after it: in flight.
		if s.at.Before(termAt.Add(-20*time.Millisecond)) && s.at.Add(s.took).After(termAt) {
			inflight++
			if s.err != "" {
				failed++
				t.Errorf("request in flight at SIGTERM failed: %s", s.err)
			}
		}
	}
	t.Logf("%d requests in flight at SIGTERM, %d failed", inflight, failed)
	if inflight == 0 {
		t.Error("no request was in flight at SIGTERM: the scenario tested nothing")
	}
}

// TestChaosSoak (only with -soak D): load on both front doors for D while
// east fails (refused) and recovers every 30 s; zero failed GETs, no POST
// on two backends, and RSS, goroutines and open files at the end within
// the noise of the start.
func TestChaosSoak(t *testing.T) {
	if *soakFor <= 0 {
		t.Skip("soak runs only with -soak DURATION (e.g. go test ./e2e/ -run ChaosSoak -timeout 0 -args -soak 10m)")
	}
	e := startChaos(t, nil)
	before := e.warm()
	rssBefore := rssKB(t, e.g)
	l := startLoad(t, e.httpAddr, e.dnsAddr, loadRates())
	east := e.fleet.Datacenter("east")
	cycles, rssWarm := 0, 0
	for end := time.Now().Add(*soakFor); time.Now().Before(end); cycles++ {
		east.SetFault(simulator.Fault{Mode: simulator.Refuse})
		time.Sleep(min(30*time.Second, time.Until(end)))
		east.SetFault(simulator.Fault{})
		time.Sleep(min(30*time.Second, max(time.Until(end), 3*time.Second)))
		if cycles == 0 {
			rssWarm = rssKB(t, e.g)
		}
	}
	l.stopLoad()
	f := l.figures("", time.Time{}, time.Time{})
	after := noGrowth(t, e.g, before)
	rssAfter := rssKB(t, e.g)
	t.Logf("soak %s, %d fail/recover cycles: %s", *soakFor, cycles, f)
	t.Logf("usage: start %s, RSS %d KiB (%d KiB after the first cycle); end %s, RSS %d KiB", before, rssBefore, rssWarm, after, rssAfter)
	if f.getsFailed > 0 || f.queriesFailed > 0 {
		t.Errorf("%d GETs and %d DNS queries failed; first: %q", f.getsFailed, f.queriesFailed, f.firstErrors)
	}
	// The race detector's shadow memory makes RSS noisy, and grows over
	// the first minute; a leak per request over minutes shows as a
	// multiple of the RSS after the first cycle.
	if rssAfter > rssWarm*3/2+50<<10 {
		t.Errorf("RSS grew from %d KiB after the first cycle to %d KiB", rssWarm, rssAfter)
	}
	postIDsOnce(t, e.fleet)
}

// rssKB reads the process's resident set size from /proc/PID/status.
func rssKB(t *testing.T, g *gslb) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
