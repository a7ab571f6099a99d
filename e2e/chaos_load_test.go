package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// rates is the open-loop load of a chaos scenario, per second.
type rates struct{ get, post, dns int }

// chaosLoad sends steady open-loop load to both front doors: GETs and
// POSTs (each POST with a unique X-Request-Id, which the simulator records)
// to the HTTP door, A queries to the DNS door. Every request is sent on its
// own schedule, whatever the previous ones do, as real clients would.
type chaosLoad struct {
	httpAddr, dnsAddr string
	client            *http.Client
	stop              chan struct{}
	wg                sync.WaitGroup
	seq               atomic.Int64
	prefix            string

	mu    sync.Mutex
	gets  []sample
	posts []sample
	dnss  []dnsSample
}

type sample struct {
	at   time.Time
	took time.Duration
	err  string // "" when it succeeded
	id   string // POST's X-Request-Id
}

type dnsSample struct {
	at     time.Time
	err    string
	answer []string // the A records, sorted
}

func startLoad(t *testing.T, httpAddr, dnsAddr string, r rates) *chaosLoad {
	l := &chaosLoad{
		httpAddr: httpAddr, dnsAddr: dnsAddr,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second,
		}},
		stop:   make(chan struct{}),
		prefix: strings.ReplaceAll(t.Name(), "/", "-"),
	}
	l.every(r.get, l.get)
	l.every(r.post, l.post)
	l.every(r.dns, l.query)
	return l
}

// every calls f rate times a second, each call in its own goroutine, until
// stopLoad; stopLoad waits for the calls in flight.
func (l *chaosLoad) every(rate int, f func()) {
	if rate <= 0 {
		return
	}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				l.wg.Go(f)
			}
		}
	})
}

func (l *chaosLoad) do(method string) sample {
	var body io.Reader
	path := "/echo"
	id := ""
	if method == http.MethodPost {
		id = l.prefix + "-" + strconv.FormatInt(l.seq.Add(1), 10)
		body = strings.NewReader(`{"name":"chaos"}`)
		path = "/v2/clusters"
	}
	req, _ := http.NewRequest(method, "http://"+l.httpAddr+path, body)
	req.Host = "api.coopr.example.com"
	if id != "" {
		req.Header.Set("X-Request-Id", id)
		req.Header.Set("Content-Type", "application/json")
	}
	s := sample{at: time.Now(), id: id}
	resp, err := l.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode/100 != 2 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	s.took = time.Since(s.at)
	if err != nil {
		s.err = err.Error()
	}
	return s
}

func (l *chaosLoad) get() {
	s := l.do(http.MethodGet)
	l.mu.Lock()
	l.gets = append(l.gets, s)
	l.mu.Unlock()
}

func (l *chaosLoad) post() {
	s := l.do(http.MethodPost)
	l.mu.Lock()
	l.posts = append(l.posts, s)
	l.mu.Unlock()
}

func (l *chaosLoad) query() {
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("api.coopr.example.com.", dns.TypeA)
	m.RecursionDesired = false
	s := dnsSample{at: time.Now()}
	r, _, err := c.Exchange(m, l.dnsAddr)
	switch {
	case err != nil:
		s.err = err.Error()
	case r.Rcode != dns.RcodeSuccess:
		s.err = dns.RcodeToString[r.Rcode]
	default:
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				s.answer = append(s.answer, a.A.String())
			}
		}
		slices.Sort(s.answer)
	}
	l.mu.Lock()
	l.dnss = append(l.dnss, s)
	l.mu.Unlock()
}

