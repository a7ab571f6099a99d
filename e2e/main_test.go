// Package e2e drives the real coopr-gslb binary over real sockets on
// loopback, with simulated Coopr datacenters, as a user would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coopr-gslb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "coopr-gslb")
	build := exec.Command("go", "build", "-race", "-o", binary, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building coopr-gslb:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address with a port free for both TCP and UDP.
// The binary binds it a moment later, so the port is drawn below Linux's
// ephemeral range (ip_local_port_range starts at 32768): a port the kernel
// hands out for :0 could meanwhile be taken by any outgoing connection of
// the parallel tests, one out of that range only by another listener.
func freePort(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// gslb is a running coopr-gslb process.
type gslb struct {
	t        *testing.T
	cmd      *exec.Cmd
	stderr   *syncBuffer
	stdout   *syncBuffer
	stateLog string
	admin    string
	cfgPath  string
	done     chan struct{}
}

// startGSLB runs "coopr-gslb run" with the given YAML and waits until /readyz answers.
func startGSLB(t *testing.T, yaml, admin string) *gslb {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return startGSLBFile(t, cfgPath, admin)
}

// startGSLBFile runs "coopr-gslb run" on an existing config file.
func startGSLBFile(t *testing.T, cfgPath, admin string) *gslb {
	t.Helper()
	dir := t.TempDir()
	g := &gslb{t: t, stderr: &syncBuffer{}, stdout: &syncBuffer{}, stateLog: filepath.Join(dir, "state.jsonl"), admin: admin, done: make(chan struct{}), cfgPath: cfgPath}
	g.cmd = exec.Command(binary, "run", "-config", cfgPath, "-state-log", g.stateLog)
	g.cmd.Stdout, g.cmd.Stderr = g.stdout, g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.stop)
	g.waitReady(15 * time.Second)
	return g
}

func (g *gslb) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(os.Interrupt)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	if logs := g.stderr.String(); strings.Contains(logs, "WARNING: DATA RACE") {
		// The binary is built with -race: a race in it fails the test that
		// drove it, with the report.
		g.t.Errorf("coopr-gslb reported a data race:\n%s", logs)
	} else if g.t.Failed() {
		g.t.Logf("coopr-gslb stderr:\n%s", logs)
	}
}

func (g *gslb) waitReady(limit time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			g.t.Fatalf("coopr-gslb exited early:\n%s", g.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("coopr-gslb not ready after %s:\n%s", limit, g.stderr.String())
}

// status fetches /api/v1/status.
func (g *gslb) status() statusDoc {
	g.t.Helper()
	var st statusDoc
	getJSON(g.t, "http://"+g.admin+"/api/v1/status", &st)
	return st
}

type statusDoc struct {
	Services []struct {
		Name        string   `json:"name"`
		State       string   `json:"state"`
		ProxyTarget string   `json:"proxy_target"`
		DNSAnswer   []string `json:"dns_answer"`
		Datacenters []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Healthy int    `json:"healthy"`
			Total   int    `json:"total"`
			Reason  string `json:"reason"`
		} `json:"datacenters"`
	} `json:"services"`
}

func (s statusDoc) dcState(service, dc string) string {
	for _, svc := range s.Services {
		if svc.Name == service {
			for _, d := range svc.Datacenters {
				if d.Name == dc {
					return d.State
				}
			}
		}
	}
	return ""
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

// eventually polls cond every 50 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, limit)
	return 0
}

// stateEvents reads the JSON lines of the state log.
func (g *gslb) stateEvents() []map[string]any {
	data, err := os.ReadFile(g.stateLog)
	if err != nil {
		return nil
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runBinary runs the binary to completion and returns its exit code and output.
func runBinary(t *testing.T, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	return runBinaryEnv(t, timeout, nil, args...)
}

// runBinaryEnv is runBinary with extra environment variables ("K=V").
func runBinaryEnv(t *testing.T, timeout time.Duration, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
