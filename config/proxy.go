package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Proxy configures the HTTP front door.
type Proxy struct {
	// DCHeader names the response header that tells which DC served; "-" turns it off.
	DCHeader string `yaml:"dc_header"`
	// TrustedProxies are CIDRs (or single addresses) whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Retry is the default retry policy of every service.
	Retry Retry `yaml:"retry"`
	// MaxBufferedBody is the largest request body, in bytes, buffered so it can
	// be replayed; larger bodies stream and are not retried. Zero means 1 MiB.
	MaxBufferedBody int64 `yaml:"max_buffered_body"`
	// AccessLog turns the access log (one record per request) on or off. It
	// is filled from AccessLogSetting unless set directly.
	AccessLog *bool `yaml:"-"`
	// AccessLogSetting is access_log as written: true, false or a file path.
	AccessLogSetting AccessLogSetting `yaml:"access_log" json:"-"`
	// AccessLogFile, if set, is the file the access log goes to (JSON lines)
	// instead of the main log. Filled from AccessLogSetting.
	AccessLogFile string `yaml:"-" json:"-"`
	// AffinityKeyFile holds the HMAC key that signs affinity cookies. If empty,
	// a key is generated and kept in admin.state_dir (or in memory without one).
	AffinityKeyFile string `yaml:"affinity_key_file" reload:"restart"`
	// AffinityCookie names the affinity cookie. Zero means "coopr_gslb_dc".
	AffinityCookie string `yaml:"affinity_cookie"`

	DialTimeout           Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	// The listeners and upstream pools take the restart-only ones at start.
	IdleTimeout       Duration `yaml:"idle_timeout" reload:"restart"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" reload:"restart"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes" reload:"restart"`
	ShutdownTimeout   Duration `yaml:"shutdown_timeout" reload:"restart"`
	// BodyTimeout is the longest pause between two reads of a request body;
	// a client that sends nothing for longer is cut off (408). Zero means 10s.
	BodyTimeout Duration `yaml:"body_timeout"`
	// MaxConnections caps the client connections open at once on each
	// listener (listen.http and listen.https each); connections beyond it are
	// closed as soon as they are accepted. Zero means 10000.
	MaxConnections int `yaml:"max_connections"`
	// MaxResponseHeaderBytes bounds the header block of a backend's answer
	// (informational answers included); a larger one is answered 502. Zero
	// means 1 MiB.
	MaxResponseHeaderBytes int64 `yaml:"max_response_header_bytes" reload:"restart"`

	Outlier Outlier `yaml:"outlier"`
	// SlowStart ramps a DC that comes back (after rise) from no share to its
	// full share of new requests over this window, instead of sending it
	// everything at once. Zero turns it off.
	SlowStart Duration `yaml:"slow_start"`

	// TrustedNets is TrustedProxies parsed, filled by Load.
	TrustedNets []netip.Prefix `yaml:"-"`
}

