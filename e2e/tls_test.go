package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/internal/acmetest"
)

// withHTTPS adds listen.https to a config rendered by twoDCConfig.
func withHTTPS(cfg, httpsAddr string) string {
	return strings.Replace(cfg, "listen:\n", fmt.Sprintf("listen:\n  https: %q\n", httpsAddr), 1)
}

// echoOverHTTPS asks the simulator's /echo through the TLS listener and
// checks what every HTTPS request must show: 200, HTTP/2, and that the
// backend was told the client spoke HTTPS.
func echoOverHTTPS(t *testing.T, client *http.Client, host string) (dc string) {
	t.Helper()
	res, err := client.Get("https://" + host + "/echo")
	if err != nil {
		t.Fatalf("HTTPS GET %s: %v", host, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("HTTPS GET %s: %d over %s: %s", host, res.StatusCode, res.Proto, body)
	}
	var echo struct {
		DC      string              `json:"dc"`
		Host    string              `json:"host"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(body, &echo); err != nil {
		t.Fatalf("echo: %v in %s", err, body)
	}
	if p := http.Header(echo.Headers).Get("X-Forwarded-Proto"); p != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q, want https", p)
	}
	if echo.Host != host {
		t.Errorf("backend saw Host %q, want %q", echo.Host, host)
	}
	if got := res.Header.Get("X-Coopr-GSLB-DC"); got != echo.DC {
		t.Errorf("X-Coopr-GSLB-DC %q but %q answered", got, echo.DC)
	}
	return echo.DC
}

// handshake reports whether a TLS handshake for serverName with httpsAddr
// succeeds with roots trusted.
func handshake(httpsAddr, serverName string, roots *x509.CertPool) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: serverName, RootCAs: roots}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", httpsAddr)
	if err == nil {
		c.Close()
	}
	return err
}

// TestTLSStaticCertificates serves HTTPS with a certificate from files that
// a private CA signed: HTTP/2, the request proxied to the primary DC, and
// the affinity cookie marked Secure on TLS (and only there).
func TestTLSStaticCertificates(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	cert := acmetest.WriteCert(t, "api.coopr.example.com", "coopr.example.com")
	g, httpAddr, httpsAddr := startTLSGSLB(t, func(admin, httpAddr, httpsAddr string) string {
		return withHTTPS(proxyConfig(t, fleet, admin, httpAddr, fmt.Sprintf("tls:\n  certificates:\n    - {cert: %q, key: %q}\n", cert.CertFile, cert.KeyFile)), httpsAddr)
	})
	client := acmetest.HTTPSClient(cert.Roots, httpsAddr)
	wantCertExpiry(t, g.admin, "api.coopr.example.com", "coopr.example.com")

	if dc := echoOverHTTPS(t, client, "api.coopr.example.com"); dc != "east" {
		t.Errorf("HTTPS API request served by %q, want east (priority 1)", dc)
	}
	res, err := client.Get("https://api.coopr.example.com/v2/clusters")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 || !strings.HasPrefix(string(body), "[") {
		t.Fatalf("GET /v2/clusters over HTTPS: %d over %s: %s", res.StatusCode, res.Proto, body)
	}
	if res.TLS == nil || res.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN did not negotiate h2: %+v", res.TLS)
	}

	// The UI's affinity cookie is Secure over TLS, not over plain HTTP.
	cookie := func(res *http.Response) *http.Cookie {
		for _, c := range res.Cookies() {
			if c.Name == "coopr_gslb_dc" {
				return c
			}
		}
		t.Fatalf("no affinity cookie in %q", res.Header.Values("Set-Cookie"))
		return nil
	}
	res, err = client.Get("https://coopr.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("UI over HTTPS: %d", res.StatusCode)
	}
	if c := cookie(res); !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("affinity cookie over TLS: %q, want Secure; HttpOnly; SameSite=Lax", res.Header.Values("Set-Cookie"))
	}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/", nil)
	req.Host = "coopr.example.com"
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if c := cookie(res); c.Secure {
		t.Errorf("affinity cookie over plain HTTP is Secure: %q", res.Header.Values("Set-Cookie"))
	}

	// Without redirect_http, plain HTTP keeps proxying; a name the
	// certificate does not cover gets no certificate.
	if res.StatusCode != 200 {
		t.Errorf("plain HTTP without redirect_http: %d", res.StatusCode)
	}
	if err := handshake(httpsAddr, "evil.example.test", cert.Roots); err == nil {
		t.Error("a TLS handshake for a name no certificate covers succeeded")
	}
}

// TestTLSReloadRereadsCertificates renews the certificate files in place,
// as certbot or a corporate PKI does, and sends SIGHUP: the listener then
// presents the new certificate. A reload whose tls.certificates names a
// missing file fails like any bad configuration: the status, the metric and
// the log say so, nothing of the file applies, and the renewed certificate
// is still served.
func TestTLSReloadRereadsCertificates(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	live := t.TempDir()
	certFile, keyFile := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	a := acmetest.WriteCert(t, "api.coopr.example.com", "coopr.example.com")
	b := acmetest.WriteCert(t, "api.coopr.example.com", "coopr.example.com")
	a.Install(t, certFile, keyFile)
	g, _, httpsAddr := startTLSGSLB(t, func(admin, httpAddr, httpsAddr string) string {
		return withHTTPS(proxyConfig(t, fleet, admin, httpAddr, fmt.Sprintf("tls:\n  certificates:\n    - {cert: %q, key: %q}\n", certFile, keyFile)), httpsAddr)
	})
	const host = "api.coopr.example.com"
	if err := handshake(httpsAddr, host, a.Roots); err != nil {
		t.Fatalf("the first certificate: %v", err)
	}

	b.Install(t, certFile, keyFile)
	if err := g.cmd.Process.Signal(sighup); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the renewed certificate after SIGHUP", func() bool {
		return handshake(httpsAddr, host, b.Roots) == nil
	})
	if err := handshake(httpsAddr, host, a.Roots); err == nil {
		t.Error("the replaced certificate is still served")
	}
	echoOverHTTPS(t, acmetest.HTTPSClient(b.Roots, httpsAddr), host)

	// A missing file fails the whole reload: the policy change in the same
	// file does not apply either.
	good, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(live, "missing.pem")
	bad := strings.NewReplacer(certFile, missing, "policy: failover", "policy: weighted").Replace(string(good))
	if err := os.WriteFile(g.cfgPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, g.admin, "reload", "-token", testToken)
	if code == 0 || !strings.Contains(errOut, "tls.certificates[0].cert") {
		t.Errorf("reload naming a missing certificate file: exit %d, %s", code, errOut)
	}
	var st struct {
		Reload struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"reload"`
		Services []struct {
			Name   string `json:"name"`
			Policy string `json:"policy"`
		} `json:"services"`
	}
	getJSON(t, "http://"+g.admin+"/api/v1/status", &st)
	if st.Reload.OK || !strings.Contains(st.Reload.Error, "tls.certificates[0].cert") || !strings.Contains(st.Reload.Error, missing) {
		t.Errorf("reload status after a missing certificate file: %+v", st.Reload)
	}
	for _, svc := range st.Services {
		if svc.Name == "api" && svc.Policy != "failover" {
			t.Errorf("the failed reload applied policy %q", svc.Policy)
		}
	}
	res, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), "coopr_gslb_config_last_reload_successful 0") {
		t.Error("metrics do not show the failed reload")
	}
	if logs := g.stderr.String(); !strings.Contains(logs, "reload failed") || !strings.Contains(logs, missing) {
		t.Errorf("the log does not name the missing file:\n%s", logs)
	}
	if err := handshake(httpsAddr, host, b.Roots); err != nil {
		t.Errorf("after the failed reload: %v", err)
	}
	echoOverHTTPS(t, acmetest.HTTPSClient(b.Roots, httpsAddr), host)
}

