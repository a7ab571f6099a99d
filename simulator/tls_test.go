package simulator

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

func tlsGet(t *testing.T, conf *tls.Config, url string) (string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b), nil
}

// TestServeTLS: an endpoint given a certificate serves HTTPS, also after a
// Refuse fault clears; one that requires client certificates refuses a
// client without one and answers one the CA signed.
func TestServeTLS(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca := testpki.NewCA(t, "simulator CA")
	cert := ca.Server(t, "127.0.0.1")
	client := ca.Client(t, "coopr-gslb")

	s := startServer(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert.TLS}}})
	if !strings.HasPrefix(s.URL(), "https://") || !s.TLS() {
		t.Fatalf("URL %q of a TLS endpoint", s.URL())
	}
	trusting := &tls.Config{RootCAs: ca.Pool}
	if body, err := tlsGet(t, trusting, s.URL()+"/status"); err != nil || !strings.Contains(body, "OK") {
		t.Fatalf("GET /status over TLS: %q, %v", body, err)
	}
	if _, err := tlsGet(t, &tls.Config{}, s.URL()+"/status"); err == nil {
		t.Error("a client that does not trust the CA got an answer")
	}
	s.SetFault(Fault{Mode: Refuse})
	if _, err := tlsGet(t, trusting, s.URL()+"/status"); err == nil {
		t.Error("Refuse: answered")
	}
	s.SetFault(Fault{})
	if body, err := tlsGet(t, trusting, s.URL()+"/status"); err != nil || !strings.Contains(body, "OK") {
		t.Fatalf("GET /status over TLS after Refuse cleared: %q, %v", body, err)
	}
	s.Close()

	m := startServer(t, Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	}})
	if _, err := tlsGet(t, trusting, m.URL()+"/status"); err == nil {
		t.Error("mTLS: a client without a certificate got an answer")
	}
	other := testpki.NewCA(t, "other").Client(t, "intruder")
	if _, err := tlsGet(t, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{other.TLS}}, m.URL()+"/status"); err == nil {
		t.Error("mTLS: a client certificate of another CA got an answer")
	}
	withCert := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}
	if body, err := tlsGet(t, withCert, m.URL()+"/status"); err != nil || !strings.Contains(body, "OK") {
		t.Fatalf("mTLS with the CA's client certificate: %q, %v", body, err)
	}
	m.Close()
}

func TestDatacenterTLS(t *testing.T) {
	ca := testpki.NewCA(t, "dc CA")
	d, err := StartDatacenter(DCOptions{Name: "east", TLS: &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").TLS}}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, s := range append(d.Servers(), d.UIs()...) {
		if _, err := tlsGet(t, &tls.Config{RootCAs: ca.Pool}, s.URL()+"/status"); err != nil {
			t.Errorf("%s: %v", s.Name(), err)
		}
	}
}
