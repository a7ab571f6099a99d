package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// TestProberLoad is a load harness, skipped unless HEALTH_LOAD=1:
//
//	HEALTH_LOAD=1 go test -run ProberLoad -v ./health/
//
// It runs a Checker with the default NetProber over 1,000 loopback HTTP
// endpoints (HEALTH_LOAD_ENDPOINTS) at a 1s interval for 30s
// (HEALTH_LOAD_DURATION) and reports its CPU time and peak RSS. The endpoints
// are served by a child process (this test binary running TestLoadServer), so
// this process's rusage is the checker's alone and the child's rusage is the
// server-only figure.
func TestProberLoad(t *testing.T) {
	if os.Getenv("HEALTH_LOAD") != "1" {
		t.Skip("set HEALTH_LOAD=1 to run the load harness")
	}
	n := 1000
	if s := os.Getenv("HEALTH_LOAD_ENDPOINTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dur := 30 * time.Second
	if s := os.Getenv("HEALTH_LOAD_DURATION"); s != "" {
		dur, _ = time.ParseDuration(s)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadServer$")
	cmd.Env = append(os.Environ(), "HEALTH_LOAD_SERVER="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var targets []Target
	sc := bufio.NewScanner(stdout)
	for len(targets) < n && sc.Scan() {
		addr, ok := strings.CutPrefix(sc.Text(), "addr ")
		if !ok {
			continue
		}
		targets = append(targets, Target{ID: "dc1/api/" + addr, DC: "dc1", Service: "api", Endpoint: addr,
			Check: config.Check{Type: "http", Path: "/status", ExpectStatus: []int{200}, ExpectBody: "OK",
				Interval: config.Duration(time.Second), Timeout: config.Duration(800 * time.Millisecond), Rise: 2, Fall: 3}})
	}
	if len(targets) != n {
		t.Fatalf("server child listed %d endpoints, want %d", len(targets), n)
	}
	go io.Copy(io.Discard, stdout)

	var probes, failures, latency atomic.Int64
	var lastErr atomic.Value
	np := &NetProber{}
	counting := ProberFunc(func(ctx context.Context, tg Target) Result {
		r := np.Probe(ctx, tg)
		probes.Add(1)
		latency.Add(int64(r.Latency))
		if !r.OK {
			failures.Add(1)
			lastErr.Store(r.Err)
		}
		return r
	})
	var downs atomic.Int64
	c := New(targets, Options{Prober: counting, OnChange: func(tr Transition) {
		if !tr.Status.Up {
			downs.Add(1)
		}
	}})

	runtime.GC()
	before, startRSS := rusage(t), vmRSS()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	<-c.Ready()
	ready := time.Since(start)
	time.Sleep(dur / 2)
	goroutines, midRSS := runtime.NumGoroutine(), vmRSS()
	<-done
	wall := time.Since(start)
	after := rusage(t)

	stdin.Close() // the child exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("server child: %v", err)
	}
	srv := cmd.ProcessState.SysUsage().(*syscall.Rusage)

	user, sys := cpu(after.Utime)-cpu(before.Utime), cpu(after.Stime)-cpu(before.Stime)
	np64 := probes.Load()
	t.Logf("%d endpoints, 1s interval, %v wall, GOMAXPROCS %d", n, wall.Round(time.Millisecond), runtime.GOMAXPROCS(0))
	t.Logf("probes: %d (%.0f/s), failed %d (last: %v), down transitions %d, mean latency %v, Ready after %v",
		np64, float64(np64)/wall.Seconds(), failures.Load(), lastErr.Load(), downs.Load(),
		time.Duration(latency.Load()/max(np64, 1)).Round(time.Microsecond), ready.Round(time.Millisecond))
	t.Logf("checker CPU: user %v + sys %v = %v (%.1f%% of one core, %v per probe)",
		user.Round(time.Millisecond), sys.Round(time.Millisecond), (user + sys).Round(time.Millisecond),
		100*(user+sys).Seconds()/wall.Seconds(), ((user + sys) / time.Duration(max(np64, 1))).Round(time.Microsecond))
	t.Logf("checker RSS: %d MiB before the checker started, %d MiB mid-run, peak %d MiB; %d goroutines mid-run",
		startRSS>>20, midRSS>>20, maxRSS(t)>>20, goroutines)
	t.Logf("server-only (child, whole life): CPU user %v + sys %v, peak RSS %d MiB",
		cpu(srv.Utime).Round(time.Millisecond), cpu(srv.Stime).Round(time.Millisecond), srv.Maxrss>>10)
}

// TestLoadServer is TestProberLoad's child: it serves HEALTH_LOAD_SERVER
// endpoints like coopr-server's health check, prints their addresses, and
// exits when its stdin closes.
func TestLoadServer(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("HEALTH_LOAD_SERVER"))
	if n == 0 {
		t.Skip("run by TestProberLoad")
	}
	srv := &http.Server{Handler: http.HandlerFunc(coopr), ErrorLog: log.New(io.Discard, "", 0)}
	out := bufio.NewWriter(os.Stdout)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		fmt.Fprintln(out, "addr", l.Addr())
	}
	out.Flush()
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

func rusage(t *testing.T) syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru
}

// maxRSS is this process's peak resident set size in bytes.
func maxRSS(t *testing.T) int64 {
	ru := rusage(t)
	return ru.Maxrss << 10 // Linux reports KiB
}

// vmRSS is this process's resident set size now, in bytes, or -1 if unknown.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

func cpu(tv syscall.Timeval) time.Duration { return time.Duration(tv.Nano()) }