// TestTLSACMEFromPebble lets the binary obtain its certificates by itself
// from Pebble, an ACME server started in this process on loopback, over
// HTTP-01 on the plain listener (which redirects everything else to HTTPS).
// Pebble's validation can reach only the plain listener: its TLS-ALPN-01
// port is the plain one too, so a TLS-ALPN-01 attempt fails and only
// HTTP-01 can succeed.
func TestTLSACMEFromPebble(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	var pb *acmetest.Server
	var storage string
	g, httpAddr, httpsAddr := startTLSGSLB(t, func(admin, httpAddr, httpsAddr string) string {
		_, httpPort, _ := net.SplitHostPort(httpAddr)
		vaHTTP, _ := strconv.Atoi(httpPort)
		pb, storage = acmetest.Start(t, vaHTTP, vaHTTP), t.TempDir()
		return withHTTPS(proxyConfig(t, fleet, admin, httpAddr, fmt.Sprintf(`tls:
  redirect_http: true
  acme:
    email: ops@coopr.example.com
    ca: %q
    ca_root: %q
    storage: %q
    on_demand: true
`, pb.DirURL, pb.CARoot, storage)), httpsAddr)
	})

	// Certificates are obtained ahead of use, with no handshake asking:
	// wait for both services' names to land in the configured storage.
	names := []string{"api.coopr.example.com", "coopr.example.com"}
	eventually(t, 90*time.Second, "certificates from Pebble in tls.acme.storage", func() bool {
		for _, n := range names {
			if m, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", n, n+".crt")); len(m) == 0 {
				return false
			}
		}
		return true
	})
	wantCertExpiry(t, g.admin, names...)
	// certmagic logs each challenge answer; the plain listener answered them.
	if logs := g.stderr.String(); !strings.Contains(logs, "served key authentication") || !strings.Contains(logs, "http-01") {
		t.Errorf("coopr-gslb did not log serving an HTTP-01 challenge:\n%s", logs)
	}

	client := acmetest.HTTPSClient(pb.Roots, httpsAddr)
	// The listener may still be loading the stored certificate; give it a
	// moment, bounded.
	eventually(t, 10*time.Second, "HTTPS handshake with Pebble's certificate", func() bool {
		return handshake(httpsAddr, "api.coopr.example.com", pb.Roots) == nil
	})
	if dc := echoOverHTTPS(t, client, "api.coopr.example.com"); dc != "east" {
		t.Errorf("HTTPS API request served by %q, want east", dc)
	}
	res, err := client.Get("https://coopr.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("UI over HTTPS: %d over %s", res.StatusCode, res.Proto)
	}
	leaf := res.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname("coopr.example.com"); err != nil || leaf.Issuer.CommonName == "" || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Errorf("UI certificate for %v issued by %q (%v), want Pebble's", leaf.DNSNames, leaf.Issuer.CommonName, err)
	}
	if sc := res.Header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") {
		t.Errorf("affinity cookie over TLS lacks Secure: %q", sc)
	}

	// A name no service claims gets no certificate, and on-demand issuance
	// does not even ask Pebble for one.
	before := pb.Orders()
	if err := handshake(httpsAddr, "evil.example.test", pb.Roots); err == nil {
		t.Error("a certificate was served for a name no service claims")
	}
	if _, err := client.Get("https://unclaimed.coopr.example.com/"); err == nil {
		t.Error("an HTTPS request for an unclaimed name under the zone succeeded")
	}
	if after := pb.Orders(); after != before {
		t.Errorf("%d certificates ordered from Pebble for unclaimed SNIs", after-before)
	}

	// Plain HTTP redirects to HTTPS for claimed hosts (the challenges above
	// were answered on this same listener), and refuses other hosts rather
	// than redirecting them.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v2/clusters?x=1", nil)
	req.Host = "api.coopr.example.com"
	res, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	want := "https://api.coopr.example.com:" + httpsPort + "/v2/clusters?x=1"
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != want {
		t.Errorf("plain HTTP: %d to %q, want 308 to %q", res.StatusCode, res.Header.Get("Location"), want)
	}
	req.Host = "evil.example.test"
	res, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest && res.StatusCode != http.StatusNotFound {
		t.Errorf("plain HTTP for an unclaimed host: %d, want 421 or 404 (no open redirect)", res.StatusCode)
	}
}

