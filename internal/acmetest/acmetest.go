// Package acmetest runs a Pebble ACME server and the loopback DNS it
// validates against, for tests. It also writes the certificate files, and
// makes the HTTPS clients, that tests of a TLS listener use with or without
// ACME.
//
// Everything listens on 127.0.0.1 port 0 and is closed by t.Cleanup.
package acmetest

import (
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

// Server is Pebble, Let's Encrypt's ACME test server, running in this
// process. Start sets its fields; they must not be changed afterwards. A
// Server must not be copied; its methods are safe for concurrent use.
type Server struct {
	// DirURL is the ACME directory, for tls.acme.ca.
	DirURL string
	// CARoot is a PEM file of the root that signs the ACME server's own
	// HTTPS certificate, for tls.acme.ca_root.
	CARoot string
	// Roots trusts the root that signs the certificates Pebble issues.
	Roots *x509.CertPool

	orders atomic.Int64
}

// Orders returns how many new orders the server has received.
func (s *Server) Orders() int64 { return s.orders.Load() }

// pebbleEnv sets the variables Pebble reads when it is built: no random
// sleeps before validating, no deliberately rejected nonces, and a fresh
// authorization per order. The environment is process-wide, so they are
// set once and left set; parallel tests cannot use t.Setenv.
var pebbleEnv sync.Once

// Start starts Pebble on loopback. Its validation authority connects to
// 127.0.0.1:httpPort for HTTP-01 and to 127.0.0.1:tlsPort for TLS-ALPN-01:
// every name resolves to 127.0.0.1 through a DNS server on loopback. Giving
// both challenges the same port makes only the one served there succeed.
func Start(t testing.TB, httpPort, tlsPort int) *Server {
	t.Helper()
	pebbleEnv.Do(func() {
		os.Setenv("PEBBLE_VA_NOSLEEP", "1")
		os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
		os.Setenv("PEBBLE_AUTHZREUSE", "0")
	})
	// Pebble's goroutines may log after the test ends, so not to t.Log.
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, startLoopbackDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	s := &Server{}
	acme := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			s.orders.Add(1)
		}
		acme.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	s.CARoot = filepath.Join(t.TempDir(), "acme-server-root.pem")
	testpki.WritePEM(t, s.CARoot, "CERTIFICATE", srv.Certificate().Raw)
	s.Roots = x509.NewCertPool()
	s.Roots.AddCert(authority.GetRootCert(0).Cert)
	s.DirURL = srv.URL + wfe.DirectoryPath
	return s
}

// startLoopbackDNS answers every A query with 127.0.0.1, over TCP as
// Pebble's validation authority asks, and returns its address.
func startLoopbackDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
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
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("DNS stub: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("DNS stub did not start")
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("DNS stub shutdown: %v", err)
		}
		<-served
	})
	return ln.Addr().String()
}
