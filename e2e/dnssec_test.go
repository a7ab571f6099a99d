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

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// validated asks resolver (a validating unbound) with dig +dnssec and
// returns the status, whether AD was set, and the answer section's data.
func validated(digTool, resolver, name, qtype string) (status string, ad bool, answer, out string) {
	host, port, _ := net.SplitHostPort(resolver)
	b, _ := exec.Command(digTool, "@"+host, "-p", port, "+dnssec", "+time=2", "+tries=1", name, qtype).CombinedOutput()
	out = string(b)
	if m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(out); m != nil {
		status = m[1]
	}
	if m := regexp.MustCompile(`;; flags: ([a-z ]+);`).FindStringSubmatch(out); m != nil {
		ad = strings.Contains(" "+m[1]+" ", " ad ")
	}
	sb, _ := exec.Command(digTool, "@"+host, "-p", port, "+short", "+time=2", "+tries=1", name, qtype).CombinedOutput()
	return status, ad, strings.TrimSpace(string(sb)), out
}

// TestDNSSECValidatesThroughFailover: a key made with "coopr-gslb dnssec
// keygen" signs the zone of the real binary; unbound, with the printed DS
// as its only trust anchor, validates (AD=1, never SERVFAIL) a GSLB answer
// before and after east fails, NODATA (AAAA of a v4-only answer) and a
// nonexistent name; delv validates the same directly against coopr-gslb.
func TestDNSSECValidatesThroughFailover(t *testing.T) {
	t.Parallel()
	digTool := requireTool(t, "dig")
	delv := requireTool(t, "delv")
	requireTool(t, "unbound")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "zone.key")
	code, stdout, stderr := runBinary(t, 20*time.Second, "dnssec", "keygen", "-zone", "coopr.example.com", "-out", keyPath)
	if code != 0 {
		t.Fatalf("keygen: exit %d\n%s%s", code, stdout, stderr)
	}
	rr, err := dns.NewRR(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatalf("keygen printed %q: %v", stdout, err)
	}
	ds, ok := rr.(*dns.DS)
	if !ok {
		t.Fatalf("keygen printed %q, not a DS", stdout)
	}

	fleet := startFleet(t)
	admin, dnsAddr := freePort(t), freePort(t)
	cfg := conformanceConfig(fleet, dnsAddr, admin, 2, fmt.Sprintf("  dnssec:\n    key_file: %q\n", keyPath))

	// check reads the key file: a file that is not a key fails, naming the field.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("; not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(conformanceConfig(fleet, dnsAddr, admin, 2, "  dnssec:\n    key_file: bad.key\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runBinary(t, 20*time.Second, "check", "-config", bad); code != 1 || !strings.Contains(errOut, "dns.dnssec.key_file") {
		t.Errorf("check with a bad key file: exit %d, want 1 naming dns.dnssec.key_file\n%s%s", code, out, errOut)
	}
	g := startGSLB(t, cfg, admin)
	resolver := startUnbound(t, dnsAddr, "validator iterator", fmt.Sprintf("  trust-anchor: %q\n  val-log-level: 2\n", strings.Join(strings.Fields(ds.String()), " ")))

	check := func(name, qtype, wantStatus, wantAnswer string) string {
		t.Helper()
		status, ad, answer, out := validated(digTool, resolver, name, qtype)
		if status != wantStatus || !ad || strings.ReplaceAll(answer, " ", "") != strings.ReplaceAll(wantAnswer, " ", "") {
			t.Fatalf("%s %s through unbound: status %s AD %v answer %q, want %s AD answer %q\n%s", name, qtype, status, ad, answer, wantStatus, wantAnswer, out)
		}
		return out
	}
	eventually(t, 15*time.Second, "unbound answers", func() bool {
		status, _, _, _ := validated(digTool, resolver, "api.coopr.example.com", "A")
		return status != ""
	})
	check("api.coopr.example.com", "A", "NOERROR", "192.0.2.10")
	check("API.Coopr.Example.Com", "A", "NOERROR", "192.0.2.10")
	check("api.coopr.example.com", "AAAA", "NOERROR", "")  // NODATA: east has no IPv6
	check("nothere.coopr.example.com", "A", "NOERROR", "") // compact denial
	check("coopr.example.com", "DNSKEY", "NOERROR", readDNSKEY(t, keyPath))

	// delv validates on its own from the same anchor, against coopr-gslb.
	anchor := filepath.Join(dir, "anchor.conf")
	if err := os.WriteFile(anchor, []byte(fmt.Sprintf("trust-anchors {\n  coopr.example.com. static-ds %d %d %d \"%s\";\n};\n",
		ds.KeyTag, ds.Algorithm, ds.DigestType, ds.Digest)), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(dnsAddr)
	delvOK := func(name, qtype, want string) {
		t.Helper()
		args := []string{"-a", anchor, "+root=coopr.example.com", "@" + host, "-p", port, name, qtype}
		out, err := exec.Command(delv, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "fully validated") || !strings.Contains(string(out), want) {
			t.Errorf("delv %v: %v, want %q fully validated\n%s", args, err, want, out)
		}
	}
	delvOK("api.coopr.example.com", "A", "192.0.2.10")
	delvOK("api.coopr.example.com", "AAAA", "")
	delvOK("nothere.coopr.example.com", "A", "")

	// The status API reports the earliest signature expiry.
	var st struct {
		DNSSEC *struct {
			KeyTags        []uint16  `json:"key_tags"`
			EarliestExpiry time.Time `json:"earliest_signature_expiry"`
		} `json:"dnssec"`
	}
	getJSON(t, "http://"+admin+"/api/v1/status", &st)
	if st.DNSSEC == nil || len(st.DNSSEC.KeyTags) != 1 || st.DNSSEC.KeyTags[0] != ds.KeyTag || time.Until(st.DNSSEC.EarliestExpiry) < 24*time.Hour {
		t.Errorf("status dnssec = %+v, want key %d and an expiry over a day away", st.DNSSEC, ds.KeyTag)
	}

	// Failover: east refuses; the answer moves to west and still validates,
	// never SERVFAIL on the way.
	fleet.Datacenter("east").SetFault(simulator.Fault{Mode: simulator.Refuse})
	failed := time.Now()
	for {
		status, ad, answer, out := validated(digTool, resolver, "api.coopr.example.com", "A")
		if status != "NOERROR" || !ad {
			t.Fatalf("during failover: status %s AD %v\n%s", status, ad, out)
		}
		if answer == "192.0.2.20" {
			break
		}
		if time.Since(failed) > 30*time.Second {
			t.Fatalf("the answer did not move to west in 30s: %q", answer)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("through validating unbound: west after %s", time.Since(failed).Round(10*time.Millisecond))
	// AAAA was NODATA, cached for the answer's 2 s TTL: it follows.
	eventually(t, 10*time.Second, "AAAA moves to west", func() bool {
		_, _, answer, _ := validated(digTool, resolver, "api.coopr.example.com", "AAAA")
		return answer == "2001:db8::20"
	})
	check("api.coopr.example.com", "AAAA", "NOERROR", "2001:db8::20")
	check("nothere.coopr.example.com", "AAAA", "NOERROR", "")
	delvOK("api.coopr.example.com", "A", "192.0.2.20")
	_ = g
}

// readDNSKEY returns the rdata of the DNSKEY in a key file, as dig +short
// prints it.
func readDNSKEY(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, ";") || !strings.Contains(line, "DNSKEY") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatal(err)
		}
		k := rr.(*dns.DNSKEY)
		return fmt.Sprintf("%d %d %d %s", k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
	}
	t.Fatalf("no DNSKEY in %s", path)
	return ""
}