// errPortTaken says another process bound a port between freePort and the
// binary's own bind.
var errPortTaken = errors.New("a chosen port was taken before coopr-gslb bound it")

// startTLSGSLB starts coopr-gslb on a config that render makes for fresh
// loopback addresses (admin, plain HTTP, TLS), and waits until it is ready.
// An address freePort returns is free when chosen, but while the tests run
// in parallel another process (a probe's outgoing connection, a listener on
// port 0) may take it before the binary binds it; the binary then exits at
// once saying so, and this tries again with new addresses, at most 3 times.
func startTLSGSLB(t *testing.T, render func(admin, httpAddr, httpsAddr string) string) (g *gslb, httpAddr, httpsAddr string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		admin := freePort(t)
		httpAddr, httpsAddr = freePort(t), freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(cfgPath, []byte(render(admin, httpAddr, httpsAddr)), 0o644); err != nil {
			t.Fatal(err)
		}
		g, err := tryStartGSLB(t, cfgPath, admin)
		if err == nil {
			return g, httpAddr, httpsAddr
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; choosing other ports", attempt, err)
	}
}

// tryStartGSLB is startGSLBFile that returns errPortTaken, rather than
// failing the test, when the process exits before it is ready because an
// address was in use.
func tryStartGSLB(t *testing.T, cfgPath, admin string) (*gslb, error) {
	t.Helper()
	g := &gslb{t: t, stderr: &syncBuffer{}, stdout: &syncBuffer{}, stateLog: filepath.Join(t.TempDir(), "state.jsonl"), admin: admin, done: make(chan struct{}), cfgPath: cfgPath}
	g.cmd = exec.Command(binary, "run", "-config", cfgPath, "-state-log", g.stateLog)
	g.cmd.Stdout, g.cmd.Stderr = g.stdout, g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.stop)
	const limit = 15 * time.Second
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			if logs := g.stderr.String(); strings.Contains(logs, "address already in use") {
				lines := strings.Split(strings.TrimSpace(logs), "\n")
				return nil, fmt.Errorf("%w: %s", errPortTaken, lines[len(lines)-1])
			}
			t.Fatalf("coopr-gslb exited early:\n%s", g.stderr.String())
		default:
		}
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("coopr-gslb not ready after %s:\n%s", limit, g.stderr.String())
	return nil, nil
}