// Retry bounds how the proxy retries a request on another endpoint or DC.
//
// A request that never reached a backend (the connection failed before the
// request was written) moves on to the next endpoint whatever its method;
// such moves cost the backends nothing and count neither as attempts nor
// against the budget. Attempts, TryTimeout and the budget govern replays of
// requests a backend may have seen, which only safe or idempotent requests get.
type Retry struct {
	// Attempts is the most tries of one request, the first included. Zero means 3.
	Attempts int `yaml:"attempts"`
	// Deadline bounds all tries of one request together: no try starts after
	// it. Zero means 10s.
	Deadline Duration `yaml:"deadline"`
	// TryTimeout bounds the wait for response headers of a try that could
	// still be retried, so a hung endpoint leaves time to try another. The
	// last possible try waits up to proxy.response_header_timeout. Zero means
	// Deadline divided by Attempts.
	TryTimeout Duration `yaml:"try_timeout"`
	// BudgetPercent caps retries at this share of the service's requests of
	// the last 10 seconds, so a struggling DC is not hammered. Zero means 20.
	BudgetPercent int `yaml:"budget_percent"`
	// MinRetries per second are always allowed regardless of the budget, so
	// a quiet service can still fail over. Zero means 3.
	MinRetries int `yaml:"min_retries"`
	// OnStatus lists the answer codes (500..599) on which a safe or
	// idempotent request is tried again in another DC, within the attempts
	// and the budget; when every try answers one, the last answer is
	// returned. Unset means [500, 502, 503, 504]; an empty list retries on
	// no answer code.
	OnStatus []int `yaml:"on_status"`
	// Hedge races instead of abandoning: when the first try of a safe or
	// idempotent request has not answered within its adaptive timeout and an
	// endpoint that is not ejected is left, a backup try starts there beside
	// it, and the first answer wins (Envoy's hedge_on_per_try_timeout,
	// Finagle's backup requests). Off, the first try is cancelled at that
	// point and the next one started. Unset means on.
	Hedge *bool `yaml:"hedge"`
	// TimeoutMultiplier times an endpoint's recent high latency (about p98
	// of its last 64 answers) is the adaptive timeout of a first try, at
	// least TimeoutFloor and at most TryTimeout. Zero means 4.
	TimeoutMultiplier int `yaml:"timeout_multiplier"`
	// TimeoutFloor keeps a fast endpoint's ordinary jitter from tripping the
	// adaptive timeout. Zero means 150ms.
	TimeoutFloor Duration `yaml:"timeout_floor"`
}

// Hedges reports whether retry.hedge is on (unset means on).
func (r Retry) Hedges() bool { return r.Hedge == nil || *r.Hedge }

// Outlier configures passive health: ejecting endpoints that fail requests.
type Outlier struct {
	// ConsecutiveFailures ejects an endpoint. Zero means 3.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Ejection is how long an ejected endpoint is skipped. Zero means 10s.
	Ejection Duration `yaml:"ejection"`
}

// TLS configures the certificates of listen.https: static files, ACME, or
// both (static certificates win for the names they cover).
type TLS struct {
	// Certificates are PEM certificate chain and key file pairs.
	Certificates []CertKey `yaml:"certificates"`
	// ACME obtains and renews certificates for the services' host names. If
	// nil, no certificate is obtained. The ACME client (its account, CA and
	// storage) is built once, at start.
	ACME *ACME `yaml:"acme" reload:"restart"`
	// RedirectHTTP answers plain HTTP requests on listen.http with a
	// permanent redirect to HTTPS (ACME HTTP-01 challenges are still served).
	RedirectHTTP bool `yaml:"redirect_http"`
}

// CertKey is one certificate and its private key, as PEM files.
type CertKey struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// ACME configures automatic certificates.
type ACME struct {
	// Email is the ACME account's contact; may be empty.
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Zero means Let's Encrypt's production directory.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots that sign the CA's own HTTPS certificate,
	// for a private CA.
	CARoot string `yaml:"ca_root"`
	// Storage is the directory where accounts and certificates are kept.
	// Zero means "certmagic" under admin.state_dir, or certmagic's default
	// without a state_dir.
	Storage string `yaml:"storage"`
	// OnDemand obtains certificates during the first TLS handshake for names
	// that wildcard hostnames ("*.zone") cover, which ACME HTTP-01 and
	// TLS-ALPN-01 cannot issue ahead of time. Only names that a service's
	// hostnames match are ever issued, never any name a client sends.
	OnDemand bool `yaml:"on_demand"`
}

// DefaultACMECA is the ACME directory used when tls.acme.ca is empty.
const DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"

