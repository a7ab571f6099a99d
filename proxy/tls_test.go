package proxy

import (
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
