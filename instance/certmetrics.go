package instance

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// certExpiry exports when each certificate of tls.certificates expires,
// by the names it covers, as of the last start or reload. ACME-managed
// certificates are not in it: they live in the proxy's certmagic cache.
type certExpiry struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	byKey map[string]float64 // name -> NotAfter in Unix seconds
}

func newCertExpiry() *certExpiry {
	return &certExpiry{
		desc: prometheus.NewDesc("coopr_gslb_tls_certificate_expiry_timestamp_seconds",
			"When the certificate serving the name expires (NotAfter, Unix seconds), for the files of tls.certificates, read at start and on every reload.",
			[]string{"name"}, nil),
		byKey: map[string]float64{},
	}
}

// load reads cfg's certificate files. A file that cannot be read is left
// out and logged (the front doors' own load reports it as an error).
func (c *certExpiry) load(cfg *config.Config, log *slog.Logger) {
	next := map[string]float64{}
	if cfg.Listen.HTTPS != "" {
		for _, ck := range cfg.TLS.Certificates {
			pair, err := tls.LoadX509KeyPair(ck.Cert, ck.Key)
			if err != nil || len(pair.Certificate) == 0 {
				log.Warn("certificate expiry metric: cannot read certificate", "cert", ck.Cert, "error", err)
				continue
			}
			leaf := pair.Leaf
			if leaf == nil {
				if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
					log.Warn("certificate expiry metric: cannot parse certificate", "cert", ck.Cert, "error", err)
					continue
				}
			}
			for _, name := range certNames(leaf, ck.Cert) {
				t := float64(leaf.NotAfter.Unix())
				// Two files for one name: the later expiry serves longest.
				if old, ok := next[name]; !ok || t > old {
					next[name] = t
				}
			}
		}
	}
	c.mu.Lock()
	c.byKey = next
	c.mu.Unlock()
}

// certNames are the names a certificate covers: its DNS names, else its
// IP addresses, else its common name, else the file it came from.
func certNames(leaf *x509.Certificate, file string) []string {
	names := append([]string(nil), leaf.DNSNames...)
	if len(names) == 0 {
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	if len(names) == 0 {
		names = append(names, file)
	}
	return names
}

// Describe implements prometheus.Collector.
func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, t := range c.byKey {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, t, name)
	}
}