func (c *Config) fillProxyDefaults() {
	p := &c.Proxy
	if p.DCHeader == "" {
		p.DCHeader = DefaultDCHeader
	}
	if p.MaxBufferedBody == 0 {
		p.MaxBufferedBody = 1 << 20
	}
	if a := p.AccessLogSetting; a.Set {
		on := a.On
		p.AccessLog = &on
		p.AccessLogFile = a.File
	}
	if p.AccessLog == nil {
		on := true
		p.AccessLog = &on
	}
	if p.AffinityCookie == "" {
		p.AffinityCookie = "coopr_gslb_dc"
	}
	setDur(&p.DialTimeout, 2*time.Second)
	setDur(&p.ResponseHeaderTimeout, 30*time.Second)
	setDur(&p.IdleTimeout, 90*time.Second)
	setDur(&p.ReadHeaderTimeout, 10*time.Second)
	if p.MaxHeaderBytes == 0 {
		p.MaxHeaderBytes = 64 << 10
	}
	setDur(&p.ShutdownTimeout, 15*time.Second)
	setDur(&p.BodyTimeout, 10*time.Second)
	if p.MaxConnections == 0 {
		p.MaxConnections = 10000
	}
	if p.MaxResponseHeaderBytes == 0 {
		p.MaxResponseHeaderBytes = 1 << 20
	}
	p.Retry = p.Retry.over(Retry{Attempts: 3, Deadline: Duration(10 * time.Second), BudgetPercent: 20, MinRetries: 3, OnStatus: []int{500, 502, 503, 504},
		TimeoutMultiplier: 4, TimeoutFloor: Duration(150 * time.Millisecond)})
	if p.Outlier.ConsecutiveFailures == 0 {
		p.Outlier.ConsecutiveFailures = 3
	}
	setDur(&p.Outlier.Ejection, 10*time.Second)
	for _, s := range c.Services {
		if s.Retry == nil {
			r := p.Retry
			s.Retry = &r
		} else {
			*s.Retry = s.Retry.over(p.Retry)
		}
		if s.Retry.TryTimeout == 0 && s.Retry.Attempts > 0 {
			s.Retry.TryTimeout = s.Retry.Deadline / Duration(s.Retry.Attempts)
		}
		if s.LoadBalancing == "" {
			s.LoadBalancing = "round_robin"
		}
	}
	if p.Retry.TryTimeout == 0 && p.Retry.Attempts > 0 {
		p.Retry.TryTimeout = p.Retry.Deadline / Duration(p.Retry.Attempts)
	}
	if a := c.TLS.ACME; a != nil {
		if a.CA == "" {
			a.CA = DefaultACMECA
		}
		if a.Storage == "" && c.Admin.StateDir != "" {
			a.Storage = strings.TrimSuffix(c.Admin.StateDir, "/") + "/certmagic"
		}
	}
}

// over returns r with every unset field taken from base. fillProxyDefaults
// calls it while base.TryTimeout is still what the file said, so only an
// explicit try_timeout is inherited; the default depends on each service's
// own deadline and attempts.
func (r Retry) over(base Retry) Retry {
	if r.Attempts == 0 {
		r.Attempts = base.Attempts
	}
	if r.Deadline == 0 {
		r.Deadline = base.Deadline
	}
	if r.BudgetPercent == 0 {
		r.BudgetPercent = base.BudgetPercent
	}
	if r.MinRetries == 0 {
		r.MinRetries = base.MinRetries
	}
	if r.TryTimeout == 0 {
		r.TryTimeout = base.TryTimeout
	}
	if r.OnStatus == nil {
		r.OnStatus = base.OnStatus
	}
	if r.Hedge == nil {
		r.Hedge = base.Hedge
	}
	if r.TimeoutMultiplier == 0 {
		r.TimeoutMultiplier = base.TimeoutMultiplier
	}
	if r.TimeoutFloor == 0 {
		r.TimeoutFloor = base.TimeoutFloor
	}
	return r
}

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