// stopLoad stops sending and waits for every request in flight.
func (l *chaosLoad) stopLoad() {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

// figures is what a scenario reports.
type figures struct {
	gets, getsFailed, posts, postsFailed, queries, queriesFailed int
	worstGET, worstPOST                                          time.Duration
	drain, restore                                               time.Duration // -1: not seen
	firstErrors                                                  []string
}

func (f figures) String() string {
	return fmt.Sprintf("GET %d (failed %d, worst %s)  POST %d (failed %d, worst %s)  DNS %d (failed %d)  drain %s  restore %s",
		f.gets, f.getsFailed, f.worstGET.Round(time.Millisecond), f.posts, f.postsFailed, f.worstPOST.Round(time.Millisecond),
		f.queries, f.queriesFailed, fmtDur(f.drain), fmtDur(f.restore))
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

// figures sums the samples. drain is from faultAt to the first DNS answer
// without gone from which on no answer has it before clearedAt; restore is
// from clearedAt to the first answer with it again. Either is -1 when not
// seen (or when gone is "").
func (l *chaosLoad) figures(gone string, faultAt, clearedAt time.Time) figures {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := figures{drain: -1, restore: -1}
	add := func(ss []sample, n, failed *int, worst *time.Duration) {
		for _, s := range ss {
			*n++
			*worst = max(*worst, s.took)
			if s.err != "" {
				*failed++
				if len(f.firstErrors) < 5 {
					f.firstErrors = append(f.firstErrors, s.err)
				}
			}
		}
	}
	add(l.gets, &f.gets, &f.getsFailed, &f.worstGET)
	add(l.posts, &f.posts, &f.postsFailed, &f.worstPOST)
	ds := slices.Clone(l.dnss)
	slices.SortFunc(ds, func(a, b dnsSample) int { return a.at.Compare(b.at) })
	for _, s := range ds {
		f.queries++
		if s.err != "" {
			f.queriesFailed++
			if len(f.firstErrors) < 5 {
				f.firstErrors = append(f.firstErrors, "dns: "+s.err)
			}
		}
	}
	if gone == "" || faultAt.IsZero() {
		return f
	}
	for _, s := range ds {
		if s.err != "" || s.at.Before(faultAt) {
			continue
		}
		has := slices.Contains(s.answer, gone)
		if !clearedAt.IsZero() && !s.at.Before(clearedAt) {
			if has && f.restore < 0 {
				f.restore = s.at.Sub(clearedAt)
			}
			continue
		}
		switch {
		case has:
			f.drain = -1 // back again: the drain is later
		case f.drain < 0:
			f.drain = s.at.Sub(faultAt)
		}
	}
	return f
}

// postIDsOnce checks that no POST id reached two backends.
func postIDsOnce(t *testing.T, fleet *simulator.Fleet) (seen int) {
	t.Helper()
	where := map[string]string{}
	for _, dc := range fleet.Datacenters() {
		for _, s := range dc.Endpoints() {
			for _, id := range s.RequestIDs() {
				seen++
				if prev, ok := where[id]; ok {
					t.Errorf("POST %s reached %s and %s", id, prev, s.Name())
				}
				where[id] = s.Name()
			}
		}
	}
	return seen
}

// usage is what the leak checks compare: the process's goroutines (from
// go_goroutines on /metrics) and open files (/proc/PID/fd).
type usage struct{ goroutines, fds int }

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %d open files", u.goroutines, u.fds)
}

func processUsage(t *testing.T, g *gslb) usage {
	t.Helper()
	var u usage
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			u.goroutines = int(n)
		}
	}
	if u.goroutines == 0 {
		t.Fatal("no go_goroutines on /metrics")
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("open files: %v", err)
	}
	u.fds = len(fds)
	return u
}

// sockets lists the process's TCP sockets (ss), to say what a leak of
// open files holds.
func sockets(pid int) string {
	out, err := exec.Command("ss", "-tanp").Output()
	if err != nil {
		return "ss: " + err.Error()
	}
	var b strings.Builder
	n := 0
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "pid="+strconv.Itoa(pid)+",") {
			if n++; n <= 30 {
				b.WriteString(line)
			}
		}
	}
	fmt.Fprintf(&b, "(%d TCP sockets)", n)
	return b.String()
}

// Growth beyond these, once the load has stopped and the faults cleared,
// is a leak: a leak per request or per reload shows in the hundreds.
const (
	leakGoroutines = 25
	leakFDs        = 20
)

// noGrowth waits up to 10 s for the process to come back to within the
// noise of before, and fails the test if it does not.
func noGrowth(t *testing.T, g *gslb, before usage) usage {
	t.Helper()
	var after usage
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = processUsage(t, g)
		if after.goroutines <= before.goroutines+leakGoroutines && after.fds <= before.fds+leakFDs {
			return after
		}
		if time.Now().After(deadline) {
			t.Errorf("leak: before %s, after %s\n%s", before, after, sockets(g.cmd.Process.Pid))
			return after
		}
		time.Sleep(200 * time.Millisecond)
	}
}
