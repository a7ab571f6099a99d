package instance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// writeCert writes a self-signed certificate for names, expiring at
// notAfter, and returns its cert and key files.
func writeCert(t *testing.T, dir, base string, notAfter time.Time, names ...string) config.CertKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ck := config.CertKey{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	writeFile(t, ck.Cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, ck.Key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return ck
}

func TestCertificateExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	a := time.Unix(1900000000, 0)
	b := time.Unix(1910000000, 0)
	cfg := &config.Config{Listen: config.Listen{HTTPS: "127.0.0.1:0"}}
	cfg.TLS.Certificates = []config.CertKey{
		writeCert(t, dir, "api", a, "api.coopr.example.com", "www.coopr.example.com"),
		writeCert(t, dir, "ui", b, "ui.coopr.example.com"),
	}
	c := newCertExpiry()
	log := slog.New(slog.DiscardHandler)
	c.load(cfg, log)
	want := `
# HELP coopr_gslb_tls_certificate_expiry_timestamp_seconds When the certificate for the name expires (NotAfter, Unix seconds): the files of tls.certificates, read at start and on every reload, and the stored certificates of tls.acme names obtained ahead of use.
# TYPE coopr_gslb_tls_certificate_expiry_timestamp_seconds gauge
coopr_gslb_tls_certificate_expiry_timestamp_seconds{name="api.coopr.example.com"} 1.9e+09
coopr_gslb_tls_certificate_expiry_timestamp_seconds{name="ui.coopr.example.com"} 1.91e+09
coopr_gslb_tls_certificate_expiry_timestamp_seconds{name="www.coopr.example.com"} 1.9e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// A reload with a renewed api certificate and without ui.
	renewed := writeCert(t, dir, "api2", b, "api.coopr.example.com")
	cfg.TLS.Certificates = []config.CertKey{renewed, {Cert: filepath.Join(dir, "missing.crt"), Key: filepath.Join(dir, "missing.key")}}
	c.load(cfg, log)
	want = `
# HELP coopr_gslb_tls_certificate_expiry_timestamp_seconds When the certificate for the name expires (NotAfter, Unix seconds): the files of tls.certificates, read at start and on every reload, and the stored certificates of tls.acme names obtained ahead of use.
# TYPE coopr_gslb_tls_certificate_expiry_timestamp_seconds gauge
coopr_gslb_tls_certificate_expiry_timestamp_seconds{name="api.coopr.example.com"} 1.91e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// Without listen.https the files serve nothing.
	cfg.Listen.HTTPS = ""
	c.load(cfg, log)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d series without listen.https, want 0", n)
	}
}
