package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/internal/acmetest"
)

// tlsEnv is a proxy serving a plain and a TLS listener, as main wires it.
type tlsEnv struct {
	*env
	tls             *TLS
	httpLn, httpsLn net.Listener
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// startTLSEnv loads yaml (with {{w}} a backend), binds both listeners, and
// serves them with tlsOpts completed by the bound addresses.
func startTLSEnv(t *testing.T, yaml string, addrs map[string]string, httpLn, httpsLn net.Listener, httpForACME bool) *tlsEnv {
	t.Helper()
	e := newEnv(t, yaml, addrs, envOptions{noFront: true})
	opts := TLSOptions{HTTPSAddr: httpsLn.Addr().String(), Snapshot: e.engine.Snapshot}
	if httpForACME {
		opts.HTTPAddr = httpLn.Addr().String()
	}
	if testing.Verbose() {
		opts.Logger = slogForTest(t)
	}
	tl, err := NewTLS(e.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tl.Close)
	plain := e.proxy.Server("")
	plain.Handler = tl.HTTPHandler(e.proxy)
	secure := e.proxy.TLSServer("", tl)
	go func() { _ = plain.Serve(httpLn) }()
	go func() { _ = secure.ServeTLS(httpsLn, "", "") }()
	t.Cleanup(func() { _ = e.proxy.Shutdown(context.Background(), plain, secure) })
	return &tlsEnv{env: e, tls: tl, httpLn: httpLn, httpsLn: httpsLn}
}

func tlsYAML(extra string) string {
	return `
listen: {http: "127.0.0.1:0", https: "127.0.0.1:0", dns: "", admin: ""}
datacenters:
  - name: west
    services: {api: {endpoints: ["{{w}}"]}}
services:
  api:
    hostnames: [api.coopr.test, "*.tenants.coopr.test"]
    affinity: cookie
` + extra
}

func TestTLSWithACME(t *testing.T) {
	for _, tc := range []struct {
		name        string
		httpForACME bool // else only TLS-ALPN-01 can succeed
	}{
		{"http-01", true},
		{"tls-alpn-01", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := newBackend(t, "west", func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "west "+r.Header.Get("X-Forwarded-Proto"))
			})
			httpLn, httpsLn := listen(t), listen(t)
			vaHTTP, vaTLS := port(httpLn), port(httpsLn)
			if tc.httpForACME {
				// Validation can only succeed over HTTP-01.
				vaTLS = port(httpLn)
			} else {
				vaHTTP = port(httpsLn)
			}
			pb := acmetest.Start(t, vaHTTP, vaTLS)
			storage := t.TempDir()
			te := startTLSEnv(t, tlsYAML(`
tls:
  redirect_http: true
  acme:
    email: ops@coopr.test
    ca: `+pb.DirURL+`
    ca_root: `+pb.CARoot+`
    storage: `+storage+`
    on_demand: true
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, tc.httpForACME)

			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			if err := te.tls.Manage(ctx, true); err != nil {
				t.Fatalf("obtaining a certificate from Pebble: %v", err)
			}
			if got := te.tls.Names(); len(got) != 1 || got[0] != "api.coopr.test" {
				t.Fatalf("managed names %v", got)
			}
			client := acmetest.HTTPSClient(pb.Roots, te.httpsLn.Addr().String())
			res, err := client.Get("https://api.coopr.test/v2/clusters")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(body) != "west https" || res.ProtoMajor != 2 {
				t.Fatalf("got %d %q over %s", res.StatusCode, body, res.Proto)
			}
			if sc := res.Header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") {
				t.Errorf("affinity cookie over TLS lacks Secure: %q", sc)
			}

			if tc.httpForACME {
				// On demand: a name a wildcard hostname covers is issued at
				// its first handshake; a name no service claims never is.
				res, err = client.Get("https://acme.tenants.coopr.test/")
				if err != nil {
					t.Fatalf("on-demand certificate: %v", err)
				}
				res.Body.Close()
				before := pb.Orders()
				if _, err := client.Get("https://evil.example.test/"); err == nil {
					t.Fatal("a certificate was served for a name no service claims")
				}
				if after := pb.Orders(); after != before {
					t.Fatalf("%d certificates ordered for an unclaimed SNI", after-before)
				}
			}

			// Plain HTTP redirects to HTTPS for claimed hosts only.
			plainURL := "http://" + httpLn.Addr().String()
			req, _ := http.NewRequest("GET", plainURL+"/v2/clusters?x=1", nil)
			req.Host = "api.coopr.test"
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			res, err = noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			want := "https://api.coopr.test:" + strconv.Itoa(port(httpsLn)) + "/v2/clusters?x=1"
			if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != want {
				t.Fatalf("redirect: %d to %q, want %q", res.StatusCode, res.Header.Get("Location"), want)
			}
			req.Host = "evil.example"
			res, err = noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusMisdirectedRequest {
				t.Fatalf("unclaimed host on plain HTTP: %d, want 421 (no open redirect)", res.StatusCode)
			}
		})
	}
}

func TestTLSWithStaticCertificates(t *testing.T) {
	backend := newBackend(t, "west", ok("west"))
	dir := t.TempDir()
	cert := acmetest.WriteCert(t, "api.coopr.test")
	httpLn, httpsLn := listen(t), listen(t)
	te := startTLSEnv(t, tlsYAML(`
tls:
  certificates:
    - {cert: `+cert.CertFile+`, key: `+cert.KeyFile+`}
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, true)
	if err := te.tls.Manage(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	res, err := acmetest.HTTPSClient(cert.Roots, httpsLn.Addr().String()).Get("https://api.coopr.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "west" || res.ProtoMajor != 2 {
		t.Fatalf("got %d %q over %s", res.StatusCode, body, res.Proto)
	}
	// Without redirect_http, plain HTTP keeps proxying.
	req, _ := http.NewRequest("GET", "http://"+httpLn.Addr().String()+"/", nil)
	req.Host = "api.coopr.test"
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("plain HTTP: %d", res.StatusCode)
	}

	cfg := te.cfg
	bad := *cfg
	bad.TLS = config.TLS{Certificates: []config.CertKey{{Cert: filepath.Join(dir, "missing.pem"), Key: cert.KeyFile}}}
	if _, err := NewTLS(&bad, TLSOptions{HTTPSAddr: httpsLn.Addr().String()}); err == nil || !strings.Contains(err.Error(), "tls.certificates[0]") {
		t.Fatalf("a missing certificate file: %v", err)
	}
}

// slogForTest sends a log to the test's output.
func slogForTest(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestTLSReload renews, replaces and removes static certificates on a
// serving listener, and checks that a reload with a bad pair changes
// nothing, not even the good pairs listed before it.
func TestTLSReload(t *testing.T) {
	backend := newBackend(t, "west", ok("west"))
	a := acmetest.WriteCert(t, "api.coopr.test")
	b := acmetest.WriteCert(t, "api.coopr.test")
	ui := acmetest.WriteCert(t, "ui.coopr.test")
	// The listener reads files at fixed paths, which certbot or a PKI
	// agent renews in place.
	live := t.TempDir()
	certFile, keyFile := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	a.Install(t, certFile, keyFile)
	httpLn, httpsLn := listen(t), listen(t)
	te := startTLSEnv(t, tlsYAML(`
tls:
  certificates:
    - {cert: `+certFile+`, key: `+keyFile+`}
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, true)
	addr := httpsLn.Addr().String()
	wantLeaf(t, addr, "api.coopr.test", a.CertFile)

	// Renewed files are served once a reload reads them, not before.
	b.Install(t, certFile, keyFile)
	wantLeaf(t, addr, "api.coopr.test", a.CertFile)
	if err := te.tls.Reload(te.cfg); err != nil {
		t.Fatalf("reload of renewed files: %v", err)
	}
	wantLeaf(t, addr, "api.coopr.test", b.CertFile)

	for _, tc := range []struct {
		name  string
		pairs []config.CertKey
		want  []string // in the error
	}{
		{
			"missing certificate file",
			[]config.CertKey{{Cert: ui.CertFile, Key: ui.KeyFile}, {Cert: filepath.Join(live, "missing.pem"), Key: keyFile}},
			[]string{"tls.certificates[1].cert", filepath.Join(live, "missing.pem"), "no such file"},
		},
		{
			"missing key file",
			[]config.CertKey{{Cert: ui.CertFile, Key: ui.KeyFile}, {Cert: certFile, Key: filepath.Join(live, "missing-key.pem")}},
			[]string{"tls.certificates[1].key", "missing-key.pem"},
		},
		{
			"key of another certificate",
			[]config.CertKey{{Cert: ui.CertFile, Key: ui.KeyFile}, {Cert: certFile, Key: ui.KeyFile}},
			[]string{"tls.certificates[1]", certFile, ui.KeyFile, "private key does not match"},
		},
		{
			"no certificate and no ACME",
			nil,
			[]string{"tls.certificates or tls.acme"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := te.tls.Reload(withCertificates(te.cfg, tc.pairs...))
			if err == nil {
				t.Fatal("the reload succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			wantLeaf(t, addr, "api.coopr.test", b.CertFile)
			// A name no certificate covers gets the first one instead.
			if leaf, err := servedLeaf(addr, "ui.coopr.test"); err == nil && slices.Contains(leaf.DNSNames, "ui.coopr.test") {
				t.Errorf("a failed reload left %v cached", leaf.DNSNames)
			}
		})
	}

	// A pair no longer listed is no longer served; redirect_http applies
	// without a restart.
	next := withCertificates(te.cfg, config.CertKey{Cert: ui.CertFile, Key: ui.KeyFile})
	next.TLS.RedirectHTTP = true
	if err := te.tls.Reload(next); err != nil {
		t.Fatal(err)
	}
	wantLeaf(t, addr, "ui.coopr.test", ui.CertFile)
	if leaf, err := servedLeaf(addr, "api.coopr.test"); err == nil && slices.Contains(leaf.DNSNames, "api.coopr.test") {
		t.Errorf("a removed certificate is still served: %v", leaf.DNSNames)
	}
	req, _ := http.NewRequest("GET", "http://"+httpLn.Addr().String()+"/x", nil)
	req.Host = "api.coopr.test"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP after turning redirect_http on: %d, want 308", res.StatusCode)
	}
}

// TestTLSReloadWithACME obtains a certificate from Pebble for a host name
// a reload adds, and stops serving the one of a name the reload drops.
func TestTLSReloadWithACME(t *testing.T) {
	backend := newBackend(t, "west", ok("west"))
	httpLn, httpsLn := listen(t), listen(t)
	// Validation can only succeed over HTTP-01.
	pb := acmetest.Start(t, port(httpLn), port(httpLn))
	yaml := tlsYAML(`
tls:
  acme:
    email: ops@coopr.test
    ca: ` + pb.DirURL + `
    ca_root: ` + pb.CARoot + `
    storage: ` + t.TempDir() + `
`)
	addrs := map[string]string{"w": backend.addr()}
	te := startTLSEnv(t, yaml, addrs, httpLn, httpsLn, true)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := te.tls.Manage(ctx, true); err != nil {
		t.Fatalf("obtaining a certificate from Pebble: %v", err)
	}
	addr := httpsLn.Addr().String()
	verified := func(name string) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: pb.Roots})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := verified("api.coopr.test"); err != nil {
		t.Fatal(err)
	}

	next := strings.Replace(yaml, "hostnames: [api.coopr.test,", "hostnames: [ui.coopr.test,", 1)
	cfg, _, err := config.Parse([]byte(strings.ReplaceAll(next, "{{w}}", backend.addr())))
	if err != nil {
		t.Fatal(err)
	}
	if err := te.tls.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := te.tls.Names(); len(got) != 1 || got[0] != "ui.coopr.test" {
		t.Fatalf("names after the reload: %v", got)
	}
	if err := verified("api.coopr.test"); err == nil {
		t.Error("the certificate of a name no service claims any more is still served")
	}
	// Obtained in the background: poll, bounded.
	deadline := time.Now().Add(45 * time.Second)
	for {
		err := verified("ui.coopr.test")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for a host name added by a reload: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// withCertificates returns a copy of cfg that lists pairs as
// tls.certificates.
func withCertificates(cfg *config.Config, pairs ...config.CertKey) *config.Config {
	c := *cfg
	c.TLS.Certificates = pairs
	return &c
}

// servedLeaf returns the certificate the TLS listener at addr presents for
// serverName, or the handshake's error.
func servedLeaf(addr, serverName string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// wantLeaf fails unless the listener at addr presents the certificate in
// certFile for serverName.
func wantLeaf(t *testing.T, addr, serverName, certFile string) {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	leaf, err := servedLeaf(addr, serverName)
	if err != nil {
		t.Fatalf("handshake for %s: %v", serverName, err)
	}
	if block == nil || !bytes.Equal(leaf.Raw, block.Bytes) {
		t.Fatalf("%s: served a certificate for %v from %v, not the one in %s", serverName, leaf.DNSNames, leaf.NotBefore, certFile)
	}
}

// TestTLSFallbackCertificate: a handshake without SNI, or for a name no
// certificate covers, gets the first certificate of tls.certificates, as
// nginx and HAProxy serve their default one; a reload changes which one.
func TestTLSFallbackCertificate(t *testing.T) {
	backend := newBackend(t, "west", ok("west"))
	api := acmetest.WriteCert(t, "api.coopr.test")
	ui := acmetest.WriteCert(t, "ui.coopr.test")
	httpLn, httpsLn := listen(t), listen(t)
	te := startTLSEnv(t, tlsYAML(`
tls:
  certificates:
    - {cert: `+api.CertFile+`, key: `+api.KeyFile+`}
    - {cert: `+ui.CertFile+`, key: `+ui.KeyFile+`}
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, false)
	addr := httpsLn.Addr().String()
	for _, tc := range []struct{ name, serverName, want string }{
		{"no SNI", "", api.CertFile},
		{"name no certificate covers", "evil.example.test", api.CertFile},
		{"covered name", "ui.coopr.test", ui.CertFile},
		{"first name", "api.coopr.test", api.CertFile},
	} {
		t.Run(tc.name, func(t *testing.T) { wantLeaf(t, addr, tc.serverName, tc.want) })
	}
	// The client still decides: a verifying client rejects the fallback
	// for a name it does not cover.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "evil.example.test", RootCAs: api.Roots}); err == nil {
		c.Close()
		t.Error("a verifying client accepted the fallback for a name it does not cover")
	}
	if err := te.tls.Reload(withCertificates(te.cfg, config.CertKey{Cert: ui.CertFile, Key: ui.KeyFile}, config.CertKey{Cert: api.CertFile, Key: api.KeyFile})); err != nil {
		t.Fatal(err)
	}
	wantLeaf(t, addr, "", ui.CertFile)
}
