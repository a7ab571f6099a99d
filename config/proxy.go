package config

import "time"

// Proxy configures the HTTP front door.
type Proxy struct {
	// DCHeader names the response header that tells which DC served; "-" turns it off.
	DCHeader string `yaml:"dc_header"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Retry is the default retry policy of every service.
	Retry Retry `yaml:"retry"`
	// MaxBufferedBody is the largest request body, in bytes, buffered so it can
	// be replayed; larger bodies stream and are not retried. Zero means 1 MiB.
	MaxBufferedBody int64 `yaml:"max_buffered_body"`
	// AccessLog turns the JSON access log (one line per request, on stderr) on or off.
	AccessLog *bool `yaml:"access_log"`
	// AffinityKeyFile holds the HMAC key that signs affinity cookies. If empty,
	// a key is generated and kept in admin.state_dir (or in memory without one).
	AffinityKeyFile string `yaml:"affinity_key_file"`
	// AffinityCookie names the affinity cookie. Zero means "coopr_gslb_dc".
	AffinityCookie string `yaml:"affinity_cookie"`

	DialTimeout           Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	IdleTimeout           Duration `yaml:"idle_timeout"`
	ReadHeaderTimeout     Duration `yaml:"read_header_timeout"`
	MaxHeaderBytes        int      `yaml:"max_header_bytes"`
	ShutdownTimeout       Duration `yaml:"shutdown_timeout"`

	Outlier Outlier `yaml:"outlier"`
}

// Retry bounds how the proxy retries a request on another endpoint or DC.
type Retry struct {
	// Attempts is the most tries of one request, the first included. Zero means 3.
	Attempts int `yaml:"attempts"`
	// Deadline bounds all tries of one request together. Zero means 10s.
	Deadline Duration `yaml:"deadline"`
	// BudgetPercent caps retries at this share of in-flight requests. Zero means 20.
	BudgetPercent int `yaml:"budget_percent"`
	// MinRetries are always allowed regardless of the budget. Zero means 3.
	MinRetries int `yaml:"min_retries"`
}

// Outlier configures passive health: ejecting endpoints that fail requests.
type Outlier struct {
	// ConsecutiveFailures ejects an endpoint. Zero means 3.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Ejection is how long an ejected endpoint is skipped. Zero means 10s.
	Ejection Duration `yaml:"ejection"`
}

func (c *Config) fillProxyDefaults() {
	p := &c.Proxy
	if p.DCHeader == "" {
		p.DCHeader = DefaultDCHeader
	}
	if p.MaxBufferedBody == 0 {
		p.MaxBufferedBody = 1 << 20
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
	p.Retry = p.Retry.over(Retry{Attempts: 3, Deadline: Duration(10 * time.Second), BudgetPercent: 20, MinRetries: 3})
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
		if s.LoadBalancing == "" {
			s.LoadBalancing = "round_robin"
		}
	}
}

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
	return r
}

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

func (v *validator) proxy() {
	// Filled in with the proxy: trusted_proxies CIDRs, retry bounds, idempotent
	// patterns and load_balancing values are checked here.
}
