package instance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// certExpiry exports when each certificate of tls.certificates expires,
// by the names it covers, as of the last start or reload, and, with
// tls.acme, when the certificate stored for each name obtained ahead of use
// expires, read from certmagic's storage at each scrape. Certificates
// issued on demand are not in it: their names are not known ahead.
type certExpiry struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	byKey map[string]float64 // name -> NotAfter in Unix seconds
	// The ACME certificates: where certmagic stores them, under which
	// issuer, for which names.
	storage   certmagic.Storage
	issuerKey string
	names     func() []string
}

// watchACME makes Collect report the stored ACME certificates of names()
// too. acme nil changes nothing.
func (c *certExpiry) watchACME(acme *config.ACME, names func() []string) {
	if acme == nil {
		return
	}
	// Where certmagic keeps them: tls.acme.storage, else its default, and
	// under the key of the CA that issues them.
	var storage certmagic.Storage = certmagic.Default.Storage
	if acme.Storage != "" {
		storage = &certmagic.FileStorage{Path: acme.Storage}
	}
	ca := acme.CA
	if ca == "" {
		ca = config.DefaultACMECA
	}
	issuer := &certmagic.ACMEIssuer{CA: ca}
	c.mu.Lock()
	c.storage, c.issuerKey, c.names = storage, issuer.IssuerKey(), names
	c.mu.Unlock()
}

// acmeExpiry reads the stored certificate of each ACME name, adding the
// ones found to out. A name not obtained yet is left out.
func (c *certExpiry) acmeExpiry(out map[string]float64) {
	c.mu.Lock()
	storage, issuerKey, names := c.storage, c.issuerKey, c.names
	c.mu.Unlock()
	if names == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range names() {
		data, err := storage.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
		if err != nil {
			continue
		}
		block, _ := pem.Decode(data)
		if block == nil {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		if t := float64(leaf.NotAfter.Unix()); t > out[name] {
			out[name] = t
		}
	}
}

func newCertExpiry() *certExpiry {
	return &certExpiry{
		desc: prometheus.NewDesc("coopr_gslb_tls_certificate_expiry_timestamp_seconds",
			"When the certificate for the name expires (NotAfter, Unix seconds): the files of tls.certificates, read at start and on every reload, and the stored certificates of tls.acme names obtained ahead of use.",
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
	all := maps.Clone(c.byKey)
	c.mu.Unlock()
	// A name with both a file and an ACME certificate: the later expiry.
	c.acmeExpiry(all)
	for name, t := range all {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, t, name)
	}
}
