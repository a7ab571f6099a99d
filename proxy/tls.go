package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TLSOptions configure NewTLS.
type TLSOptions struct {
	// HTTPAddr and HTTPSAddr are the addresses the plain and TLS listeners
	// are bound to (a bound listener's Addr, not a ":0" pattern). ACME
	// answers HTTP-01 challenges through HTTPHandler on the first and
	// TLS-ALPN-01 challenges through TLSConfig on the second; certmagic
	// then never opens challenge listeners of its own. HTTPAddr may be
	// empty when listen.http is off, which leaves TLS-ALPN-01 only.
	HTTPAddr, HTTPSAddr string
	// Snapshot returns the current routing snapshot; on-demand issuance
	// asks it whether a service claims a name. Required with
	// tls.acme.on_demand.
	Snapshot func() *routing.Snapshot
	// Logger receives certmagic's log (certificate obtained, renewal
	// failed, ...). If nil, it is discarded.
	Logger *slog.Logger
}

// TLS provides the certificates of the TLS listener: static files from
// tls.certificates, and with tls.acme certificates that certmagic obtains
// and renews for the services' host names. Its methods are safe for
// concurrent use; Close releases it.
type TLS struct {
	// magic manages the certificates obtained ahead of use; serving answers
	// handshakes, and is a second config over the same cache when
	// on-demand issuance is on, because certmagic defers every name of a
	// config with OnDemand to its first handshake.
	magic, serving *certmagic.Config
	cache          *certmagic.Cache
	issuer         *certmagic.ACMEIssuer // nil without ACME
	names          []string              // host names to obtain certificates for ahead of use
	redirect       bool
	// httpsPort is the TLS listener's port, for redirects; "" for 443.
	httpsPort string
	snapshot  func() *routing.Snapshot
	closeOnce sync.Once
}

// NewTLS loads cfg.TLS: it reads the static certificates at once (an error
// names the bad file) and prepares ACME. Certificates are obtained only once
// Manage is called.
func NewTLS(cfg *config.Config, opts TLSOptions) (*TLS, error) {
	tc := cfg.TLS
	if len(tc.Certificates) == 0 && tc.ACME == nil {
		return nil, errors.New("proxy: TLS needs tls.certificates or tls.acme")
	}
	logger := zap.NewNop()
	if opts.Logger != nil {
		logger = zap.New(slogCore{h: opts.Logger.Handler()})
	}
	t := &TLS{redirect: tc.RedirectHTTP, snapshot: opts.Snapshot}
	if _, port, err := net.SplitHostPort(opts.HTTPSAddr); err == nil && port != "443" {
		t.httpsPort = port
	}
	var magic *certmagic.Config
	t.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           logger,
	})
	mc := certmagic.Config{
		Logger: logger,
		// Stapling would make certmagic fetch OCSP answers from the CA
		// in the background; Let's Encrypt no longer offers OCSP.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	}
	if a := tc.ACME; a != nil && a.Storage != "" {
		mc.Storage = &certmagic.FileStorage{Path: a.Storage}
	}
	magic = certmagic.New(t.cache, mc)
	t.magic, t.serving = magic, magic
	if a := tc.ACME; a != nil && a.OnDemand {
		if opts.Snapshot == nil {
			t.cache.Stop()
			return nil, errors.New("proxy: on-demand TLS needs TLSOptions.Snapshot")
		}
		od := mc
		od.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: t.allowName}
		t.serving = certmagic.New(t.cache, od)
	}

	if a := tc.ACME; a != nil {
		tmpl := certmagic.ACMEIssuer{
			CA:     a.CA,
			Email:  a.Email,
			Agreed: true,
			Logger: logger,
		}
		// Point certmagic's challenge solvers at our own listeners: it finds
		// them bound and relies on HTTPHandler and TLSConfig to answer.
		if host, port, err := net.SplitHostPort(opts.HTTPAddr); err == nil {
			tmpl.ListenHost = host
			tmpl.AltHTTPPort, _ = strconv.Atoi(port)
		} else {
			tmpl.DisableHTTPChallenge = true
		}
		if host, port, err := net.SplitHostPort(opts.HTTPSAddr); err == nil {
			tmpl.ListenHost = host
			tmpl.AltTLSALPNPort, _ = strconv.Atoi(port)
		}
		if a.CARoot != "" {
			pem, err := os.ReadFile(a.CARoot)
			if err != nil {
				t.cache.Stop()
				return nil, fmt.Errorf("proxy: tls.acme.ca_root: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				t.cache.Stop()
				return nil, fmt.Errorf("proxy: tls.acme.ca_root %s: no PEM certificate", a.CARoot)
			}
			tmpl.TrustedRoots = pool
		}
		t.issuer = certmagic.NewACMEIssuer(magic, tmpl)
		magic.Issuers = []certmagic.Issuer{t.issuer}
		t.serving.Issuers = magic.Issuers
		t.names = acmeNames(cfg)
	}

	for i, ck := range tc.Certificates {
		if _, err := magic.CacheUnmanagedCertificatePEMFile(context.Background(), ck.Cert, ck.Key, nil); err != nil {
			t.cache.Stop()
			return nil, fmt.Errorf("proxy: tls.certificates[%d]: %w", i, err)
		}
	}
	return t, nil
}

