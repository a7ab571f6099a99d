package health

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

// loaded reads u's files as config.Load does.
func loaded(t *testing.T, u config.UpstreamTLS) *config.UpstreamTLS {
	t.Helper()
	for _, f := range []struct {
		file string
		dst  *[]byte
	}{{u.CAFile, &u.CAPEM}, {u.CertFile, &u.CertPEM}, {u.KeyFile, &u.KeyPEM}} {
		if f.file == "" {
			continue
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			t.Fatal(err)
		}
		*f.dst = b
	}
	return &u
}

// TestNetProberUpstreamTLS: with upstream_tls an "http" check is sent over
// TLS with those settings and a "tcp" check completes a handshake; a
// certificate problem fails the probe with the x509 reason.
func TestNetProberUpstreamTLS(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca, wrong := testpki.NewCA(t, "backend CA"), testpki.NewCA(t, "other CA")
	client := ca.Client(t, "coopr-gslb")
	start := func(mtls bool) *httptest.Server {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(coopr))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1", "backend.internal").TLS}}
		if mtls {
			srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool
		}
		srv.StartTLS()
		return srv
	}
	plain, mtls := start(false), start(true)
	defer plain.Close()
	defer mtls.Close()
	cleartext := httptest.NewServer(http.HandlerFunc(coopr))
	defer cleartext.Close()

	tests := []struct {
		name    string
		srv     *httptest.Server
		typ     string
		u       config.UpstreamTLS
		wantErr string // "" for up
	}{
		{"right CA", plain, "http", config.UpstreamTLS{CAFile: ca.CAFile}, ""},
		{"right CA and server name", plain, "http", config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal"}, ""},
		{"https check type too", plain, "https", config.UpstreamTLS{CAFile: ca.CAFile}, ""},
		{"wrong CA", plain, "http", config.UpstreamTLS{CAFile: wrong.CAFile}, "TLS: x509: certificate signed by unknown authority"},
		{"wrong CA, tcp check", plain, "tcp", config.UpstreamTLS{CAFile: wrong.CAFile}, "TLS: x509: certificate signed by unknown authority"},
		{"right CA, tcp check", plain, "tcp", config.UpstreamTLS{CAFile: ca.CAFile}, ""},
		{"name not covered", plain, "http", config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "other.internal"}, `TLS: x509: certificate is not valid for "other.internal"`},
		{"mTLS presented", mtls, "http", config.UpstreamTLS{CAFile: ca.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile}, ""},
		{"mTLS required, none presented", mtls, "http", config.UpstreamTLS{CAFile: ca.CAFile}, "TLS: "},
		{"backend without TLS", cleartext, "http", config.UpstreamTLS{CAFile: ca.CAFile}, "TLS: server does not speak TLS"},
	}
	var p NetProber
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := httpTarget(hostPort(t, tt.srv.URL), func(c *config.Check) { c.Type = tt.typ })
			target.UpstreamTLS = loaded(t, tt.u)
			r := p.Probe(context.Background(), target)
			checkResult(t, r, tt.wantErr == "", tt.wantErr, false)
		})
	}
	// One config per settings and name, reused by later probes.
	n := len(p.upstream)
	u := loaded(t, config.UpstreamTLS{CAFile: ca.CAFile})
	for range 3 {
		target := httpTarget(hostPort(t, plain.URL), nil)
		target.UpstreamTLS = u
		checkResult(t, p.Probe(context.Background(), target), true, "", false)
	}
	if len(p.upstream) != n+1 {
		t.Errorf("%d upstream configs after 3 probes with one new setting, want %d", len(p.upstream), n+1)
	}
	plain.CloseClientConnections()
	mtls.CloseClientConnections()
}