// ParseRequestPattern parses an idempotent request pattern, "METHOD /path/prefix",
// as services.<name>.idempotent lists them. METHOD is an HTTP method in upper
// case, or "*" for any method.
func ParseRequestPattern(s string) (method, prefix string, err error) {
	method, prefix, ok := strings.Cut(strings.TrimSpace(s), " ")
	prefix = strings.TrimSpace(prefix)
	if !ok || method == "" || prefix == "" {
		return "", "", fmt.Errorf("%q is not \"METHOD /path/prefix\" (e.g. \"PUT /v2/providers/\")", s)
	}
	if method != "*" && (method != strings.ToUpper(method) || !httpguts.ValidHeaderFieldName(method)) {
		return "", "", fmt.Errorf("%q: method %q must be an HTTP method in upper case, or *", s, method)
	}
	if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, " \t") {
		return "", "", fmt.Errorf("%q: path prefix %q must start with / and contain no spaces", s, prefix)
	}
	return method, prefix, nil
}

func (v *validator) proxy() {
	p := &v.c.Proxy
	if p.DCHeader != "-" && !httpguts.ValidHeaderFieldName(p.DCHeader) {
		v.errorf("proxy.dc_header", "%q is not a valid header name (use \"-\" to turn the header off)", p.DCHeader)
	}
	p.TrustedNets = p.TrustedNets[:0]
	for i, s := range p.TrustedProxies {
		path := fmt.Sprintf("proxy.trusted_proxies[%d]", i)
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			a = a.Unmap()
			p.TrustedNets = append(p.TrustedNets, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			v.errorf(path, "%q is not a CIDR network such as 10.0.0.0/8 or an address", s)
			continue
		}
		if pf.Masked() != pf {
			v.warnf(path, "%q has host bits set; using %s", s, pf.Masked())
		}
		if pf.Addr().Is4In6() {
			pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
		}
		p.TrustedNets = append(p.TrustedNets, pf.Masked())
	}
	v.retry("proxy.retry", p.Retry)
	if p.MaxBufferedBody < 0 {
		v.errorf("proxy.max_buffered_body", "must not be negative")
	}
	if p.AffinityCookie != "" && !validCookieName(p.AffinityCookie) {
		v.errorf("proxy.affinity_cookie", "%q is not a valid cookie name", p.AffinityCookie)
	}
	for _, d := range []struct {
		path string
		d    Duration
	}{
		{"proxy.dial_timeout", p.DialTimeout},
		{"proxy.response_header_timeout", p.ResponseHeaderTimeout},
		{"proxy.idle_timeout", p.IdleTimeout},
		{"proxy.read_header_timeout", p.ReadHeaderTimeout},
		{"proxy.shutdown_timeout", p.ShutdownTimeout},
		{"proxy.body_timeout", p.BodyTimeout},
		{"proxy.outlier.ejection", p.Outlier.Ejection},
	} {
		if d.d <= 0 {
			v.errorf(d.path, "must be positive")
		}
	}
	if p.MaxHeaderBytes < 4096 {
		v.errorf("proxy.max_header_bytes", "%d is too small; at least 4096 bytes are needed for ordinary requests", p.MaxHeaderBytes)
	}
	if p.MaxConnections < 1 {
		v.errorf("proxy.max_connections", "must be at least 1")
	}
	if p.MaxResponseHeaderBytes < 4096 {
		v.errorf("proxy.max_response_header_bytes", "%d is too small; at least 4096 bytes are needed for ordinary answers", p.MaxResponseHeaderBytes)
	}
	if p.Outlier.ConsecutiveFailures < 1 {
		v.errorf("proxy.outlier.consecutive_failures", "must be at least 1")
	}
	for _, name := range v.c.ServiceNames {
		s := v.c.Services[name]
		path := "services." + name
		if s.Retry != nil {
			v.retry(path+".retry", *s.Retry)
		}
		for i, pat := range s.Idempotent {
			if _, _, err := ParseRequestPattern(pat); err != nil {
				v.errorf(fmt.Sprintf("%s.idempotent[%d]", path, i), "%v", err)
			}
		}
		switch s.LoadBalancing {
		case "round_robin", "least_outstanding":
		default:
			v.errorf(path+".load_balancing", "unknown value %q (want round_robin or least_outstanding)", s.LoadBalancing)
		}
		if h := s.UpstreamHost; h != "" {
			host := h
			if hh, _, err := net.SplitHostPort(h); err == nil {
				host = hh
			}
			if host == "" || strings.ContainsAny(host, " /?#@") {
				v.errorf(path+".upstream_host", "%q is not a host or host:port", h)
			}
		}
	}
	v.tls()
}

