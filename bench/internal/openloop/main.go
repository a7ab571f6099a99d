// Command openloop drives the failover benchmark (bench/failover.sh): an
// open-loop HTTP load at a fixed rate, a DNS poller, or both at once, and
// afterwards the analysis of what they recorded around a fault of the
// primary datacenter (a kill and restart, or a hang, black hole or 500s
// injected and healed) and its end; -kill and -restart take those times.
//
//	openloop run -url http://127.0.0.1:8080/v2/clusters -host api.example.com -rate 500 \
//	    -dns 127.0.0.1:8053 -name api.example.com -poll 10ms -duration 20s -out DIR
//	openloop analyze -out DIR -kill UNIX_NS -restart UNIX_NS [-primary dc1 -backup dc2 \
//	    -primary-addr 192.0.2.1 -backup-addr 192.0.2.2]
//
// The load is open-loop: request i is sent at start + i/rate whether or not
// earlier requests have answered, each on its own goroutine, so a stalled
// proxy shows up as latency and failures rather than as a lower rate (wrk's
// closed loop would wait and understate the tail). Each request records its
// scheduled and actual send time, latency, status and the datacenter that
// served it (the simulator's X-Coopr-DC header). The DNS poller asks one A
// query every -poll and records the answer. Times are wall-clock Unix
// nanoseconds, so they line up with the kill and restart times the script
// takes with date +%s%N.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("openloop: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: openloop run|analyze [flags]")
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "analyze":
		err = analyzeCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want run or analyze)", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// httpRecord is one request of the open-loop load.
type httpRecord struct {
	sched, sent int64 // Unix ns: when it was due, when it went out
	lat         int64 // ns from sent to the end of the body (or the error)
	status      int   // 0 on a transport error
	dc          string
	err         string
}

// dnsRecord is one query of the DNS poller.
type dnsRecord struct {
	sent, rtt int64 // Unix ns, ns
	rcode     int   // -1 on a timeout or socket error
	addrs     string
	ttl       int64 // the smallest A TTL, -1 without one
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET at -rate; empty for no HTTP load")
	host := fs.String("host", "", "Host header of the HTTP requests (default: the URL's)")
	rate := fs.Float64("rate", 500, "HTTP requests per second")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of one HTTP request")
	server := fs.String("dns", "", "DNS server host:port to poll; empty for no polling")
	name := fs.String("name", "", "name whose A record is polled")
	poll := fs.Duration("poll", 10*time.Millisecond, "time between DNS queries")
	dnsTimeout := fs.Duration("dns-timeout", 500*time.Millisecond, "bound of one DNS query")
	duration := fs.Duration("duration", 20*time.Second, "how long to run")
	out := fs.String("out", ".", "directory for http.tsv and dns.tsv")
	fs.Parse(args)
	if *url == "" && *server == "" {
		return errors.New("run: give -url, -dns or both")
	}
	if *server != "" && *name == "" {
		return errors.New("run: -dns needs -name")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var wg sync.WaitGroup
	var httpRecs []httpRecord
	var dnsRecs []dnsRecord
	if *url != "" {
		wg.Go(func() { httpRecs = loadHTTP(ctx, *url, *host, *rate, *timeout) })
	}
	if *server != "" {
		wg.Go(func() { dnsRecs = pollDNS(ctx, *server, dns.Fqdn(*name), *poll, *dnsTimeout) })
	}
	fmt.Println("started")
	wg.Wait()

	if *url != "" {
		if err := writeHTTP(filepath.Join(*out, "http.tsv"), httpRecs); err != nil {
			return err
		}
	}
	if *server != "" {
		if err := writeDNS(filepath.Join(*out, "dns.tsv"), dnsRecs); err != nil {
			return err
		}
	}
	return nil
}

// loadHTTP sends GET url at a fixed rate until ctx ends, then waits for the
// requests in flight (each bounded by timeout) and returns every record.
func loadHTTP(ctx context.Context, url, host string, rate float64, timeout time.Duration) []httpRecord {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: timeout}

	period := time.Duration(float64(time.Second) / rate)
	var (
		mu   sync.Mutex
		recs = make([]httpRecord, 0, int(rate*60))
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * period)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			r := doHTTP(client, url, host)
			r.sched = due.UnixNano()
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(recs, func(a, b httpRecord) int { return int(a.sched - b.sched) })
	return recs
}

func doHTTP(client *http.Client, url, host string) httpRecord {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return httpRecord{sent: time.Now().UnixNano(), err: err.Error()}
	}
	if host != "" {
		req.Host = host
	}
	t0 := time.Now()
	rec := httpRecord{sent: t0.UnixNano()}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rec.status = resp.StatusCode
		rec.dc = resp.Header.Get("X-Coopr-DC")
	}
	rec.lat = int64(time.Since(t0))
	if err != nil {
		rec.err = errKind(err)
	}
	return rec
}

