package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/miekg/dns"
)

const testConfig = `listen: {dns: "127.0.0.1:8053", http: "", admin: ""}
datacenters:
  - name: east
    priority: 1
    services: {api: {endpoints: ["127.0.0.1:55054"], addresses: ["192.0.2.10"]}}
services:
  api: {hostnames: ["api.coopr.example.com"]}
dns:
  zone: coopr.example.com
`

func runDNSSEC(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dnssecMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func parseDS(t *testing.T, line string) *dns.DS {
	t.Helper()
	rr, err := dns.NewRR(line)
	if err != nil {
		t.Fatalf("DS line %q: %v", line, err)
	}
	ds, ok := rr.(*dns.DS)
	if !ok {
		t.Fatalf("%q is not a DS", line)
	}
	return ds
}

func TestDNSSECKeygenAndDS(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1.key")
	code, out, stderr := runDNSSEC(t, "keygen", "-zone", "Coopr.Example.com", "-out", keyFile)
	if code != 0 {
		t.Fatalf("keygen exit %d: %s", code, stderr)
	}
	ds := parseDS(t, strings.TrimSpace(out))
	k, err := dnssec.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	want := k.DNSKEY.ToDS(dns.SHA256)
	if ds.Hdr.Name != "coopr.example.com." || ds.DigestType != dns.SHA256 || ds.Algorithm != 13 || ds.KeyTag != k.Tag || !strings.EqualFold(ds.Digest, want.Digest) {
		t.Fatalf("printed DS %s, want %s", ds, want)
	}
	if k.DNSKEY.Flags != 257 {
		t.Fatalf("flags %d, want 257", k.DNSKEY.Flags)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(keyFile)
	if code, _, stderr := runDNSSEC(t, "keygen", "-zone", "coopr.example.com.", "-out", keyFile); code == 0 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Fatalf("second keygen to the same file: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("key file changed")
	}

	// A pre-published second key: ds prints both, active first.
	key2 := filepath.Join(dir, "k2.key")
	if code, _, stderr := runDNSSEC(t, "keygen", "-zone", "coopr.example.com.", "-out", key2); code != 0 {
		t.Fatal(stderr)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(testConfig+"  dnssec:\n    key_file: [k1.key, "+key2+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runDNSSEC(t, "ds", "-config", cfg)
	if code != 0 {
		t.Fatalf("ds exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("ds printed %q, want two DS lines", out)
	}
	if got := parseDS(t, lines[0]); got.KeyTag != k.Tag || !strings.EqualFold(got.Digest, want.Digest) {
		t.Fatalf("first DS %s, want the active key's %s", got, want)
	}
	k2, _ := dnssec.LoadKeyFile(key2)
	if got := parseDS(t, lines[1]); got.KeyTag != k2.Tag || !strings.EqualFold(got.Digest, k2.DS().Digest) {
		t.Fatalf("second DS %s, want %s", got, k2.DS())
	}
}

func TestDNSSECCommandErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, 2, "Usage"},
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"keygen", "-h"}, 0, "-zone"},
		{[]string{"ds", "-h"}, 0, "-config"},
		{[]string{"keygen", "-zone", "coopr.example.com."}, 2, "-out are required"},
		{[]string{"ds", "-config", cfg}, 1, "key_file is not set"},
		{[]string{"ds", "-config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
	}
	for _, tc := range cases {
		code, out, stderr := runDNSSEC(t, tc.args...)
		if code != tc.code || !strings.Contains(out+stderr, tc.contains) {
			t.Errorf("dnssec %q: exit %d, output %q; want exit %d containing %q", tc.args, code, out+stderr, tc.code, tc.contains)
		}
	}
}
