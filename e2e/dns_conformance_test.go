package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// conformanceConfig is a two-DC configuration for the DNS conformance
// checks: east has only IPv4 addresses, west both families; api is
// failover, near is nearest with the networks of issue 15 (east
// 10.0.0.0/8, west 10.2.0.0/16 and 10.1.0.128/25 inside it).
func conformanceConfig(fleet *simulator.Fleet, dnsAddr, adminAddr string, ttl int, dnsExtra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  http: \"\"\n  dns: %q\n  admin: %q\n", dnsAddr, adminAddr)
	b.WriteString("health:\n  interval: 500ms\n  timeout: 400ms\n  rise: 2\n  fall: 3\ndatacenters:\n")
	nets := map[string]string{"east": `["10.0.0.0/8"]`, "west": `["10.2.0.0/16", "10.1.0.128/25"]`}
	v6 := map[string]string{"east": "", "west": `, "2001:db8::20"`}
	for i, dc := range fleet.Datacenters() {
		fmt.Fprintf(&b, "  - name: %s\n    priority: %d\n    client_networks: %s\n    services:\n", dc.Name(), i+1, nets[dc.Name()])
		for _, svc := range []string{"api", "near"} {
			fmt.Fprintf(&b, "      %s:\n        endpoints: [%s]\n        addresses: [\"192.0.2.%d\"%s]\n", svc, addrs(dc.Servers()), 10*(i+1), v6[dc.Name()])
		}
	}
	fmt.Fprintf(&b, `services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
    dns_ttl: %d
  near:
    hostnames: ["near.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
    policy: nearest
    dns_ttl: 300
dns:
  zone: "coopr.example.com."
  soa: {negative_ttl: 60}
%s`, ttl, dnsExtra)
	return b.String()
}

