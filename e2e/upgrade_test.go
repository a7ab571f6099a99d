package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/internal/acmetest"
	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// upgradeProc is a "coopr-gslb run" whose stderr goes to a file rather than
// a pipe: after an upgrade the new process inherits it, and a pipe would
// keep cmd.Wait from returning when the old process exits.
type upgradeProc struct {
	cmd     *exec.Cmd
	logPath string
	pidFile string
	done    chan struct{}
}

func startUpgradable(t *testing.T, cfg string) *upgradeProc {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &upgradeProc{logPath: filepath.Join(dir, "stderr.log"), pidFile: filepath.Join(dir, "coopr-gslb.pid"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(binary, "run", "-config", cfgPath, "-pid-file", p.pidFile)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		// Whatever process serves now (the first or a successor) is
		// stopped; the successor is no child of the test, so it is
		// signalled by PID and polled.
		if pid := p.pid(); pid > 0 {
			stopPID(pid, 10*time.Second)
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		if logs := p.logs(); strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("coopr-gslb reported a data race:\n%s", logs)
		} else if t.Failed() {
			t.Logf("coopr-gslb stderr:\n%s", logs)
		}
	})
	return p
}

func (p *upgradeProc) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// pid is the PID in the PID file, written by the process that serves.
func (p *upgradeProc) pid() int {
	b, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// stopPID sends SIGTERM and waits for the process to be gone, then kills it.
func stopPID(pid int, limit time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(limit)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func waitReadyz(t *testing.T, admin string, limit time.Duration) {
	t.Helper()
	eventually(t, limit, "readyz", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// upgradeLoad counts what the load generators saw.
type upgradeLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (r *upgradeLoad) fail(format string, args ...any) {
	r.failed.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// steadyLoad sends GETs through the proxy and DNS queries over UDP and TCP
// until ctx ends, each worker one request at a time with keep-alive
// connections, as a client fleet does.
func steadyLoad(ctx context.Context, wg *sync.WaitGroup, httpAddr, dnsAddr string, tlsClient *http.Client, get, dnsRes *upgradeLoad) {
	plain := &http.Client{Timeout: 10 * time.Second}
	for i := range 4 {
		client, url := plain, "http://"+httpAddr+"/v2/clusters"
		if i%2 == 1 && tlsClient != nil {
			// Over HTTPS (HTTP/2, one connection for all its requests).
			client, url = tlsClient, "https://api.coopr.example.com/v2/clusters"
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "api.coopr.example.com"
				resp, err := client.Do(req)
				if err != nil {
					get.fail("GET: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					get.fail("GET: status %d", resp.StatusCode)
					continue
				}
				get.ok.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	for _, proto := range []string{"udp", "udp", "tcp"} {
		wg.Go(func() {
			c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
			for ctx.Err() == nil {
				m := new(dns.Msg)
				m.SetQuestion("api.coopr.example.com.", dns.TypeA)
				in, _, err := c.Exchange(m, dnsAddr)
				switch {
				case err != nil:
					dnsRes.fail("DNS %s: %v", proto, err)
				case in.Rcode != dns.RcodeSuccess || len(in.Answer) == 0:
					dnsRes.fail("DNS %s: %s with %d answers", proto, dns.RcodeToString[in.Rcode], len(in.Answer))
				default:
					dnsRes.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestUpgradeUnderLoad: SIGUSR2 under steady load on every front door
// (HTTP, HTTPS, DNS over UDP and TCP) starts a new process on the same
// sockets; the PID serving changes, the old process exits, and no GET and
// no DNS query fails.
func TestUpgradeUnderLoad(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	httpAddr, httpsAddr, dnsAddr, admin := freePort(t), freePort(t), freePort(t), freePort(t)
	cert := acmetest.WriteCert(t, "api.coopr.example.com", "coopr.example.com")
	tlsCfg := fmt.Sprintf("tls:\n  certificates:\n    - {cert: %q, key: %q}\n", cert.CertFile, cert.KeyFile)
	p := startUpgradable(t, withHTTPS(twoDCConfig(fleet, httpAddr, dnsAddr, admin, tlsCfg), httpsAddr))
	waitReadyz(t, admin, 15*time.Second)
	oldPID := p.cmd.Process.Pid
	if got := p.pid(); got != oldPID {
		t.Fatalf("PID file says %d, the process is %d", got, oldPID)
	}

	var get, dnsRes upgradeLoad
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	steadyLoad(ctx, &wg, httpAddr, dnsAddr, acmetest.HTTPSClient(cert.Roots, httpsAddr), &get, &dnsRes)
	defer func() { cancel(); wg.Wait() }()

	time.Sleep(time.Second)
	before := get.ok.Load()
	if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	took := eventually(t, 20*time.Second, "the new process writes its PID", func() bool {
		pid := p.pid()
		return pid != 0 && pid != oldPID
	})
	newPID := p.pid()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the old process %d has not exited 20 s after the new one served", oldPID)
	}
	exited := time.Since(signalled)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the old process exited with %d", code)
	}
	if !alive(newPID) {
		t.Fatalf("the new process %d is gone", newPID)
	}
	time.Sleep(time.Second) // load on the new process alone
	cancel()
	wg.Wait()

	t.Logf("new PID %d after %s, old one exited after %s; GETs %d ok (%d before the signal) %d failed; DNS %d ok %d failed",
		newPID, took.Round(time.Millisecond), exited.Round(time.Millisecond), get.ok.Load(), before, get.failed.Load(), dnsRes.ok.Load(), dnsRes.failed.Load())
	if n := get.failed.Load(); n != 0 {
		t.Errorf("%d GETs failed: %v", n, get.errs)
	}
	if n := dnsRes.failed.Load(); n != 0 {
		t.Errorf("%d DNS queries failed: %v", n, dnsRes.errs)
	}
	if get.ok.Load() <= before || dnsRes.ok.Load() == 0 {
		t.Errorf("no load got through after the upgrade")
	}
	logs := p.logs()
	for _, want := range []string{"upgrade: starting the new process", "upgrade: the new process serves", fmt.Sprintf("pid=%d", newPID)} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// The new process answers the admin API and upgrades again.
	waitReadyz(t, admin, 5*time.Second)
	if err := syscall.Kill(newPID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a second upgrade", func() bool {
		pid := p.pid()
		return pid != 0 && pid != newPID && !alive(newPID)
	})
}

// TestSigtermFinishesInFlight: SIGTERM while slow requests are in flight
// lets every one of them finish with 200 before the process exits.
func TestSigtermFinishesInFlight(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	httpAddr, admin := freePort(t), freePort(t)
	// Probes must outlast the slow answers, or the DCs would go down.
	cfg := strings.Replace(twoDCConfig(fleet, httpAddr, "", admin, ""), "interval: 500ms\n  timeout: 400ms", "interval: 5s\n  timeout: 4s", 1)
	g := startGSLB(t, cfg, admin)
	const delay = 1500 * time.Millisecond
	for _, dc := range fleet.Datacenters() {
		dc.SetFault(simulator.Fault{Mode: simulator.Slow, Delay: delay})
	}

	const n = 20
	type result struct {
		status int
		err    error
		done   time.Time
	}
	results := make(chan result, n)
	client := &http.Client{Timeout: 10 * time.Second}
	for range n {
		go func() {
			req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
			req.Host = "api.coopr.example.com"
			resp, err := client.Do(req)
			if err != nil {
				results <- result{err: err, done: time.Now()}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode, err: err, done: time.Now()}
		}()
	}
	time.Sleep(delay / 3) // every request is now waiting on a backend
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	// New connections after SIGTERM: each is either served (200) or refused
	// at connect once the listener is closed. The one exception is a
	// connection the kernel queued in the instant the listener closed: it is
	// reset, so each client may see one reset, then only refusals. (Before
	// a fix, tableflip's copy of the socket kept it listening: connections
	// were queued, never served, and reset when the process exited.)
	var served, refused, resets atomic.Int64
	var firstRefused atomic.Int64
	var lateErrs []string
	var lateMu sync.Mutex
	var late sync.WaitGroup
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 4 {
		late.Go(func() {
			for time.Since(termAt) < time.Second {
				req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters", nil)
				req.Host = "api.coopr.example.com"
				start := time.Now()
				resp, err := fresh.Do(req)
				// A refusal, or a reset as the listener closes, is
				// immediate; an error after a wait is a connection that was
				// taken and then dropped.
				quick := time.Since(start) < 300*time.Millisecond
				switch {
				case err != nil && quick && errors.Is(err, syscall.ECONNREFUSED):
					refused.Add(1)
					firstRefused.CompareAndSwap(0, int64(time.Since(termAt)))
					time.Sleep(20 * time.Millisecond)
				case err != nil && quick && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)) && resets.Add(1) <= 4:
				case err != nil:
					err = fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
					lateMu.Lock()
					lateErrs = append(lateErrs, err.Error())
					lateMu.Unlock()
				default:
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						served.Add(1)
					} else {
						lateMu.Lock()
						lateErrs = append(lateErrs, resp.Status)
						lateMu.Unlock()
					}
				}
			}
		})
	}
	var last time.Time
	for range n {
		r := <-results
		if r.err != nil || r.status != 200 {
			t.Errorf("in-flight request: status %d, error %v", r.status, r.err)
		}
		if r.done.After(last) {
			last = r.done
		}
	}
	late.Wait()
	if len(lateErrs) > 0 {
		t.Errorf("requests after SIGTERM failed other than by a refused connection: %v", lateErrs)
	}
	t.Logf("after SIGTERM: %d new requests served, %d connections refused (the first after %s), %d reset as the listener closed",
		served.Load(), refused.Load(), time.Duration(firstRefused.Load()).Round(time.Millisecond), resets.Load())
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Fatal("coopr-gslb did not exit after SIGTERM")
	}
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	t.Logf("%d slow requests finished %s after SIGTERM", n, last.Sub(termAt).Round(time.Millisecond))
	// Once the process is gone, its listener is closed: a new connection
	// is refused, not left hanging.
	_, err := http.Get("http://" + httpAddr + "/")
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after exit: %v, want connection refused", err)
	}
}
