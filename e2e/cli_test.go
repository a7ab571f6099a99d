package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIVersion: version names the build; version -h is help, not an error.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := runBinary(t, 10*time.Second, "version")
	if code != 0 || !regexp.MustCompile(`^coopr-gslb \S+ \(revision \S+, go1\.\S+\)\n$`).MatchString(out) {
		t.Errorf("version: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runBinary(t, 10*time.Second, "version", "-h")
	if code != 0 || !strings.Contains(out+errOut, "Usage: coopr-gslb version") {
		t.Errorf("version -h: %d %q %q", code, out, errOut)
	}
}

// TestCLIWrongAdminFailsFast: nothing listens at -admin; the command fails
// within 2 s and names the address.
func TestCLIWrongAdminFailsFast(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	for _, args := range [][]string{{"status"}, {"events"}, {"explain", "api.coopr.example.com"}} {
		start := time.Now()
		code, _, errOut := runBinary(t, 10*time.Second, append(args, "-admin", addr)...)
		took := time.Since(start)
		if code == 0 || !strings.Contains(errOut, addr) || took > 2*time.Second {
			t.Errorf("%v against %s (nothing listening): exit %d after %s: %q", args, addr, code, took.Round(time.Millisecond), errOut)
		}
	}
}

// TestCLIExplainHostArgument: the host may be a positional argument; none at
// all says what is missing.
func TestCLIExplainHostArgument(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)
	code, out, errOut := cli(t, admin, "explain", "api.coopr.example.com", "-client", "10.2.3.4")
	if code != 0 || !strings.Contains(out, "api.coopr.example.com for client 10.2.3.4 (service api)") || !strings.Contains(out, "proxy sends:") {
		t.Errorf("explain HOST: %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, admin, "explain")
	if code != 2 || !strings.Contains(errOut, "missing the host name") || !strings.Contains(errOut, "coopr-gslb explain api.coopr.example.com") {
		t.Errorf("explain without a host: %d %q %q", code, out, errOut)
	}
}

// TestCLIDrainDefaultsAndLastDC: -h shows the defaults (hard, 10m); a soft
// drain prints its deadline (also in status); draining the last DC up warns
// that serve_all keeps it serving.
func TestCLIDrainDefaultsAndLastDC(t *testing.T) {
	t.Parallel()
	code, out, errOut := runBinary(t, 10*time.Second, "drain", "-h")
	help := out + errOut
	if code != 0 || !strings.Contains(help, `(default "hard")`) || !strings.Contains(help, "(default 10m0s)") || !strings.Contains(help, "serve_all") {
		t.Errorf("drain -h: %d\n%s", code, help)
	}

	fleet := startFleet(t)
	admin := freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)
	allUp(t, g)
	code, out, errOut = cli(t, admin, "drain", "east", "-mode", "soft", "-deadline", "3m", "-reason", "rack move", "-token", testToken)
	if code != 0 || !strings.Contains(out, "east drained (soft: pinned sessions stay until") || strings.Contains(errOut, "warning") {
		t.Fatalf("soft drain east: %d %q %q", code, out, errOut)
	}
	code, out, _ = cli(t, admin, "status")
	if code != 0 || !regexp.MustCompile(`soft: pinned sessions leave at \d\d:\d\d:\d\d, in 2m5\ds`).MatchString(out) {
		t.Errorf("status shows no soft-drain deadline: %d\n%s", code, out)
	}
	code, out, errOut = cli(t, admin, "drain", "west", "-reason", "both", "-token", testToken)
	if code != 0 || !strings.Contains(out, "west drained (hard)") {
		t.Fatalf("drain west: %d %q %q", code, out, errOut)
	}
	for _, want := range []string{"warning: west was the last datacenter up for service api", "serve_all"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("draining the last DC: stderr lacks %q: %q", want, errOut)
		}
	}
	if s := g.status().Services[0].State; s != "serving_all" {
		t.Errorf("with both drained api is %q, want serving_all", s)
	}
	code, _, errOut = cli(t, admin, "drain", "east", "-deadline", "1m", "-token", testToken)
	if code != 2 || !strings.Contains(errOut, "-deadline applies only to -mode soft") {
		t.Errorf("hard drain with -deadline: %d %q", code, errOut)
	}
}

