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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	// failed, ...) and Reload's. If nil, it is discarded.
	Logger *slog.Logger
}

// TLS provides the certificates of the TLS listener: static files from
// tls.certificates, and with tls.acme certificates that certmagic obtains
// and renews for the services' host names. Reload applies a new
// configuration to it while it serves. Its methods are safe for concurrent
// use; Close releases it.
type TLS struct {
	// magic manages the certificates obtained ahead of use; serving answers
	// handshakes, and is a second config over the same cache when
	// on-demand issuance is on, because certmagic defers every name of a
	// config with OnDemand to its first handshake.
	magic, serving *certmagic.Config
	cache          *certmagic.Cache
	issuer         *certmagic.ACMEIssuer // nil without ACME
	redirect       atomic.Bool
	// fallback is the first certificate of tls.certificates, served to a
	// handshake without SNI or for a name no certificate covers; nil
	// without static certificates.
	fallback atomic.Pointer[tls.Certificate]
	// httpsPort is the TLS listener's port, for redirects; "" for 443.
	httpsPort string
	snapshot  func() *routing.Snapshot
	log       *slog.Logger
	// ctx lives until Close: management of the names a reload adds runs
	// under it.
	ctx       context.Context
	stop      context.CancelFunc
	closeOnce sync.Once

	// mu serializes Reload and Manage's start, and guards what follows.
	mu sync.Mutex
	// static are the cache hashes of the certificates from
	// tls.certificates in use, which a reload removes when they are gone
	// from the new set.
	static []string
	// names are the host names obtained ahead of use (see acmeNames).
	names []string
	// managing says Manage was called, so names a reload adds are obtained
	// at once.
	managing bool
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
	t := &TLS{snapshot: opts.Snapshot, log: opts.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.redirect.Store(tc.RedirectHTTP)
	t.ctx, t.stop = context.WithCancel(context.Background())
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
			t.Close()
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
				t.Close()
				return nil, fmt.Errorf("proxy: tls.acme.ca_root: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				t.Close()
				return nil, fmt.Errorf("proxy: tls.acme.ca_root %s: no PEM certificate", a.CARoot)
			}
			tmpl.TrustedRoots = pool
		}
		t.issuer = certmagic.NewACMEIssuer(magic, tmpl)
		magic.Issuers = []certmagic.Issuer{t.issuer}
		t.serving.Issuers = magic.Issuers
		t.names = acmeNames(cfg)
	}

	certs, err := loadCertificates(tc.Certificates)
	if err != nil {
		t.Close()
		return nil, err
	}
	if t.static, err = t.cacheStatic(certs); err != nil {
		t.Close()
		return nil, err
	}
	t.setFallback(certs)
	return t, nil
}

