package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// dig runs dig (or kdig) against addr and returns its output.
func dig(t *testing.T, tool, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	opts := []string{"+time=2", "+tries=2"}
	if filepath.Base(tool) == "kdig" {
		opts = []string{"+timeout=2", "+retry=1"}
	}
	all := append(append([]string{"@" + host, "-p", port, "+norec"}, opts...), args...)
	out, err := exec.Command(tool, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, all, err, out)
	}
	return string(out)
}

// TestDNSWithDig checks flags and sections of real answers with dig and kdig.
func TestDNSWithDig(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	kdig := requireTool(t, "kdig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	extra := "  records:\n    - \"www 300 IN CNAME api.coopr.example.com.\"\n    - \"@ 300 IN TXT \\\"hello\\\"\"\n"
	cfg := strings.Replace(opsConfig(t, fleet, admin, "", dnsAddr, ""), "dns:\n  zone: \"coopr.example.com.\"\n", "dns:\n  zone: \"coopr.example.com.\"\n"+extra, 1)
	startGSLB(t, cfg, admin)

	out := dig(t, digTool, dnsAddr, "api.coopr.example.com", "A")
	for _, want := range []string{"status: NOERROR", "flags: qr aa;", "api.coopr.example.com.\t5\tIN\tA\t192.0.2.10", "udp: 1232"} {
		if !strings.Contains(out, want) {
			t.Errorf("dig A lacks %q:\n%s", want, out)
		}
	}
	out = dig(t, digTool, dnsAddr, "API.Coopr.Example.COM", "A")
	if !strings.Contains(out, "API.Coopr.Example.COM.\t5\tIN\tA\t192.0.2.10") {
		t.Errorf("case is not echoed:\n%s", out)
	}
	out = dig(t, digTool, dnsAddr, "nope.coopr.example.com", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "AUTHORITY: 1") || !strings.Contains(out, "IN\tSOA\t") {
		t.Errorf("NXDOMAIN without the SOA:\n%s", out)
	}
	out = dig(t, digTool, dnsAddr, "api.coopr.example.com", "MX")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") || !strings.Contains(out, "IN\tSOA\t") {
		t.Errorf("NODATA without the SOA:\n%s", out)
	}
	out = dig(t, digTool, dnsAddr, "www.example.org", "A")
	if !strings.Contains(out, "status: REFUSED") {
		t.Errorf("out-of-zone name not refused:\n%s", out)
	}
	out = dig(t, digTool, dnsAddr, "www.coopr.example.com", "A")
	if !strings.Contains(out, "IN\tCNAME\tapi.coopr.example.com.") || !strings.Contains(out, "192.0.2.10") {
		t.Errorf("in-zone CNAME not followed:\n%s", out)
	}
	out = dig(t, digTool, dnsAddr, "+tcp", "coopr.example.com", "NS")
	if !strings.Contains(out, "flags: qr aa;") || !strings.Contains(out, "IN\tNS\t") {
		t.Errorf("NS over TCP:\n%s", out)
	}
	out = dig(t, kdig, dnsAddr, "+edns=1", "api.coopr.example.com", "A")
	if !strings.Contains(out, "BADVERS") {
		t.Errorf("EDNS version 1 not answered BADVERS:\n%s", out)
	}
	out = dig(t, kdig, dnsAddr, "+subnet=10.2.3.0/24", "api.coopr.example.com", "A")
	if !strings.Contains(out, "CLIENT-SUBNET: 10.2.3.0/24/0") {
		t.Errorf("ECS not echoed with scope 0 for a failover answer:\n%s", out)
	}

	// A drain shows in the very next answer.
	code, _, errOut := cli(t, admin, "drain", "east", "-reason", "dns test", "-token", testToken)
	if code != 0 {
		t.Fatalf("drain: %s", errOut)
	}
	out = dig(t, digTool, dnsAddr, "api.coopr.example.com", "A")
	if !strings.Contains(out, "192.0.2.20") || strings.Contains(out, "192.0.2.10") {
		t.Errorf("answer after draining east:\n%s", out)
	}
}

// TestDNSThroughUnbound puts a real recursive resolver in front: unbound
// with a stub zone pointing at coopr-gslb. After east is killed, a fresh
// answer through unbound names west.
func TestDNSThroughUnbound(t *testing.T) {
	t.Parallel()
	unbound := requireTool(t, "unbound")
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	admin, dnsAddr, resolver := freePort(t), freePort(t), freePort(t)
	// TTL 0: every query through unbound reaches coopr-gslb, as after a cache flush.
	cfg := strings.Replace(twoDCConfig(fleet, "", dnsAddr, admin, ""), "dns_ttl: 5", "dns_ttl: 0", 1)
	startGSLB(t, cfg, admin)

	dir := t.TempDir()
	rhost, rport, _ := net.SplitHostPort(resolver)
	dhost, dport, _ := net.SplitHostPort(dnsAddr)
	conf := fmt.Sprintf(`server:
  interface: %s
  port: %s
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: %q
  pidfile: ""
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  qname-minimisation: no
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  verbosity: 1
stub-zone:
  name: "coopr.example.com"
  stub-addr: %s@%s
`, rhost, rport, dir, dhost, dport)
	confPath := filepath.Join(dir, "unbound.conf")
	os.WriteFile(confPath, []byte(conf), 0o644)
	cmd := exec.Command(unbound, "-d", "-c", confPath)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	answer := func() string {
		host, port, _ := net.SplitHostPort(resolver)
		out, _ := exec.Command(digTool, "@"+host, "-p", port, "+short", "+time=1", "+tries=1", "api.coopr.example.com", "A").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	eventually(t, 15*time.Second, "unbound answers through the stub zone", func() bool { return answer() == "192.0.2.10" })

	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	took := eventually(t, 15*time.Second, "unbound's answer moves to west", func() bool { return answer() == "192.0.2.20" })
	// interval 500ms x fall 3 + 1 s = 2.5 s is the target; the bound here is
	// generous because this machine's CPU is shared.
	t.Logf("answer through unbound flipped %s after the kill (target 2.5s)", took.Round(10*time.Millisecond))
	if t.Failed() {
		t.Logf("unbound log:\n%s", logs.String())
	}
}
