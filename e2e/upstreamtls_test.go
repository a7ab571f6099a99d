package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// dcStatus is one DC of /api/v1/status with its endpoints' probe results.
type dcStatus struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	Endpoints []struct {
		Address   string `json:"address"`
		Up        bool   `json:"up"`
		LastError string `json:"last_error"`
	} `json:"endpoints"`
}

// apiDCs returns the api service's datacenters from /api/v1/status.
func apiDCs(t *testing.T, admin string) map[string]dcStatus {
	t.Helper()
	var st struct {
		Services []struct {
			Name        string     `json:"name"`
			Datacenters []dcStatus `json:"datacenters"`
		} `json:"services"`
	}
	getJSON(t, "http://"+admin+"/api/v1/status", &st)
	out := map[string]dcStatus{}
	for _, s := range st.Services {
		if s.Name == "api" {
			for _, d := range s.Datacenters {
				out[d.Name] = d
			}
		}
	}
	return out
}

func startTLSDC(t *testing.T, name string, conf *tls.Config) *simulator.Datacenter {
	t.Helper()
	d, err := simulator.StartDatacenter(simulator.DCOptions{Name: name, Servers: 1, UIs: -1, TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestUpstreamTLSProbes runs the simulator over TLS with certificates of CAs
// made here: the right CA and a presented client certificate keep a DC up;
// a certificate of another CA, or no client certificate where one is
// required, takes the DC down with the reason in /api/v1/status; rewriting
// the CA file and reloading reads it again.
func TestUpstreamTLSProbes(t *testing.T) {
	t.Parallel()
	good, other := testpki.NewCA(t, "backends CA"), testpki.NewCA(t, "another CA")
	client := good.Client(t, "coopr-gslb")
	mtls := func(ca *testpki.CA) *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1", "api.backend.internal").TLS},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    good.Pool,
		}
	}
	east := startTLSDC(t, "east", mtls(good))   // right CA, client certificate presented
	west := startTLSDC(t, "west", mtls(other))  // signed by a CA coopr-gslb does not trust
	north := startTLSDC(t, "north", mtls(good)) // wants a client certificate it is not given

	// west's CA file is a file of its own, rewritten below.
	westCA := filepath.Join(t.TempDir(), "west-ca.pem")
	copyCA := func(ca *testpki.CA) {
		b, err := os.ReadFile(ca.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(westCA, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyCA(good)

	admin, httpAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: {http: %q, dns: "", admin: %q}
health: {interval: 300ms, timeout: 250ms, rise: 1, fall: 1}
datacenters:
  - name: east
    priority: 1
    services:
      api:
        endpoints: [%q]
        upstream_tls: {cert_file: %q, key_file: %q}
  - name: west
    priority: 2
    services:
      api:
        endpoints: [%q]
        upstream_tls: {ca_file: %q, cert_file: %q, key_file: %q}
  - name: north
    priority: 3
    services:
      api:
        endpoints: [%q]
services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_body: "OK"}
    upstream_tls: {ca_file: %q, server_name: api.backend.internal}
`, httpAddr, admin, east.Servers()[0].Addr(), client.CertFile, client.KeyFile,
		west.Servers()[0].Addr(), westCA, client.CertFile, client.KeyFile,
		north.Servers()[0].Addr(), good.CAFile)
	g := startGSLB(t, cfg, admin)

	var dcs map[string]dcStatus
	eventually(t, 10*time.Second, "east up, west and north down", func() bool {
		dcs = apiDCs(t, admin)
		return dcs["east"].State == "up" && dcs["west"].State == "down" && dcs["north"].State == "down"
	})
	reason := func(d dcStatus) string {
		b, _ := json.Marshal(d)
		return string(b)
	}
	if r := reason(dcs["west"]); !strings.Contains(r, "x509: certificate signed by unknown authority") {
		t.Errorf("west, signed by another CA, is down without the x509 reason: %s", r)
	}
	if r := reason(dcs["north"]); !strings.Contains(r, "TLS: ") {
		t.Errorf("north, which requires a client certificate, is down without a TLS reason: %s", r)
	}
	if east.Servers()[0].Requests() == 0 {
		t.Error("east's simulator saw no request: the probe did not get through mTLS")
	}

	// The proxy reaches east over the same mTLS (the simulator speaks
	// nothing else): a proxied GET is answered by east.
	before := east.Servers()[0].Requests()
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v2/clusters", nil)
	req.Host = "api.coopr.example.com"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Coopr-GSLB-DC") != "east" {
		t.Errorf("proxied GET over upstream TLS: %d from %q, want 200 from east", res.StatusCode, res.Header.Get("X-Coopr-GSLB-DC"))
	}
	if east.Servers()[0].Requests() == before {
		t.Error("east's simulator saw no proxied request")
	}

	// A reload reads the CA file again: now it trusts west's CA.
	copyCA(other)
	if err := g.cmd.Process.Signal(sighup); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "west up after its CA file changed and a reload", func() bool {
		return apiDCs(t, admin)["west"].State == "up"
	})
}

// TestTLSWithoutSNI: a client that sends no SNI (a raw tls.Dial to the IP
// without ServerName) is served the first certificate of tls.certificates,
// and its request is answered.
func TestTLSWithoutSNI(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	first := testpki.NewCA(t, "first CA")
	firstPair := first.Server(t, "api.coopr.example.com")
	second := testpki.NewCA(t, "second CA").Server(t, "coopr.example.com")
	_, _, httpsAddr := startTLSGSLB(t, func(admin, httpAddr, httpsAddr string) string {
		return withHTTPS(proxyConfig(t, fleet, admin, httpAddr, fmt.Sprintf("tls:\n  certificates:\n    - {cert: %q, key: %q}\n    - {cert: %q, key: %q}\n",
			firstPair.CertFile, firstPair.KeyFile, second.CertFile, second.KeyFile)), httpsAddr)
	})
	for _, sni := range []string{"", "unknown.example.test"} {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("handshake with SNI %q: %v", sni, err)
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		if leaf.Subject.CommonName != "api.coopr.example.com" {
			t.Errorf("SNI %q: served %q, want the first certificate (api.coopr.example.com)", sni, leaf.Subject.CommonName)
		}
		io.WriteString(c, "GET /status HTTP/1.1\r\nHost: api.coopr.example.com\r\nConnection: close\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		res.Body.Close()
		c.Close()
		if res.StatusCode != 200 {
			t.Errorf("SNI %q: GET /status %d", sni, res.StatusCode)
		}
	}
}
