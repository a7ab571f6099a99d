package upstreamtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// settings reads the files as config.Load would.
func settings(t *testing.T, u config.UpstreamTLS) *config.UpstreamTLS {
	t.Helper()
	read := func(f string) []byte {
		if f == "" {
			return nil
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	u.CAPEM, u.CertPEM, u.KeyPEM = read(u.CAFile), read(u.CertFile), read(u.KeyFile)
	return &u
}

// tlsBackend serves HTTPS with a certificate of ca for names; with
// clientCA it requires a client certificate that clientCA signed.
func tlsBackend(t *testing.T, ca *testpki.CA, clientCA *testpki.CA, names ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprint(w, who)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, names...).TLS}}
	if clientCA != nil {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		srv.TLS.ClientCAs = clientCA.Pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestClientConfigHandshakes(t *testing.T) {
	ca, wrong := testpki.NewCA(t, "backend CA"), testpki.NewCA(t, "someone else")
	client := ca.Client(t, "coopr-gslb")
	plain := tlsBackend(t, ca, nil, "backend.internal", "127.0.0.1")
	mtls := tlsBackend(t, ca, ca, "backend.internal")

	tests := []struct {
		name    string
		srv     *httptest.Server
		u       config.UpstreamTLS
		wantErr func(error) bool // nil: success
		who     string
	}{
		{name: "right CA, endpoint's IP verified", srv: plain, u: config.UpstreamTLS{CAFile: ca.CAFile}, who: "anonymous"},
		{name: "right CA and server name", srv: plain, u: config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal"}, who: "anonymous"},
		{name: "wrong CA", srv: plain, u: config.UpstreamTLS{CAFile: wrong.CAFile}, wantErr: isUnknownAuthority},
		{name: "system roots do not know a private CA", srv: plain, u: config.UpstreamTLS{}, wantErr: isUnknownAuthority},
		{name: "name the certificate does not cover", srv: plain, u: config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "other.internal"}, wantErr: isHostname},
		{name: "skip verify", srv: plain, u: config.UpstreamTLS{InsecureSkipVerify: true}, who: "anonymous"},
		{name: "mTLS presented", srv: mtls, u: config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal", CertFile: client.CertFile, KeyFile: client.KeyFile}, who: "coopr-gslb"},
		{name: "mTLS required, none presented", srv: mtls, u: config.UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal"}, wantErr: func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := ClientConfig(settings(t, tt.u))
			if err != nil {
				t.Fatal(err)
			}
			if conf.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion %x", conf.MinVersion)
			}
			tr := &http.Transport{TLSClientConfig: conf}
			defer tr.CloseIdleConnections()
			res, err := (&http.Client{Transport: tr}).Get(tt.srv.URL)
			if tt.wantErr != nil {
				if err == nil {
					res.Body.Close()
					t.Fatal("request succeeded, want a TLS failure")
				}
				if !tt.wantErr(err) {
					t.Fatalf("error %v is not the expected kind", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b [64]byte
			n, _ := res.Body.Read(b[:])
			if got := string(b[:n]); got != tt.who {
				t.Errorf("backend saw client %q, want %q", got, tt.who)
			}
		})
	}
}

func isUnknownAuthority(err error) bool {
	var e x509.UnknownAuthorityError
	return errors.As(err, &e)
}

func isHostname(err error) bool {
	var e x509.HostnameError
	return errors.As(err, &e)
}

func TestClientConfigNilAndBad(t *testing.T) {
	if c, err := ClientConfig(nil); c != nil || err != nil {
		t.Errorf("nil settings: %v, %v; want plain HTTP (nil, nil)", c, err)
	}
	for _, u := range []*config.UpstreamTLS{
		{CAFile: "ca.pem"}, // not read
		{CAFile: "ca.pem", CAPEM: []byte("junk")},
		{CertFile: "c.pem", KeyFile: "k.pem", CertPEM: []byte("junk"), KeyPEM: []byte("junk")},
		{CertFile: "c.pem"},
	} {
		if _, err := ClientConfig(u); err == nil {
			t.Errorf("%+v: no error", u)
		}
	}
}

func TestForHost(t *testing.T) {
	named := &tls.Config{ServerName: "backend.internal"}
	if ForHost(named, "10.0.0.1") != named {
		t.Error("a config that names its server was changed")
	}
	anon := &tls.Config{}
	if got := ForHost(anon, "10.0.0.1"); got.ServerName != "10.0.0.1" || anon.ServerName != "" {
		t.Errorf("ForHost: %q, original %q", got.ServerName, anon.ServerName)
	}
	if ForHost(nil, "x") != nil {
		t.Error("nil config")
	}
}

// TestBuildSharesPerService: DCs that take the service's block share one
// tls.Config; a DC override gets its own; plain services get none.
func TestBuildSharesPerService(t *testing.T) {
	ca, other := testpki.NewCA(t, "a"), testpki.NewCA(t, "b")
	yaml := fmt.Sprintf(`
datacenters:
  - name: east
    services:
      api: {endpoints: ["127.0.0.1:1"]}
      ui: {endpoints: ["127.0.0.1:2"]}
  - name: west
    services:
      api: {endpoints: ["127.0.0.1:3"]}
  - name: north
    services:
      api: {endpoints: ["127.0.0.1:4"], upstream_tls: {ca_file: %q}}
services:
  api: {hostnames: [api.example.com], upstream_tls: {ca_file: %q, server_name: backend.internal}}
  ui: {hostnames: [ui.example.com]}
dns: {zone: example.com}
`, other.CAFile, ca.CAFile)
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	set, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	east, west, north := set.For("api", "east"), set.For("api", "west"), set.For("api", "north")
	if east == nil || east != west {
		t.Errorf("east and west should share one config: %p %p", east, west)
	}
	if north == nil || north == east || north.ServerName != "backend.internal" || !north.RootCAs.Equal(other.Pool) {
		t.Errorf("north's override: %+v", north)
	}
	if !east.RootCAs.Equal(ca.Pool) {
		t.Error("east does not trust the service's CA")
	}
	if set.For("ui", "east") != nil || set.For("api", "nowhere") != nil || (*Set)(nil).For("api", "east") != nil {
		t.Error("plain service, unknown DC or nil set should give nil")
	}
}
