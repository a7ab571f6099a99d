package instance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runYAML has every front door on a free loopback port and one endpoint;
// %s is the endpoint, %s extra top-level YAML.
const runYAML = `
listen: {http: "127.0.0.1:0", dns: "127.0.0.1:0", admin: "127.0.0.1:0"}
health: {interval: 100ms, timeout: 100ms, rise: 1, fall: 1}
datacenters:
  - name: east
    services:
      api: {endpoints: ["%s"], addresses: ["192.0.2.10"]}
services:
  api:
    hostnames: [api.coopr.example.com]
    check: {type: tcp}
dns:
  zone: coopr.example.com.
  udp_sockets: 1
%s`

func loadYAML(t *testing.T, yaml string) (*config.Config, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, yaml)
	cfg, _, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, path
}

// backend is a TCP endpoint that can be stopped.
func backend(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

type started struct {
	inst *Instance
	stop func() error
}

func start(t *testing.T, cfg *config.Config, opts Options) started {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	inst, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	select {
	case <-inst.Serving():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("not serving after 10s")
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = fmt.Errorf("Run did not return 10s after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return started{inst: inst, stop: stop}
}

// TestRunServesAndStops: every front door binds and serves; cancelling the
// context returns Run with no error and no goroutine left (goleak).
func TestRunServesAndStops(t *testing.T) {
	be := backend(t)
	cfg, _ := loadYAML(t, fmt.Sprintf(runYAML, be.Addr(), ""))
	before := goleak.IgnoreCurrent()
	s := start(t, cfg, Options{Version: "test"})
	a := s.inst.Addrs()
	if a.HTTP == "" || a.DNS == "" || a.Admin == "" || strings.HasSuffix(a.HTTP, ":0") {
		t.Fatalf("bound addresses %+v", a)
	}
	resp, err := http.Get("http://" + a.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz %d once serving", resp.StatusCode)
	}
	// DNS answers from the published snapshot.
	m := new(dns.Msg)
	m.SetQuestion("api.coopr.example.com.", dns.TypeA)
	in, err := dns.Exchange(m, a.DNS)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Answer) != 1 || !strings.Contains(in.Answer[0].String(), "192.0.2.10") {
		t.Errorf("DNS answer %v", in.Answer)
	}
	// The proxy answers (the backend closes every connection: a 502 is fine).
	req, _ := http.NewRequest("GET", "http://"+a.HTTP+"/", nil)
	req.Host = "api.coopr.example.com"
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Every goroutine Run started has ended when it returns.
	goleak.VerifyNone(t, before)
	if err := s.inst.Run(context.Background()); err != ErrRunTwice {
		t.Errorf("second Run: %v", err)
	}
}

// TestBindErrorAnnouncesNothing: a start that fails to bind returns the
// error before any probe ran, so no event is recorded and no webhook sent.
func TestBindErrorAnnouncesNothing(t *testing.T) {
	be := backend(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer hook.Close()
	yaml := strings.Replace(fmt.Sprintf(runYAML, be.Addr(), "notify:\n  - url: "+hook.URL+"\n"), `http: "127.0.0.1:0"`, `http: "`+busy.Addr().String()+`"`, 1)
	cfg, _ := loadYAML(t, yaml)
	var stateLog strings.Builder
	inst, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), StateLog: &stateLog})
	if err != nil {
		t.Fatal(err)
	}
	err = inst.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "listen.http") {
		t.Fatalf("Run: %v, want the listen.http bind error", err)
	}
	time.Sleep(300 * time.Millisecond) // a probe round would have run by now
	if n := posts.Load(); n != 0 {
		t.Errorf("%d webhooks sent by a start that failed", n)
	}
	if evs := inst.Engine().Events(time.Time{}); len(evs) != 0 {
		t.Errorf("events recorded by a start that failed: %+v", evs)
	}
	if stateLog.Len() != 0 {
		t.Errorf("state log written: %s", stateLog.String())
	}
	hook.Client().CloseIdleConnections()
}

// blockingWriter blocks every Write until released, like a -state-log pipe
// nobody reads.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	lines   []byte
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, p...)
	return len(p), nil
}

// TestBlockedStateLogDelaysNothing: with a state log that never drains, a
// drain still answers at once and a probe result still reaches routing;
// once released, the state log's lines carry the API's sequence numbers.
func TestBlockedStateLogDelaysNothing(t *testing.T) {
	be := backend(t)
	cfg, _ := loadYAML(t, fmt.Sprintf(runYAML, be.Addr(), ""))
	w := &blockingWriter{release: make(chan struct{})}
	s := start(t, cfg, Options{StateLog: w})
	e := s.inst.Engine()

	t0 := time.Now()
	for i := range 3 {
		if err := s.inst.drains.drain(routing.DrainScope{DC: "east"}, routing.Drain{Reason: fmt.Sprint("maint ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("3 drains took %v with a blocked state log", d)
	}
	if err := s.inst.drains.undrain(routing.DrainScope{DC: "east"}, "test"); err != nil {
		t.Fatal(err)
	}
	// A probe result: the endpoint goes away and routing sees it.
	be.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.Snapshot().Service("api").DC("east").State != routing.StateDown {
		if time.Now().After(deadline) {
			t.Fatal("the probe result did not reach routing with a blocked state log")
		}
		time.Sleep(20 * time.Millisecond)
	}

	close(w.release)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	api := map[uint64]routing.EventKind{}
	for _, ev := range e.Events(time.Time{}) {
		api[ev.Seq] = ev.Kind
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(w.lines)), "\n")
	if len(lines) < 5 {
		t.Fatalf("state log has %d lines: %s", len(lines), w.lines)
	}
	for _, l := range lines {
		var ev routing.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq == 0 || api[ev.Seq] != ev.Kind {
			t.Errorf("state log line %s: seq %d is %q in /api/v1/events", l, ev.Seq, api[ev.Seq])
		}
	}
}

// TestDrainSaveFailure: with a state directory that cannot be written, one
// drain is one event and its error (logged) comes back at once.
func TestDrainSaveFailure(t *testing.T) {
	be := backend(t)
	dir := filepath.Join(t.TempDir(), "state")
	cfg, _ := loadYAML(t, fmt.Sprintf(runYAML, be.Addr(), "admin: {state_dir: "+dir+"}\n"))
	inst, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// The directory becomes a file: no write succeeds, not even root's.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "not a directory")
	t0 := time.Now()
	err = inst.drains.drain(routing.DrainScope{DC: "east"}, routing.Drain{Reason: "maint"})
	if err == nil || !strings.Contains(err.Error(), "could not be saved") {
		t.Fatalf("drain: %v, want the save error", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the failed save took %v", d)
	}
	n := 0
	for _, ev := range inst.Engine().Events(time.Time{}) {
		if ev.Kind == routing.EventDrained {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d drained events", n)
	}
	inst.Engine().Close()
}

var _ io.Writer = (*blockingWriter)(nil)