// errKind shortens a transport error to a word for the record.
func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timeout"
	}
	return "error"
}

// pollDNS asks name's A record every interval until ctx ends, one query at
// a time (a slow answer delays the next poll).
func pollDNS(ctx context.Context, server, name string, interval, timeout time.Duration) []dnsRecord {
	c := &dns.Client{Net: "udp", Timeout: timeout}
	var recs []dnsRecord
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.RecursionDesired = false
		t0 := time.Now()
		resp, _, err := c.Exchange(m, server)
		rec := dnsRecord{sent: t0.UnixNano(), rtt: int64(time.Since(t0)), rcode: -1, ttl: -1}
		if err == nil {
			rec.rcode = resp.Rcode
			var addrs []string
			for _, rr := range resp.Answer {
				if a, ok := rr.(*dns.A); ok {
					addrs = append(addrs, a.A.String())
					if rec.ttl < 0 || int64(a.Hdr.Ttl) < rec.ttl {
						rec.ttl = int64(a.Hdr.Ttl)
					}
				}
			}
			slices.Sort(addrs)
			rec.addrs = strings.Join(addrs, ",")
		}
		recs = append(recs, rec)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	return recs
}

func writeHTTP(path string, recs []httpRecord) error {
	return writeLines(path, len(recs), func(w *bufio.Writer, i int) {
		r := recs[i]
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%s\t%s\n", r.sched, r.sent, r.lat, r.status, dash(r.dc), dash(r.err))
	})
}

func writeDNS(path string, recs []dnsRecord) error {
	return writeLines(path, len(recs), func(w *bufio.Writer, i int) {
		r := recs[i]
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%d\n", r.sent, r.rtt, r.rcode, dash(r.addrs), r.ttl)
	})
}

func writeLines(path string, n int, line func(*bufio.Writer, int)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		line(w, i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func undash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// readTSV calls fn with the tab-separated fields of every line of path. A
// missing file is no error: that part of the scenario did not run.
func readTSV(path string, fn func([]string) error) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if err := fn(strings.Split(sc.Text(), "\t")); err != nil {
			return true, fmt.Errorf("%s: %w", path, err)
		}
	}
	return true, sc.Err()
}

