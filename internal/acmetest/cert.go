package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

// Cert is a leaf certificate and its key in PEM files, as tls.certificates
// names them, and a pool that trusts the private CA that signed the leaf.
type Cert struct {
	CertFile string         // the leaf certificate
	KeyFile  string         // its PKCS #8 private key
	Roots    *x509.CertPool // trusts this certificate's CA and no other
}

// WriteCert makes a private CA and a leaf certificate it signs for names
// (the first is also the subject's common name), and writes the leaf and
// its key to a new temporary directory. Each call makes a new CA, so the
// Roots of one Cert do not verify another.
func WriteCert(t testing.TB, names ...string) Cert {
	t.Helper()
	ca := testpki.NewCA(t, "coopr-gslb test CA")
	p := ca.Server(t, names...)
	return Cert{CertFile: p.CertFile, KeyFile: p.KeyFile, Roots: ca.Pool}
}

// Install copies the certificate and its key to certFile and keyFile, as
// certbot or a PKI agent renews the files a server reads in place.
func (c Cert) Install(t testing.TB, certFile, keyFile string) {
	t.Helper()
	copyFile(t, c.CertFile, certFile)
	copyFile(t, c.KeyFile, keyFile)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// HTTPSClient trusts roots and connects every host name to addr, so a URL's
// host is what the client sends as SNI and Host, as a browser whose DNS
// points at the server would. It does not follow redirects.
func HTTPSClient(roots *x509.CertPool, addr string) *http.Client {
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