// loadCertificates reads and parses every pair of certs, changing nothing,
// so that a bad file fails a reload before anything is swapped. An error
// names the pair's field and the file.
func loadCertificates(certs []config.CertKey) ([]tls.Certificate, error) {
	out := make([]tls.Certificate, 0, len(certs))
	for i, ck := range certs {
		certPEM, err := os.ReadFile(ck.Cert)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls.certificates[%d].cert: %w", i, err)
		}
		keyPEM, err := os.ReadFile(ck.Key)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls.certificates[%d].key: %w", i, err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls.certificates[%d]: cert %s, key %s: %w", i, ck.Cert, ck.Key, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// cacheStatic adds certs to the cache and returns their hashes. The caller
// holds t.mu or is NewTLS. On error it removes again what it added that was
// not in use, so the cache is as before.
func (t *TLS) cacheStatic(certs []tls.Certificate) ([]string, error) {
	hashes := make([]string, 0, len(certs))
	for i, c := range certs {
		// The pair is parsed already (loadCertificates), so certmagic does
		// not parse it again and this does not fail on a pair that
		// loadCertificates accepted; should it, nothing is left half done.
		h, err := t.magic.CacheUnmanagedTLSCertificate(t.ctx, c, nil)
		if err != nil {
			t.cache.Remove(without(hashes, t.static))
			return nil, fmt.Errorf("proxy: tls.certificates[%d]: %w", i, err)
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// without returns the elements of a that are not in b.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// Reload applies cfg to a serving TLS: it reads every file of
// tls.certificates again (renewed files are served from the next
// handshake on, pairs no longer listed are no longer served), takes
// tls.redirect_http, and with tls.acme obtains certificates for host names
// services newly claim. It reads and checks every file first: on error it
// changes nothing, and the error names the tls.certificates entry and the
// file. The other tls.acme keys (CA, email, storage, ca_root, on_demand)
// and whether ACME is on are fixed by NewTLS; Reload ignores them.
// Handshakes in flight keep the certificate they picked.
func (t *TLS) Reload(cfg *config.Config) error {
	certs, err := loadCertificates(cfg.TLS.Certificates)
	if err != nil {
		return err
	}
	if len(certs) == 0 && t.issuer == nil {
		// Swapping would leave the listener without any certificate.
		return errors.New("proxy: the TLS listener needs tls.certificates or tls.acme")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	hashes, err := t.cacheStatic(certs)
	if err != nil {
		return err
	}
	// The new certificates are cached before the old ones go, so a
	// handshake meanwhile finds one or the other, never none.
	t.cache.Remove(without(t.static, hashes))
	t.static = hashes
	t.setFallback(certs)
	t.redirect.Store(cfg.TLS.RedirectHTTP)
	if t.issuer == nil {
		return nil
	}
	names := acmeNames(cfg)
	added, dropped := without(names, t.names), without(t.names, names)
	t.names = names
	if !t.managing {
		return nil
	}
	if len(dropped) > 0 {
		// No service routes to these names any more: stop renewing them.
		// A handshake for one is refused by the proxy anyway (421). An
		// obtain still in flight may cache one again; it is then only
		// renewed until the next restart. On-demand certificates (names
		// under a wildcard) are not in names and are left alone.
		subjects := make([]certmagic.SubjectIssuer, len(dropped))
		for i, n := range dropped {
			subjects[i] = certmagic.SubjectIssuer{Subject: n}
		}
		t.cache.RemoveManaged(subjects)
	}
	if len(added) > 0 {
		// ManageAsync obtains in the background and logs its failures;
		// its error is only about starting, and the swap above is done,
		// so it is logged rather than failing the reload.
		if err := t.magic.ManageAsync(t.ctx, added); err != nil {
			t.log.Error("TLS certificates for new host names", "names", added, "error", err)
		}
	}
	return nil
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
	if t.snapshot().MatchName(config.CanonicalHost(name)) == nil {
		return fmt.Errorf("no service is configured for %q", name)
	}
	return nil
}

// Manage obtains (or loads from storage) certificates for the services'
// exact host names and keeps them renewed until Close. With wait it returns
// once they are obtained, else at once, obtaining in the background (a TLS
// handshake for a name without its certificate yet fails meanwhile). Once
// it was called, Reload obtains certificates for names that services newly
// claim in the background. Without tls.acme it does nothing.
func (t *TLS) Manage(ctx context.Context, wait bool) error {
	if t.issuer == nil {
		return nil
	}
	t.mu.Lock()
	t.managing = true
	names := slices.Clone(t.names)
	t.mu.Unlock()
	// A Reload that drops a name while ManageSync below still obtains it
	// leaves that name managed: a needless renewal, not a wrong answer.
	if len(names) == 0 {
		return nil
	}
	if wait {
		return t.magic.ManageSync(ctx, names)
	}
	return t.magic.ManageAsync(ctx, names)
}

// Names returns the host names Manage obtains certificates for.
func (t *TLS) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.names)
}

// setFallback makes the first of certs the certificate of last resort.
func (t *TLS) setFallback(certs []tls.Certificate) {
	if len(certs) == 0 {
		t.fallback.Store(nil)
		return
	}
	c := certs[0]
	t.fallback.Store(&c)
}

// TLSConfig returns the TLS listener's configuration: certificates by SNI,
// HTTP/2 and HTTP/1.1, and the ACME TLS-ALPN-01 protocol. A handshake
// without SNI, or for a name no certificate covers (and on-demand ACME does
// not issue), gets the first certificate of tls.certificates, as nginx and
// HAProxy serve their default one, rather than a failed handshake: the
// client then decides whether it trusts it. ACME challenge handshakes never
// get it.
func (t *TLS) TLSConfig() *tls.Config {
	c := t.serving.TLSConfig()
	c.NextProtos = []string{"h2", "http/1.1", "acme-tls/1"}
	c.MinVersion = tls.VersionTLS12
	byName := c.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := byName(hello)
		if err == nil && cert != nil {
			return cert, nil
		}
		if fb := t.fallback.Load(); fb != nil && !slices.Contains(hello.SupportedProtos, "acme-tls/1") {
			return fb, nil
		}
		return cert, err
	}
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
		if !t.redirect.Load() || t.snapshot == nil {
			next.ServeHTTP(w, r)
			return
		}
		host := config.CanonicalHost(r.Host)
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
	t.closeOnce.Do(func() {
		t.stop()
		t.cache.Stop()
	})
}

// TLSServer returns Server(addr) set up to serve TLS with t's certificates
// and HTTP/2: serve it with ServeTLS(listener, "", "").
func (p *Proxy) TLSServer(addr string, t *TLS) *http.Server {
	s := p.Server(addr)
	s.TLSConfig = t.TLSConfig()
	return s
}
