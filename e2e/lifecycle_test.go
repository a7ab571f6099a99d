package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookRecorder is a webhook receiver that keeps the events it gets.
type hookRecorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []string
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p map[string]any
		json.NewDecoder(r.Body).Decode(&p)
		h.mu.Lock()
		h.events = append(h.events, fmt.Sprint(p["event"], ":", p["dc"]))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookRecorder) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// TestBindFailureAnnouncesNothing: a start that fails on a busy port exits
// with the bind error and has sent no webhook and logged no event.
func TestBindFailureAnnouncesNothing(t *testing.T) {
	t.Parallel()
	hooks := newHookRecorder(t)
	fleet := startFleet(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fleet.Datacenter("east").Servers()[0].Close() // something to announce, were anything announced
	admin := freePort(t)
	cfg := opsConfig(t, fleet, admin, busy.Addr().String(), "", fmt.Sprintf("notify:\n  - url: %q\n", hooks.srv.URL))
	path := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	stateLog := filepath.Join(t.TempDir(), "state.jsonl")
	code, _, stderr := runBinary(t, 20*time.Second, "run", "-config", path, "-state-log", stateLog)
	if code == 0 || !strings.Contains(stderr, "listen.http "+busy.Addr().String()) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	time.Sleep(time.Second) // a webhook in flight would have arrived
	if got := hooks.got(); len(got) != 0 {
		t.Errorf("a start that failed sent webhooks %v", got)
	}
	if data, _ := os.ReadFile(stateLog); len(data) != 0 {
		t.Errorf("a start that failed logged events:\n%s", data)
	}
	if strings.Contains(stderr, "not probed yet") {
		t.Errorf("start-up announced unprobed state:\n%s", stderr)
	}
}

// TestDrainWithUnwritableStateDir: one drain is one event and one webhook
// whatever the save does; the save error comes back at once, is logged, and
// the CLI does not repeat the drain.
func TestDrainWithUnwritableStateDir(t *testing.T) {
	t.Parallel()
	hooks := newHookRecorder(t)
	fleet := startFleet(t)
	admin := freePort(t)
	cfg := opsConfig(t, fleet, admin, "", "", fmt.Sprintf("notify:\n  - url: %q\n    events: [drained]\n", hooks.srv.URL))
	g := startGSLB(t, cfg, admin)
	// The state directory becomes a file: no save succeeds, not even root's.
	var stateDir string
	for _, l := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "state_dir: "); ok {
			stateDir = strings.Trim(v, `"`)
		}
	}
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(stateDir, []byte("not a directory"), 0o600)

	start := time.Now()
	code, _, errOut := cli(t, admin, "drain", "west", "-reason", "disk test", "-token", testToken)
	took := time.Since(start)
	if code == 0 || !strings.Contains(errOut, "could not be saved") {
		t.Errorf("drain exit %d, stderr %q: want the save error", code, errOut)
	}
	if took > 3*time.Second {
		t.Errorf("a drain whose save failed took %v", took)
	}
	if !strings.Contains(g.stderr.String(), "could not be saved") {
		t.Errorf("the failed save is not logged:\n%s", g.stderr.String())
	}
	if g.status().dcState("api", "west") != "drained" {
		t.Error("the drain is not in effect")
	}
	var doc struct {
		Events []map[string]any `json:"events"`
	}
	getJSON(t, "http://"+admin+"/api/v1/events", &doc)
	events := doc.Events
	n := 0
	for _, ev := range events {
		if ev["kind"] == "drained" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d drained events, want 1: %v", n, events)
	}
	// The state log numbers its lines as the API does.
	api := map[float64]any{}
	for _, ev := range events {
		api[ev["seq"].(float64)] = ev["kind"]
	}
	eventually(t, 5*time.Second, "the drain in the state log", func() bool {
		evs := g.stateEvents()
		return len(evs) > 0 && evs[len(evs)-1]["kind"] == "drained"
	})
	for _, ev := range g.stateEvents() {
		if seq, _ := ev["seq"].(float64); seq == 0 || api[seq] != ev["kind"] {
			t.Errorf("state log line %v: seq %v is %v in /api/v1/events", ev, ev["seq"], api[seq])
		}
	}
	eventually(t, 10*time.Second, "the drained webhook", func() bool { return len(hooks.got()) >= 1 })
	time.Sleep(500 * time.Millisecond)
	if got := hooks.got(); len(got) != 1 {
		t.Errorf("webhooks %v, want one drained", got)
	}
}