// TestCLIReload: a failed reload exits non-zero with the error; a reload
// that changes a restart-only key lists it.
func TestCLIReload(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	httpAddr := freePort(t)
	g := startGSLB(t, opsConfig(t, fleet, admin, httpAddr, "", ""), admin)
	good, _ := os.ReadFile(g.cfgPath)

	os.WriteFile(g.cfgPath, []byte(strings.Replace(string(good), "policy: failover", "policy: sideways", 1)), 0o644)
	code, out, errOut := cli(t, admin, "reload", "-token", testToken)
	if code != 1 || !strings.Contains(errOut, "services.api.policy") || strings.Contains(out, "reloaded") {
		t.Errorf("reload of a broken file: %d %q %q", code, out, errOut)
	}

	os.WriteFile(g.cfgPath, []byte(strings.Replace(string(good), httpAddr, freePort(t), 1)), 0o644)
	code, out, errOut = cli(t, admin, "reload", "-token", testToken)
	if code != 0 || !strings.Contains(out, "configuration reloaded") || !strings.Contains(out, "needs_restart") || !strings.Contains(out, "listen.http") {
		t.Errorf("reload changing listen.http: %d %q %q", code, out, errOut)
	}
}

// TestCLIEvents: events -since lists what happened; -follow prints a drain
// as it happens.
func TestCLIEvents(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin := freePort(t)
	startGSLB(t, opsConfig(t, fleet, admin, "", "", ""), admin)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, binary, "events", "-since", "5m", "-follow", "-admin", admin)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); follow.Wait() }()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(what string, match func(string) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("events -follow ended before %s", what)
				}
				if match(l) {
					return
				}
			case <-timeout:
				t.Fatalf("events -follow: no %s within 10s", what)
			}
		}
	}
	waitLine("start-up event", func(l string) bool { return strings.Contains(l, "dc=east") })
	if code, out, errOut := cli(t, admin, "drain", "west", "-reason", "patching", "-token", testToken); code != 0 {
		t.Fatalf("drain: %d %s %s", code, out, errOut)
	}
	waitLine("drained event", func(l string) bool {
		return strings.Contains(l, " drained dc=west") && strings.Contains(l, "by=alice") && strings.Contains(l, `reason="patching"`)
	})

	code, out, errOut := cli(t, admin, "events", "-since", "5m")
	if code != 0 || strings.Count(out, " drained dc=west") != 1 {
		t.Errorf("events -since 5m: %d %q %q", code, out, errOut)
	}
	code, _, errOut = cli(t, admin, "events", "-since", "yesterday")
	if code != 2 || !strings.Contains(errOut, "-since") {
		t.Errorf("events -since yesterday: %d %q", code, errOut)
	}
}

// TestDNSPortPermissionError: binding port 53 without the capability names
// CAP_NET_BIND_SERVICE. As root the binary runs as nobody.
func TestDNSPortPermissionError(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "coopr-gslb-cap-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	fleet := startFleet(t)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(twoDCConfig(fleet, "", "127.0.0.1:53", freePort(t), "")), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "-config", cfg)
	if os.Geteuid() == 0 {
		os.Chmod(filepath.Dir(binary), 0o755)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CAP_NET_BIND_SERVICE") || !strings.Contains(string(out), "127.0.0.1:53") {
		t.Errorf("run with listen.dns 127.0.0.1:53 and no capability: %v\n%s", err, out)
	}
}

// allUp waits until every service is up in every DC (a loaded machine may
// time out the first probes).
func allUp(t *testing.T, g *gslb) {
	t.Helper()
	eventually(t, 20*time.Second, "every DC up", func() bool {
		for _, svc := range g.status().Services {
			for _, dc := range svc.Datacenters {
				if dc.State != "up" {
					return false
				}
			}
		}
		return true
	})
}
