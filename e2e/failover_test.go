package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// fastConfig probes every second with a fast re-probe series, as issue 6
// describes: fall 3 confirmed at 200 ms intervals.
func fastConfig(t *testing.T, fleet *simulator.Fleet, admin, httpAddr, dnsAddr string) string {
	cfg := opsConfig(t, fleet, admin, httpAddr, dnsAddr, "proxy:\n  access_log: false\n  slow_start: 2s\n")
	return strings.Replace(cfg, "health:\n  interval: 500ms\n  timeout: 400ms\n", "health:\n  interval: 1s\n  timeout: 800ms\n  fast_interval: 200ms\n", 1)
}

func dnsAnswer(c *dns.Client, server string) string {
	m := new(dns.Msg)
	m.SetQuestion("api.coopr.example.com.", dns.TypeA)
	m.RecursionDesired = false
	r, _, err := c.Exchange(m, server)
	if err != nil || len(r.Answer) == 0 {
		return ""
	}
	return r.Answer[0].(*dns.A).A.String()
}

// TestFailoverAtTheLimit kills east under proxy load and watches both front
// doors: no request fails, DNS flips soon after the kill, and east gets
// traffic back soon after it returns.
func TestFailoverAtTheLimit(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr, dnsAddr := freePort(t), freePort(t), freePort(t)
	startGSLB(t, fastConfig(t, fleet, admin, httpAddr, dnsAddr), admin)
	east := fleet.Datacenter("east")

	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    atomic.Int64
		servedBy  []string // DC per request, in send order, with times
		sentAt    []time.Time
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // 200 req/s, open loop
		defer tick.Stop()
		var inner sync.WaitGroup
		for !stop.Load() {
			<-tick.C
			inner.Go(func() {
				req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
				req.Host = "api.coopr.example.com"
				start := time.Now()
				resp, err := client.Do(req)
				d := time.Since(start)
				dc := ""
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					dc = resp.Header.Get("X-Coopr-GSLB-DC")
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
				}
				mu.Lock()
				latencies = append(latencies, d)
				servedBy = append(servedBy, dc)
				sentAt = append(sentAt, start)
				mu.Unlock()
			})
		}
		inner.Wait()
	})

	c := &dns.Client{Timeout: time.Second}
	eventually(t, 5*time.Second, "DNS answers east", func() bool { return dnsAnswer(c, dnsAddr) == "192.0.2.10" })
	time.Sleep(time.Second)

	east.SetFault(simulator.Fault{Mode: simulator.Refuse})
	killed := time.Now()
	flip := eventually(t, 10*time.Second, "DNS answer flips to west", func() bool { return dnsAnswer(c, dnsAddr) == "192.0.2.20" })
	time.Sleep(2 * time.Second)

	east.SetFault(simulator.Fault{})
	restored := time.Now()
	back := eventually(t, 10*time.Second, "DNS answer returns to east", func() bool { return dnsAnswer(c, dnsAddr) == "192.0.2.10" })
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	sorted := append([]time.Duration(nil), latencies...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	worst := sorted[len(sorted)-1]
	p99 := sorted[len(sorted)*99/100]
	firstEast := time.Duration(0)
	for i, dc := range servedBy {
		if dc == "east" && sentAt[i].After(restored) {
			firstEast = sentAt[i].Sub(restored)
			break
		}
	}
	t.Logf("%d requests, %d failed; worst %s, p99 %s; DNS flipped %s after the kill; back %s after restart; first proxied request to east %s after restart",
		len(latencies), failed.Load(), worst, p99, flip.Round(time.Millisecond), back.Round(time.Millisecond), firstEast.Round(time.Millisecond))
	_ = killed
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the failover", failed.Load())
	}
	// The targets (worst request < 50 ms, DNS flip < 1 s, failback within
	// rise x fast_interval + 1 s) are measured by bench/failover.sh; on a
	// shared machine with the race detector on, only generous bounds hold.
	if worst > 2*time.Second {
		t.Errorf("worst request took %s", worst)
	}
	if flip > 5*time.Second {
		t.Errorf("DNS flipped %s after the kill", flip)
	}
	if firstEast == 0 || firstEast > 5*time.Second {
		t.Errorf("east took traffic again %s after it came back", firstEast)
	}
}

// TestOneDroppedProbeFlipsNothing drops exactly one probe of every east
// endpoint: hysteresis holds and no endpoint or DC goes down.
func TestOneDroppedProbeFlipsNothing(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, fastConfig(t, fleet, admin, "", ""), admin)
	for _, s := range fleet.Datacenter("east").Endpoints() {
		s.SetFault(simulator.Fault{FailNext: 1})
	}
	time.Sleep(4 * time.Second) // several intervals, enough for any fast series to end
	for _, s := range fleet.Datacenter("east").Endpoints() {
		if f := s.Fault(); f.FailNext != 0 {
			t.Fatalf("%s still has %d probes to fail: the probe was never dropped", s.Addr(), f.FailNext)
		}
	}
	for _, ev := range g.stateEvents() {
		if ev["kind"] == "endpoint_down" || ev["kind"] == "dc_down" {
			t.Errorf("a single dropped probe flipped something: %v", ev)
		}
	}
}
