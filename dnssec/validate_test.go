package dnssec

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// requireTool returns the path of an external tool; missing, the test is
// skipped, or failed under CI=true where the tools must be installed.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// testZone is a tiny signed zone served through a Signer: apex SOA, NS and
// DNSKEY, ns1 A, and a GSLB name whose A RRset changes on failover.
type testZone struct {
	s   *Signer
	soa dns.RR
	ns  dns.RR
	ns1 dns.RR
	api atomic.Pointer[[]dns.RR]
}

func (z *testZone) lookup(name string) (map[uint16][]dns.RR, bool) {
	switch dns.CanonicalName(name) {
	case zone:
		return map[uint16][]dns.RR{dns.TypeSOA: {z.soa}, dns.TypeNS: {z.ns}, dns.TypeDNSKEY: z.s.DNSKEYs()}, true
	case "ns1." + zone:
		return map[uint16][]dns.RR{dns.TypeA: {z.ns1}}, true
	case "api." + zone:
		return map[uint16][]dns.RR{dns.TypeA: *z.api.Load()}, true
	}
	return nil, false
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	size := uint16(dns.MinMsgSize)
	if opt := req.IsEdns0(); opt != nil {
		size = max(opt.UDPSize(), dns.MinMsgSize)
		resp.SetEdns0(1232, false)
	}
	if !dns.IsSubDomain(zone, q.Name) {
		resp.Rcode = dns.RcodeRefused
	} else if data, ok := z.lookup(q.Name); !ok {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{z.soa}
	} else if set := data[q.Qtype]; len(set) > 0 {
		for _, r := range set {
			c := dns.Copy(r)
			c.Header().Name = q.Name // the query's case
			resp.Answer = append(resp.Answer, c)
		}
	} else {
		resp.Ns = []dns.RR{z.soa}
	}
	typesAt := func(name string) []uint16 {
		data, _ := z.lookup(name)
		var types []uint16
		for t := range data {
			types = append(types, t)
		}
		return types
	}
	if err := z.s.SignResponse(req, resp, typesAt); err != nil {
		resp = new(dns.Msg)
		resp.SetRcode(req, dns.RcodeServerFailure)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		resp.Truncate(int(size)) // after signing, as SignResponse requires
	}
	w.WriteMsg(resp)
}

// startZone serves z on one loopback port, UDP and TCP.
func startZone(t *testing.T, z *testZone) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		udp := &dns.Server{PacketConn: pc, Handler: z}
		tcp := &dns.Server{Listener: l, Handler: z}
		for _, srv := range []*dns.Server{udp, tcp} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			done := make(chan struct{})
			go func() { defer close(done); srv.ActivateAndServe() }()
			<-started
			t.Cleanup(func() { srv.Shutdown(); <-done })
		}
		return pc.LocalAddr().String()
	}
	t.Fatal("no free port for UDP and TCP")
	return ""
}

// freePort returns a loopback port free for UDP and TCP, drawn below
// Linux's ephemeral range (it starts at 32768) so that no outgoing socket of
// a parallel test takes it before unbound binds it.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func newTestZone(t *testing.T) *testZone {
	clk := newClock()
	clk.now = time.Now()
	z := &testZone{
		s:   mustSigner(t, clk, Options{}),
		soa: rr(t, "coopr.example.com. 60 IN SOA ns1.coopr.example.com. hostmaster.coopr.example.com. 7 3600 600 604800 1"),
		ns:  rr(t, "coopr.example.com. 60 IN NS ns1.coopr.example.com."),
		ns1: rr(t, "ns1.coopr.example.com. 60 IN A 127.0.0.1"),
	}
	both := rrs(t, "api.coopr.example.com. 1 IN A 192.0.2.10", "api.coopr.example.com. 1 IN A 192.0.2.20")
	z.api.Store(&both)
	return z
}

var (
	digStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlagsRE  = regexp.MustCompile(`;; flags: ([a-z ]+);`)
)