// TestDNSConformanceWithDig checks the fixes of issue 15 with dig and kdig.
func TestDNSConformanceWithDig(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	kdig := requireTool(t, "kdig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	extra := `  nsid: coopr-e2e
  records:
    - "redir 300 IN DNAME target.example.net."
    - "child 300 IN NS ns.child"
    - "ns.child 300 IN A 192.0.2.100"
    - "child 300 IN DS 12345 13 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE"
    - "tochild 300 IN CNAME www.child"
`
	cfg := conformanceConfig(fleet, dnsAddr, admin, 5, extra)
	g := startGSLB(t, cfg, admin)

	for _, tc := range []struct {
		name string
		tool string
		args []string
		want []string
		not  []string
	}{
		{"NOTIMP copies RD and CD only, keeps OPT and the question", digTool,
			[]string{"+opcode=15", "+tcflag", "+raflag", "+adflag", "+cdflag", "+rec", "coopr.example.com", "SOA"},
			[]string{"status: NOTIMP", "flags: qr rd cd;", "OPT PSEUDOSECTION", "QUERY: 1,"}, []string{" tc", " ra", " ad"}},
		{"NOTIFY is NOTIMP with OPT", digTool, []string{"+opcode=notify", "coopr.example.com", "SOA"},
			[]string{"status: NOTIMP", "OPT PSEUDOSECTION", "QUERY: 1,"}, nil},
		{"BADVERS", kdig, []string{"+edns=1", "api.coopr.example.com", "A"}, []string{"BADVERS"}, nil},
		{"TSIG with an unknown key: NOTAUTH, BADKEY", digTool, []string{"-y", "hmac-sha256:nokey:c2VjcmV0c2VjcmV0c2VjcmV0", "api.coopr.example.com", "A"},
			[]string{"NOTAUTH", "BADKEY"}, []string{"192.0.2.10"}},
		{"NSID", digTool, []string{"+nsid", "api.coopr.example.com", "A"}, []string{`("coopr-e2e")`}, nil},
		{"server cookie", digTool, []string{"+cookie", "api.coopr.example.com", "A"}, []string{"COOKIE: ", "(good)"}, nil},
		{"EDE outside the zone", digTool, []string{"www.example.org", "A"}, []string{"status: REFUSED", "EDE: 20 (Not Authoritative)"}, nil},
		{"DNAME synthesis", digTool, []string{"a.redir.coopr.example.com", "A"},
			[]string{"redir.coopr.example.com. 300\tIN\tDNAME\ttarget.example.net.", "a.redir.coopr.example.com. 300 IN CNAME a.target.example.net."}, nil},
		{"static DS at the cut", digTool, []string{"child.coopr.example.com", "DS"}, []string{"flags: qr aa;", "IN\tDS\t12345 13 1"}, nil},
		{"CNAME into a delegation: referral after it", digTool, []string{"tochild.coopr.example.com", "A"},
			[]string{"IN\tCNAME\twww.child.coopr.example.com.", "child.coopr.example.com. 300\tIN\tNS\tns.child.coopr.example.com.", "ns.child.coopr.example.com. 300 IN A\t192.0.2.100"}, nil},
		{"SOA timers and MINIMUM", digTool, []string{"coopr.example.com", "SOA"}, []string{" 14400 3600 1209600 3600"}, nil},
		{"AAAA NODATA takes the answer's TTL", digTool, []string{"api.coopr.example.com", "AAAA"}, []string{"ANSWER: 0", "coopr.example.com.\t5\tIN\tSOA"}, nil},
		{"ECS scope under nearest is longer than a /8 query", kdig, []string{"+subnet=10.0.0.0/8", "near.coopr.example.com", "A"},
			[]string{"CLIENT-SUBNET: 10.0.0.0/8/16", "192.0.2.10"}, nil},
		{"ECS scope for a client next to a nested network", kdig, []string{"+subnet=10.1.5.0/24", "near.coopr.example.com", "A"},
			[]string{"CLIENT-SUBNET: 10.1.5.0/24/22", "192.0.2.10"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := digAny(t, tc.tool, dnsAddr, tc.args...)
			norm := regexp.MustCompile(`[ \t]+`).ReplaceAllString(out, " ")
			for _, w := range tc.want {
				if !strings.Contains(out, w) && !strings.Contains(norm, regexp.MustCompile(`[ \t]+`).ReplaceAllString(w, " ")) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if flags := regexp.MustCompile(`flags:[^;]*;`).FindString(out); strings.HasPrefix(n, " ") && strings.Contains(flags, n) {
					t.Errorf("flags %q have %q", flags, n)
				} else if !strings.HasPrefix(n, " ") && strings.Contains(out, n) {
					t.Errorf("has %q:\n%s", n, out)
				}
			}
		})
	}

	// Every DC down under serve_all: the answer comes with an EDE saying so.
	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	fleet.Datacenter("west").SetFault(simulator.Fault{Mode: simulator.Refuse})
	eventually(t, 15*time.Second, "an EDE on the all-down answer", func() bool {
		out := digAny(t, digTool, dnsAddr, "api.coopr.example.com", "A")
		return strings.Contains(out, "EDE: 0 (Other): (every datacenter is down") && strings.Contains(out, "192.0.2.10")
	})
	fleet.Datacenter("east").SetFault(simulator.Fault{})
	fleet.Datacenter("west").SetFault(simulator.Fault{})

	// The serial derives from the content: a restart with the same
	// configuration serves the same one.
	serial := func() string {
		return strings.Fields(digAny(t, digTool, dnsAddr, "+short", "coopr.example.com", "SOA"))[2]
	}
	first := serial()
	g.stop()
	startGSLBFile(t, g.cfgPath, admin)
	if again := serial(); again != first {
		t.Errorf("serial %s after a restart with the same configuration, want %s", again, first)
	}
}

// digAny is dig without failing on a nonzero exit (dig exits 9 or 10 on
// a TSIG error but still prints the response).
func digAny(t *testing.T, tool, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	opts := []string{"+time=2", "+tries=2"}
	if filepath.Base(tool) == "kdig" {
		opts = []string{"+timeout=2", "+retry=1"}
	}
	all := append(append([]string{"@" + host, "-p", port, "+norec"}, opts...), args...)
	out, _ := exec.Command(tool, all...).CombinedOutput()
	return string(out)
}

// startUnbound runs unbound in front of dnsAddr with the given extra server
// options and returns its address.
func startUnbound(t *testing.T, dnsAddr, modules, extra string) string {
	t.Helper()
	unbound := requireTool(t, "unbound")
	resolver := freePort(t)
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
  module-config: %q
  qname-minimisation: no
  verbosity: 1
%s
stub-zone:
  name: "coopr.example.com"
  stub-addr: %s@%s
`, rhost, rport, dir, modules, extra, dhost, dport)
	confPath := filepath.Join(dir, "unbound.conf")
	os.WriteFile(confPath, []byte(conf), 0o644)
	cmd := exec.Command(unbound, "-d", "-c", confPath)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("unbound log:\n%s", logs.String())
		}
	})
	return resolver
}