func (v *validator) retry(path string, r Retry) {
	if r.Attempts < 1 || r.Attempts > 10 {
		v.errorf(path+".attempts", "%d is out of range 1..10", r.Attempts)
	}
	if r.Deadline <= 0 {
		v.errorf(path+".deadline", "must be positive")
	}
	if r.TryTimeout < 0 {
		v.errorf(path+".try_timeout", "must not be negative")
	} else if r.TryTimeout > r.Deadline {
		v.errorf(path+".try_timeout", "%s is longer than the deadline %s; no retry could follow a timed-out try", r.TryTimeout, r.Deadline)
	}
	if r.BudgetPercent < 1 || r.BudgetPercent > 100 {
		v.errorf(path+".budget_percent", "%d is out of range 1..100", r.BudgetPercent)
	}
	if r.MinRetries < 0 {
		v.errorf(path+".min_retries", "must not be negative")
	}
	if r.TimeoutMultiplier < 1 || r.TimeoutMultiplier > 100 {
		v.errorf(path+".timeout_multiplier", "%d is out of range 1..100", r.TimeoutMultiplier)
	}
	if r.TimeoutFloor < 0 {
		v.errorf(path+".timeout_floor", "must not be negative")
	} else if r.TryTimeout > 0 && r.TimeoutFloor > r.TryTimeout {
		v.warnf(path+".timeout_floor", "%s is longer than try_timeout %s; the adaptive timeout never applies", r.TimeoutFloor, r.TryTimeout)
	}
	for i, code := range r.OnStatus {
		if code < 500 || code > 599 {
			v.errorf(path+".on_status["+strconv.Itoa(i)+"]", "%d is not a 5xx answer code (500..599)", code)
		}
	}
}

func (v *validator) tls() {
	t := v.c.TLS
	https := v.c.Listen.HTTPS != ""
	configured := len(t.Certificates) > 0 || t.ACME != nil
	switch {
	case https && !configured:
		v.errorf("listen.https", "the TLS listener needs tls.certificates or tls.acme")
	case !https && configured:
		v.warnf("tls", "tls is configured but listen.https is empty; no TLS listener is started")
	}
	if t.RedirectHTTP && !https {
		v.errorf("tls.redirect_http", "redirecting to HTTPS needs listen.https")
	}
	for i, ck := range t.Certificates {
		path := fmt.Sprintf("tls.certificates[%d]", i)
		if ck.Cert == "" {
			v.errorf(path+".cert", "a certificate file is required")
		}
		if ck.Key == "" {
			v.errorf(path+".key", "a key file is required")
		}
	}
	if a := t.ACME; a != nil {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.errorf("tls.acme.ca", "%q is not an https:// ACME directory URL", a.CA)
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			v.errorf("tls.acme.email", "%q is not an e-mail address", a.Email)
		}
		wild := false
		for _, name := range v.c.ServiceNames {
			for _, h := range v.c.Services[name].Hostnames {
				if strings.HasPrefix(h, "*.") {
					wild = true
				}
			}
		}
		if wild && !a.OnDemand {
			v.warnf("tls.acme", "wildcard hostnames get no certificate by ACME (HTTP-01 and TLS-ALPN-01 cannot issue wildcards); set on_demand: true to obtain one per name at first use")
		}
	}
}

// validCookieName reports whether s is a cookie name (an HTTP token).
func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !httpguts.IsTokenRune(r) {
			return false
		}
	}
	return true
}