func ints(fields []string, n int) ([]int64, error) {
	out := make([]int64, n)
	for i := range n {
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// analyzeCmd prints one line of key=value figures about the scenario
// recorded in -out, given when the primary was killed and restarted. A
// figure that never happened within the run is printed as "-".
func analyzeCmd(args []string) error {
	fs := flag.NewFlagSet("analyze", flag.ExitOnError)
	out := fs.String("out", ".", "directory holding http.tsv and/or dns.tsv")
	kill := fs.Int64("kill", 0, "Unix ns of the fault of the primary (its SIGKILL, or the hang, black hole or 500s injected)")
	restart := fs.Int64("restart", 0, "Unix ns of the fault's end: the primary's restart, or the heal")
	up := fs.Int64("up", 0, "Unix ns at which the restarted or healed primary served again (0: unknown)")
	primary := fs.String("primary", "dc1", "the primary's X-Coopr-DC")
	backup := fs.String("backup", "dc2", "the backup's X-Coopr-DC")
	primaryAddr := fs.String("primary-addr", "192.0.2.1", "the primary's DNS answer")
	backupAddr := fs.String("backup-addr", "192.0.2.2", "the backup's DNS answer")
	warm := fs.Duration("warm", time.Second, "requests sent in the first -warm of the run are left out of the latency figures (connection set-up)")
	fs.Parse(args)
	if *kill == 0 || *restart <= *kill {
		return errors.New("analyze: give -kill and a later -restart")
	}

	var hs []httpRecord
	haveHTTP, err := readTSV(filepath.Join(*out, "http.tsv"), func(f []string) error {
		if len(f) != 6 {
			return fmt.Errorf("want 6 fields, got %d", len(f))
		}
		v, err := ints(f, 4)
		if err != nil {
			return err
		}
		hs = append(hs, httpRecord{sched: v[0], sent: v[1], lat: v[2], status: int(v[3]), dc: undash(f[4]), err: undash(f[5])})
		return nil
	})
	if err != nil {
		return err
	}
	var ds []dnsRecord
	haveDNS, err := readTSV(filepath.Join(*out, "dns.tsv"), func(f []string) error {
		if len(f) != 5 {
			return fmt.Errorf("want 5 fields, got %d", len(f))
		}
		v, err := ints(f, 3)
		if err != nil {
			return err
		}
		ttl, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return err
		}
		ds = append(ds, dnsRecord{sent: v[0], rtt: v[1], rcode: int(v[2]), addrs: undash(f[3]), ttl: ttl})
		return nil
	})
	if err != nil {
		return err
	}

	var kv []string
	add := func(k, v string) { kv = append(kv, k+"="+v) }
	if haveHTTP {
		h := analyzeHTTP(hs, *kill, *restart, *up, *primary, *backup, int64(*warm))
		add("sent", strconv.Itoa(h.sent))
		add("failed", strconv.Itoa(h.failed))
		add("failed_kinds", dash(h.failedKinds))
		add("worst_ms", ms(h.worst))
		add("worst_at", dash(h.worstAt))
		add("p99_ms", ms(h.p99))
		add("p999_ms", ms(h.p999))
		add("worst_fault_ms", ms(h.worstFault))
		add("worst_kill_ms", ms(h.worstKill))
		add("worst_fb_ms", ms(h.worstFB))
		add("worst_calm_ms", ms(h.worstCalm))
		add("lag_fault_ms", ms(h.lagFault))
		add("lag_kill_ms", ms(h.lagKill))
		add("lag_fb_ms", ms(h.lagFB))
		add("lag_calm_ms", ms(h.lagCalm))
		add("to_other_ms", ms(h.toOther))
		add("failback_ms", ms(h.failback))
		add("failback_all_ms", ms(h.failbackAll))
		add("backup_after_up", strconv.Itoa(h.backupAfterUp))
		add("gen_lag_ms", ms(h.genLag))
		add("pre_kill_on_primary", fmt.Sprintf("%.3f", h.preKillPrimary))
		add("pre_kill_failed", strconv.Itoa(h.preKillFailed))
	}
	if haveDNS {
		d := analyzeDNS(ds, *kill, *restart, *primaryAddr, *backupAddr)
		add("dns_queries", strconv.Itoa(d.queries))
		add("dns_errors", strconv.Itoa(d.errors))
		add("dns_flip_ms", ms(d.flip))
		add("dns_flipback_ms", ms(d.flipBack))
		add("dns_wrong", strconv.Itoa(d.wrong))
		add("dns_ttl", d.ttls)
		add("dns_max_gap_ms", ms(d.maxGap))
	}
	if *up > 0 {
		add("primary_up_ms", ms(*up-*restart))
	}
	fmt.Println(strings.Join(kv, " "))
	return nil
}

// none marks a figure that did not happen within the run.
const none = math.MinInt64

func ms(ns int64) string {
	if ns == none {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(ns)/1e6)
}

type httpFigures struct {
	sent, failed int
	failedKinds  string
	worst        int64 // latency of the slowest request
	worstAt      string
	p99, p999    int64
	// The slowest request and the load tool's worst stall (send behind
	// schedule) in windows of the run. "fault": every request in flight at
	// some moment between the fault (-kill) and its end (-restart), those
	// sent just before the fault included, since a hang or a black hole
	// holds them too; "kill": the part of it sent before kill + 2 s, where
	// failover happens; "fb", from 200 ms before to 1 s after the first
	// request the restarted primary served; "calm", every other request
	// after warm-up, outside all of those: the run's own noise floor.
	worstFault, worstKill, worstFB, worstCalm int64
	lagFault, lagKill, lagFB, lagCalm         int64
	toOther                                   int64 // kill -> end of the first success served by the backup
	failback                                  int64 // restart -> end of the first success served by the primary, sent after the restart
	failbackAll                               int64 // restart -> end of the last success served by the backup
	backupAfterUp                             int   // successes served by the backup among requests sent after the restart
	preKillFailed                             int   // failures before the kill: the run was disturbed by something else
	genLag                                    int64 // worst delay of a send behind its schedule: the load tool's own stalls
	preKillPrimary                            float64
}

func analyzeHTTP(hs []httpRecord, kill, restart, up int64, primary, backup string, warm int64) httpFigures {
	f := httpFigures{toOther: none, failback: none, failbackAll: none, worst: none, p99: none, p999: none}
	if len(hs) == 0 {
		return f
	}
	begin := hs[0].sched + warm
	kinds := map[string]int{}
	var lats []int64
	var preKill, preKillPrimary int
	for _, r := range hs {
		f.sent++
		ok := r.err == "" && r.status >= 200 && r.status < 300
		end := r.sent + r.lat
		if !ok {
			f.failed++
			k := r.err
			if k == "" {
				k = strconv.Itoa(r.status)
			}
			kinds[k]++
		}
		f.genLag = max(f.genLag, r.sent-r.sched)
		if r.sched >= begin {
			lats = append(lats, r.lat)
			if r.lat > f.worst {
				f.worst = r.lat
				f.worstAt = phase(r.sent, kill, restart)
			}
		}
		if r.sent < kill {
			preKill++
			if !ok {
				f.preKillFailed++
			}
			if ok && r.dc == primary {
				preKillPrimary++
			}
		}
		if ok && r.dc == backup && end >= kill && (f.toOther == none || end-kill < f.toOther) {
			f.toOther = end - kill
		}
		if ok && r.dc == primary && r.sent >= restart && (f.failback == none || end-restart < f.failback) {
			f.failback = end - restart
		}
		if ok && r.dc == backup && r.sent >= restart {
			f.backupAfterUp++
			if end-restart > f.failbackAll {
				f.failbackAll = end - restart
			}
		}
	}
	// Every request after the restart went to the primary: full failback
	// took as long as the first one.
	if f.backupAfterUp == 0 {
		f.failbackAll = f.failback
	}
	// A run that ends still sending to the backup never failed back fully.
	if n := len(hs); n > 0 && hs[n-1].dc == backup {
		f.failbackAll = none
	}
	if preKill > 0 {
		f.preKillPrimary = float64(preKillPrimary) / float64(preKill)
	}
	// The failover windows, and the calm rest of the run to compare them with.
	f.worstFault, f.worstKill, f.worstFB, f.worstCalm = none, none, none, none
	firstPrimary := int64(none)
	for _, r := range hs {
		if r.err == "" && r.status >= 200 && r.status < 300 && r.dc == primary && r.sent >= restart {
			firstPrimary = r.sent
			break
		}
	}
	for _, r := range hs {
		if r.sched < begin {
			continue
		}
		lag := r.sent - r.sched
		inFault := r.sent < restart && r.sent+r.lat >= kill
		if inFault {
			f.worstFault, f.lagFault = max(f.worstFault, r.lat), max(f.lagFault, lag)
		}
		switch {
		case inFault && r.sent < kill+2e9:
			f.worstKill, f.lagKill = max(f.worstKill, r.lat), max(f.lagKill, lag)
		case inFault:
		case firstPrimary != none && r.sent >= firstPrimary-2e8 && r.sent < firstPrimary+1e9:
			f.worstFB, f.lagFB = max(f.worstFB, r.lat), max(f.lagFB, lag)
		default:
			f.worstCalm, f.lagCalm = max(f.worstCalm, r.lat), max(f.lagCalm, lag)
		}
	}
	slices.Sort(lats)
	if len(lats) > 0 {
		f.p99 = lats[len(lats)*99/100]
		f.p999 = lats[len(lats)*999/1000]
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s:%d", k, n))
	}
	slices.Sort(ks)
	f.failedKinds = strings.Join(ks, ",")
	return f
}

// phase names when, relative to the kill and the restart, a request was
// sent: "k+123ms" after the kill, "r+45ms" after the restart.
func phase(sent, kill, restart int64) string {
	switch {
	case sent >= restart:
		return fmt.Sprintf("r%+dms", (sent-restart)/1e6)
	default:
		return fmt.Sprintf("k%+dms", (sent-kill)/1e6)
	}
}

type dnsFigures struct {
	queries, errors int
	flip, flipBack  int64 // kill/restart -> the first answer naming the backup/primary
	wrong           int   // answers naming the primary between flip and restart, or the backup after the flip-back
	ttls            string
	maxGap          int64 // longest time between two queries: the poller's resolution
}

func analyzeDNS(ds []dnsRecord, kill, restart int64, primaryAddr, backupAddr string) dnsFigures {
	f := dnsFigures{flip: none, flipBack: none}
	ttlMin, ttlMax := int64(-1), int64(-1)
	for i, r := range ds {
		f.queries++
		if i > 0 {
			f.maxGap = max(f.maxGap, r.sent-ds[i-1].sent)
		}
		if r.rcode != dns.RcodeSuccess {
			f.errors++
			continue
		}
		if r.ttl >= 0 {
			if ttlMin < 0 || r.ttl < ttlMin {
				ttlMin = r.ttl
			}
			ttlMax = max(ttlMax, r.ttl)
		}
		end := r.sent + r.rtt
		switch {
		case r.sent >= kill && r.sent < restart:
			if f.flip == none {
				if r.addrs == backupAddr {
					f.flip = end - kill
				}
			} else if r.addrs != backupAddr {
				f.wrong++
			}
		case r.sent >= restart:
			if f.flipBack == none {
				if r.addrs == primaryAddr {
					f.flipBack = end - restart
				}
			} else if r.addrs != primaryAddr {
				f.wrong++
			}
		}
	}
	f.ttls = fmt.Sprintf("%d..%d", ttlMin, ttlMax)
	return f
}