func resolve(digTool, resolver string, args ...string) string {
	host, port, _ := net.SplitHostPort(resolver)
	all := append([]string{"@" + host, "-p", port, "+short", "+time=1", "+tries=1"}, args...)
	out, _ := exec.Command(digTool, all...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// TestDNSECSScopeThroughUnboundSubnetcache: unbound's subnetcache caches an
// answer for the scope we return. After a cache fill by a client of east's
// /8, clients of each of west's nested networks still get west.
//
// The clients are all on loopback, so unbound cannot derive their networks
// from their addresses; they send the Client Subnet themselves (dig
// +subnet) and unbound, with client-subnet-always-forward, forwards it and
// caches per scope as it would for its own clients.
func TestDNSECSScopeThroughUnboundSubnetcache(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	startGSLB(t, conformanceConfig(fleet, dnsAddr, admin, 5, ""), admin)
	dhost, _, _ := net.SplitHostPort(dnsAddr)
	resolver := startUnbound(t, dnsAddr, "subnetcache iterator", fmt.Sprintf(`  send-client-subnet: %s
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 32`, dhost))

	ask := func(subnet string) string {
		return resolve(digTool, resolver, "+subnet="+subnet, "near.coopr.example.com", "A")
	}
	eventually(t, 15*time.Second, "unbound answers through the stub zone", func() bool { return ask("10.1.5.0/24") == "192.0.2.10" })
	for _, tc := range []struct{ subnet, want string }{
		{"10.1.5.0/24", "192.0.2.10"}, // east, now cached
		{"10.9.0.0/16", "192.0.2.10"},
		{"10.2.5.0/24", "192.0.2.20"},
		{"10.1.0.128/25", "192.0.2.20"},
		{"10.1.0.200/32", "192.0.2.20"},
		{"10.1.0.5/32", "192.0.2.10"},
		{"10.0.0.0/8", "192.0.2.10"},
		{"10.2.5.0/24", "192.0.2.20"}, // again, from the cache
	} {
		if got := ask(tc.subnet); got != tc.want {
			t.Errorf("client %s through unbound: %q, want %s", tc.subnet, got, tc.want)
		}
	}
}

// TestDNSNodataFollowsFailoverThroughUnbound: east has no IPv6 address, so
// AAAA is NODATA while east serves; after east fails, AAAA (west's address)
// must show through a caching unbound as soon as A does, because NODATA is
// cached no longer than the A answer.
func TestDNSNodataFollowsFailoverThroughUnbound(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	startGSLB(t, conformanceConfig(fleet, dnsAddr, admin, 3, ""), admin)
	resolver := startUnbound(t, dnsAddr, "iterator", "")

	eventually(t, 15*time.Second, "unbound answers A", func() bool {
		return resolve(digTool, resolver, "api.coopr.example.com", "A") == "192.0.2.10"
	})
	if got := resolve(digTool, resolver, "api.coopr.example.com", "AAAA"); got != "" {
		t.Fatalf("AAAA while east serves: %q, want NODATA", got)
	}
	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	failed := time.Now()
	var aAt, aaaaAt time.Duration
	deadline := time.Now().Add(40 * time.Second)
	for (aAt == 0 || aaaaAt == 0) && time.Now().Before(deadline) {
		if aAt == 0 && resolve(digTool, resolver, "api.coopr.example.com", "A") == "192.0.2.20" {
			aAt = time.Since(failed)
		}
		if aaaaAt == 0 && resolve(digTool, resolver, "api.coopr.example.com", "AAAA") == "2001:db8::20" {
			aaaaAt = time.Since(failed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("through unbound after east failed: A moved after %s, AAAA after %s", aAt.Round(10*time.Millisecond), aaaaAt.Round(10*time.Millisecond))
	if aAt == 0 || aaaaAt == 0 {
		t.Fatalf("A moved: %v, AAAA moved: %v (within 40s)", aAt, aaaaAt)
	}
	// Both are bounded by detection + the 3 s TTL; allow one poll round of
	// slack on a shared machine.
	if aaaaAt > aAt+2*time.Second {
		t.Errorf("AAAA moved %s after A: NODATA outlived the answer's TTL", aaaaAt-aAt)
	}
}

// TestDNSTCPFloodDoesNotLockOut opens more idle and garbage connections
// than tcp_max_connections (the default 1,000 plus some); a well-behaved
// TCP client still gets its answer.
func TestDNSTCPFloodDoesNotLockOut(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	startGSLB(t, conformanceConfig(fleet, dnsAddr, admin, 5, "  tcp_idle_timeout: 60s\n"), admin)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range 1100 {
		c, err := net.DialTimeout("tcp", dnsAddr, time.Second)
		if err != nil {
			continue
		}
		conns = append(conns, c)
		switch i % 4 {
		case 0: // idle
		case 1:
			c.Write([]byte{0, 0}) // zero-length frames
		case 2:
			c.Write([]byte{0, 3, 1, 2, 3}) // shorter than a header
		case 3:
			c.Write([]byte{0, 200, 1}) // a frame never completed
		}
	}
	out := digAny(t, digTool, dnsAddr, "+tcp", "api.coopr.example.com", "A")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.10") {
		t.Errorf("a TCP query after %d flood connections:\n%s", len(conns), out)
	}
}

// TestDNSCookiesPassRRL: under a tight RRL, a client that returns its
// valid server cookie (dig +cookie=...) is answered every time; one
// without cookies is limited.
func TestDNSCookiesPassRRL(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	startGSLB(t, conformanceConfig(fleet, dnsAddr, admin, 5, "  rrl: {responses_per_second: 1, slip: 1}\n"), admin)
	out := digAny(t, digTool, dnsAddr, "+cookie=0102030405060708", "api.coopr.example.com", "A")
	m := regexp.MustCompile(`COOKIE: ([0-9a-f]{48})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no server cookie:\n%s", out)
	}
	for i := range 10 {
		out := digAny(t, digTool, dnsAddr, "+cookie="+m[1], "+ignore", "api.coopr.example.com", "A")
		if !strings.Contains(out, "192.0.2.10") || strings.Contains(out, "BADCOOKIE") || !strings.Contains(out, "(UDP)") {
			t.Fatalf("query %d with a valid cookie not answered over UDP at once:\n%s", i, out)
		}
	}
	// A client cookie alone is limited: BADCOOKIE with a new cookie, and
	// dig retries (over TCP) and gets its answer.
	sawBad := false
	for range 10 {
		out := digAny(t, digTool, dnsAddr, "+cookie=0102030405060708", "api.coopr.example.com", "A")
		if strings.Contains(out, "BADCOOKIE") {
			sawBad = true
			if !strings.Contains(out, "192.0.2.10") {
				t.Errorf("no answer after BADCOOKIE:\n%s", out)
			}
			break
		}
	}
	if !sawBad {
		t.Error("a rate-limited client cookie never got BADCOOKIE")
	}
	limited := false
	for range 10 {
		out := digAny(t, digTool, dnsAddr, "+nocookie", "+ignore", "api.coopr.example.com", "A")
		if !strings.Contains(out, "192.0.2.10") {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("a client without cookies was never rate limited")
	}
}