// dig asks the resolver at port and returns the status, flags and answer lines.
func dig(t *testing.T, digPath string, port int, args ...string) (status string, flags []string, answer string) {
	t.Helper()
	all := append([]string{"@127.0.0.1", "-p", fmt.Sprint(port), "+dnssec", "+time=3", "+tries=2", "+noall", "+comments", "+answer"}, args...)
	out, err := exec.Command(digPath, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	s := string(out)
	m := digStatusRE.FindStringSubmatch(s)
	f := digFlagsRE.FindStringSubmatch(s)
	if m == nil || f == nil {
		t.Fatalf("dig %v: no header in\n%s", all, s)
	}
	return m[1], strings.Fields(f[1]), s
}

// TestValidatingResolvers: unbound, with the zone's DS as its trust anchor
// and a stub zone to a server signing through the Signer, validates a
// positive answer (before and after a failover changes the RRset), NODATA
// and a nonexistent name (compact denial); delv validates the same.
func TestValidatingResolvers(t *testing.T) {
	unbound := requireTool(t, "unbound")
	digPath := requireTool(t, "dig")
	delv := requireTool(t, "delv")

	z := newTestZone(t)
	addr := startZone(t, z)
	_, zport, _ := net.SplitHostPort(addr)
	ds := z.s.DS()[0]
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-ip6: no
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: %q
  pidfile: ""
  verbosity: 1
  val-log-level: 2
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor: "%s"
  qname-minimisation: no
  num-threads: 1
remote-control:
  control-enable: no
stub-zone:
  name: %q
  stub-addr: 127.0.0.1@%s
`, port, dir, strings.Join(strings.Fields(ds.String()), " "), zone, zport)
	cfgPath := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(filepath.Dir(unbound), "unbound-checkconf"), cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	var logs strings.Builder
	cmd := exec.Command(unbound, "-d", "-c", cfgPath)
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
	// Wait for unbound to answer.
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	ready := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m := new(dns.Msg)
		m.SetQuestion("ns1."+zone, dns.TypeA)
		if _, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("unbound did not answer on port %d", port)
	}

	check := func(name, qtype, wantStatus string, wantAnswer ...string) string {
		t.Helper()
		status, flags, out := dig(t, digPath, port, name, qtype)
		if status != wantStatus {
			t.Fatalf("%s %s: status %s, want %s\n%s", name, qtype, status, wantStatus, out)
		}
		if !strings.Contains(" "+strings.Join(flags, " ")+" ", " ad ") {
			t.Fatalf("%s %s: flags %v, want AD\n%s", name, qtype, flags, out)
		}
		for _, a := range wantAnswer {
			if !strings.Contains(out, a) {
				t.Fatalf("%s %s: answer lacks %q\n%s", name, qtype, a, out)
			}
		}
		return out
	}
	check("api.coopr.example.com.", "A", "NOERROR", "192.0.2.10", "192.0.2.20", "RRSIG")
	check("ApI.cOOpr.example.com.", "A", "NOERROR", "192.0.2.10")
	check("coopr.example.com.", "DNSKEY", "NOERROR", "DNSKEY")
	check("coopr.example.com.", "SOA", "NOERROR", "SOA")
	check("api.coopr.example.com.", "TXT", "NOERROR")          // NODATA
	check("nope.coopr.example.com.", "A", "NOERROR")           // compact denial
	check("deeper.nope.coopr.example.com.", "AAAA", "NOERROR") // compact denial

	// Failover: east leaves the RRset; once the 1 s TTL runs out unbound
	// fetches and validates the new RRset.
	west := rrs(t, "api.coopr.example.com. 1 IN A 192.0.2.20")
	z.api.Store(&west)
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out = check("api.coopr.example.com.", "A", "NOERROR", "192.0.2.20")
		if !strings.Contains(out, "192.0.2.10") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound still answers the old RRset:\n%s", out)
		}
	}

	// delv validates on its own, from the same trust anchor.
	anchor := filepath.Join(dir, "anchor.conf")
	if err := os.WriteFile(anchor, []byte(fmt.Sprintf("trust-anchors {\n  %s static-ds %d %d %d \"%s\";\n};\n",
		zone, ds.KeyTag, ds.Algorithm, ds.DigestType, ds.Digest)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, q := range [][2]string{{"api.coopr.example.com.", "A"}, {"api.coopr.example.com.", "TXT"}, {"nope.coopr.example.com.", "A"}} {
		args := []string{"-a", anchor, "+root=" + zone, "@127.0.0.1", "-p", zport, q[0], q[1]}
		out, err := exec.Command(delv, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "fully validated") {
			t.Errorf("delv %v: %v\n%s", args, err, out)
		}
	}
}
