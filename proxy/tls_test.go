package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// pebble is an ACME server on loopback: Let's Encrypt's test CA, in process.
type pebble struct {
	dirURL string
	caRoot string         // file with the PEM root of the ACME server's own HTTPS certificate
	root   *x509.CertPool // the root that signs the certificates it issues
	orders atomic.Int64   // new orders received
}

// startPebble starts Pebble, whose validation authority checks HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1: every name resolves
// there through a loopback DNS server.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, startLoopbackDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	pb := &pebble{}
	acme := front.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			pb.orders.Add(1)
		}
		acme.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	caRoot := filepath.Join(t.TempDir(), "acme-root.pem")
	writePEM(t, caRoot, "CERTIFICATE", srv.Certificate().Raw)
	pool := x509.NewCertPool()
	pool.AddCert(authority.GetRootCert(0).Cert)
	pb.dirURL, pb.caRoot, pb.root = srv.URL+wfe.DirectoryPath, caRoot, pool
	return pb
}

// startLoopbackDNS answers every A query with 127.0.0.1, over TCP as
// Pebble's validation authority asks.
func startLoopbackDNS(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
				A:   net.IPv4(127, 0, 0, 1),
			})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

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

// httpsClient trusts roots and connects every name to the TLS listener.
func (te *tlsEnv) httpsClient(roots *x509.CertPool) *http.Client {
	addr := te.httpsLn.Addr().String()
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
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
			pb := startPebble(t, vaHTTP, vaTLS)
			storage := t.TempDir()
			te := startTLSEnv(t, tlsYAML(`
tls:
  redirect_http: true
  acme:
    email: ops@coopr.test
    ca: `+pb.dirURL+`
    ca_root: `+pb.caRoot+`
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
			client := te.httpsClient(pb.root)
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
				before := pb.orders.Load()
				if _, err := client.Get("https://evil.example.test/"); err == nil {
					t.Fatal("a certificate was served for a name no service claims")
				}
				if after := pb.orders.Load(); after != before {
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
	certFile, keyFile, roots := selfSigned(t, dir, "api.coopr.test")
	httpLn, httpsLn := listen(t), listen(t)
	te := startTLSEnv(t, tlsYAML(`
tls:
  certificates:
    - {cert: `+certFile+`, key: `+keyFile+`}
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, true)
	if err := te.tls.Manage(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	res, err := te.httpsClient(roots).Get("https://api.coopr.test/")
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
	bad.TLS = config.TLS{Certificates: []config.CertKey{{Cert: filepath.Join(dir, "missing.pem"), Key: keyFile}}}
	if _, err := NewTLS(&bad, TLSOptions{HTTPSAddr: httpsLn.Addr().String()}); err == nil || !strings.Contains(err.Error(), "tls.certificates[0]") {
		t.Fatalf("a missing certificate file: %v", err)
	}
}

// selfSigned writes a certificate for name and its key, and returns them
// with a pool that trusts the certificate.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
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
	certA, keyA, _ := selfSigned(t, t.TempDir(), "api.coopr.test")
	certB, keyB, _ := selfSigned(t, t.TempDir(), "api.coopr.test")
	certUI, keyUI, _ := selfSigned(t, t.TempDir(), "ui.coopr.test")
	// The listener reads files at fixed paths, which certbot or a PKI
	// agent renews in place.
	live := t.TempDir()
	certFile, keyFile := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	copyFile(t, certA, certFile)
	copyFile(t, keyA, keyFile)
	httpLn, httpsLn := listen(t), listen(t)
	te := startTLSEnv(t, tlsYAML(`
tls:
  certificates:
    - {cert: `+certFile+`, key: `+keyFile+`}
`), map[string]string{"w": backend.addr()}, httpLn, httpsLn, true)
	addr := httpsLn.Addr().String()
	wantLeaf(t, addr, "api.coopr.test", certA)

	// Renewed files are served once a reload reads them, not before.
	copyFile(t, certB, certFile)
	copyFile(t, keyB, keyFile)
	wantLeaf(t, addr, "api.coopr.test", certA)
	if err := te.tls.Reload(te.cfg); err != nil {
		t.Fatalf("reload of renewed files: %v", err)
	}
	wantLeaf(t, addr, "api.coopr.test", certB)

	for _, tc := range []struct {
		name  string
		pairs []config.CertKey
		want  []string // in the error
	}{
		{
			"missing certificate file",
			[]config.CertKey{{Cert: certUI, Key: keyUI}, {Cert: filepath.Join(live, "missing.pem"), Key: keyFile}},
			[]string{"tls.certificates[1].cert", filepath.Join(live, "missing.pem"), "no such file"},
		},
		{
			"missing key file",
			[]config.CertKey{{Cert: certUI, Key: keyUI}, {Cert: certFile, Key: filepath.Join(live, "missing-key.pem")}},
			[]string{"tls.certificates[1].key", "missing-key.pem"},
		},
		{
			"key of another certificate",
			[]config.CertKey{{Cert: certUI, Key: keyUI}, {Cert: certFile, Key: keyUI}},
			[]string{"tls.certificates[1]", certFile, keyUI, "private key does not match"},
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
			wantLeaf(t, addr, "api.coopr.test", certB)
			if leaf, err := servedLeaf(addr, "ui.coopr.test"); err == nil {
				t.Errorf("a failed reload left %v cached", leaf.DNSNames)
			}
		})
	}

	// A pair no longer listed is no longer served; redirect_http applies
	// without a restart.
	next := withCertificates(te.cfg, config.CertKey{Cert: certUI, Key: keyUI})
	next.TLS.RedirectHTTP = true
	if err := te.tls.Reload(next); err != nil {
		t.Fatal(err)
	}
	wantLeaf(t, addr, "ui.coopr.test", certUI)
	if leaf, err := servedLeaf(addr, "api.coopr.test"); err == nil {
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
	pb := startPebble(t, port(httpLn), port(httpLn))
	yaml := tlsYAML(`
tls:
  acme:
    email: ops@coopr.test
    ca: ` + pb.dirURL + `
    ca_root: ` + pb.caRoot + `
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
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: pb.root})
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

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
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