// acmeNames lists the exact host names of every service, which ACME can
// issue ahead of use. Wildcards are left to on-demand issuance.
func acmeNames(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, name := range cfg.ServiceNames {
		for _, h := range cfg.Services[name].Hostnames {
			if strings.HasPrefix(h, "*.") || seen[h] || !certmagic.SubjectQualifiesForPublicCert(h) {
				continue
			}
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// allowName is the on-demand decision: a certificate is only obtained for a
// name that a service of the current configuration claims, never for
// whatever name a client puts in its SNI.
func (t *TLS) allowName(_ context.Context, name string) error {
	if t.snapshot().MatchName(canonicalHost(name)) == nil {
		return fmt.Errorf("no service is configured for %q", name)
	}
	return nil
}

// Manage obtains (or loads from storage) certificates for the services'
// exact host names and keeps them renewed until Close. With wait it returns
// once they are obtained, else at once, obtaining in the background (a TLS
// handshake for a name without its certificate yet fails meanwhile).
// Without tls.acme it does nothing.
func (t *TLS) Manage(ctx context.Context, wait bool) error {
	if t.issuer == nil || len(t.names) == 0 {
		return nil
	}
	if wait {
		return t.magic.ManageSync(ctx, t.names)
	}
	return t.magic.ManageAsync(ctx, t.names)
}

// Names returns the host names Manage obtains certificates for.
func (t *TLS) Names() []string { return append([]string(nil), t.names...) }

// TLSConfig returns the TLS listener's configuration: certificates by SNI,
// HTTP/2 and HTTP/1.1, and the ACME TLS-ALPN-01 protocol.
func (t *TLS) TLSConfig() *tls.Config {
	c := t.serving.TLSConfig()
	c.NextProtos = []string{"h2", "http/1.1", "acme-tls/1"}
	c.MinVersion = tls.VersionTLS12
	return c
}

// HTTPHandler wraps the plain listener's handler: it answers ACME HTTP-01
// challenges and, with tls.redirect_http, sends every other request for a
// host a service claims to HTTPS with a permanent redirect. Hosts no service
// claims go to next, which refuses them, so the redirect is never open.
func (t *TLS) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.issuer != nil && t.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		if !t.redirect || t.snapshot == nil {
			next.ServeHTTP(w, r)
			return
		}
		host := canonicalHost(r.Host)
		if t.snapshot().Match(host, r.URL.Path) == nil {
			next.ServeHTTP(w, r)
			return
		}
		if t.httpsPort != "" {
			host = net.JoinHostPort(host, t.httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// Close stops renewals. It is safe to call more than once.
func (t *TLS) Close() {
	t.closeOnce.Do(t.cache.Stop)
}

// TLSServer returns Server(addr) set up to serve TLS with t's certificates
// and HTTP/2: serve it with ServeTLS(listener, "", "").
func (p *Proxy) TLSServer(addr string, t *TLS) *http.Server {
	s := p.Server(addr)
	s.TLSConfig = t.TLSConfig()
	return s
}
