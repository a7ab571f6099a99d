package config

import (
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Default values, named so that documentation and code cannot drift apart.
const (
	DefaultInterval    = time.Second
	DefaultTimeout     = 800 * time.Millisecond
	DefaultRise        = 2
	DefaultFall        = 3
	DefaultWeight      = 100
	DefaultDNSTTL      = 20
	DefaultUDPSize     = 1232
	DefaultDCHeader    = "X-Coopr-GSLB-DC"
	DefaultPolicy      = "failover"
	DefaultWhenAllDown = "serve_all"

	// Flap detection (see Check.FlapWindow): 4 failures in the latest 10
	// probes take an up endpoint down, and 6 state changes (three down and
	// up cycles) within a minute hold it down until it has been stable for
	// a minute. Two cycles are not yet flapping: a DC that failed over and
	// back twice, for two different faults, keeps coming back at once.
	DefaultFlapWindow    = 10
	DefaultFlapThreshold = 4
	DefaultFlapChanges   = 6
	DefaultFlapHold      = 60 * time.Second
)

// SOA timer defaults (see fillDefaults).
const (
	DefaultSOARefresh = 4 * time.Hour
	DefaultSOARetry   = time.Hour
	DefaultSOAExpire  = 14 * 24 * time.Hour
)

// MinTTL is the floor of TTLs derived from a failover budget, and the TTL
// served while a DC is flapping or has just recovered.
const MinTTL = 5

// RecentChange is how long after a DC changes state its services' TTLs stay
// short, so that caches re-ask sooner while it may still be flapping.
const RecentChange = 60 * time.Second

// Detection returns the worst-case time for a check to declare a failed
// endpoint down: a full interval until the next probe, the probes until
// fall (fast_interval apart when set, but a probe cannot start before the
// previous one times out), and the last probe's timeout.
func (c Check) Detection() time.Duration {
	step := c.Interval.D()
	if c.FastInterval > 0 {
		step = max(c.FastInterval.D(), c.Timeout.D())
	}
	return c.Interval.D() + time.Duration(max(c.Fall-1, 0))*step + c.Timeout.D()
}

// Detection returns the worst-case detection time of the service name over
// every DC that deploys it.
func (c *Config) Detection(name string) time.Duration {
	var worst time.Duration
	for _, dc := range c.Datacenters {
		if ds := dc.Services[name]; ds != nil {
			worst = max(worst, ds.EffectiveCheck.Detection())
		}
	}
	return worst
}

// BudgetTTL returns the DNS TTL, in seconds, that a failover budget leaves
// after the worst-case detection time, never below MinTTL.
func (c *Config) BudgetTTL(name string) int {
	s := c.Services[name]
	left := (s.FailoverBudget.D() - c.Detection(name)) / time.Second
	return max(int(left), MinTTL)
}

// defaults returns the configuration that an empty file means. Listener
// addresses are pre-filled so that an absent key means the default and an
// explicit "" disables that front door.
func defaults() *Config {
	return &Config{
		Listen: Listen{
			HTTP:  "127.0.0.1:8080",
			DNS:   "127.0.0.1:8053",
			Admin: "127.0.0.1:9090",
		},
	}
}

// fillDefaults completes every field the file left out. It runs before validate
// so validation sees the values that will be used.
func (c *Config) fillDefaults() {
	base := Check{
		Type:          "http",
		Method:        "GET",
		Path:          "/status",
		ExpectStatus:  []int{200},
		Interval:      Duration(DefaultInterval),
		Timeout:       Duration(DefaultTimeout),
		Rise:          DefaultRise,
		Fall:          DefaultFall,
		FlapWindow:    DefaultFlapWindow,
		FlapThreshold: DefaultFlapThreshold,
		FlapChanges:   DefaultFlapChanges,
		FlapHold:      Duration(DefaultFlapHold),
	}
	c.Health = c.Health.over(base)
	c.fillLogDefaults()

	c.ServiceNames = c.ServiceNames[:0]
	for name, s := range c.Services {
		if s == nil {
			s = &Service{}
			c.Services[name] = s
		}
		c.ServiceNames = append(c.ServiceNames, name)
		s.Check = s.Check.over(c.Health)
		if s.Policy == "" {
			s.Policy = DefaultPolicy
		}
		if s.WhenAllDown == "" {
			s.WhenAllDown = DefaultWhenAllDown
		}
		if !s.MinHealthy.set {
			s.MinHealthy = MinHealthy{Count: 1}
		}
		if s.ShardRouting == "" {
			s.ShardRouting = "off"
		}
		if s.DNSTTL == 0 {
			s.DNSTTL = DefaultDNSTTL
		}
		for i, h := range s.Hostnames {
			s.Hostnames[i] = strings.ToLower(strings.TrimSuffix(h, "."))
		}
	}
	sort.Strings(c.ServiceNames)

	for _, dc := range c.Datacenters {
		if dc == nil {
			continue
		}
		if dc.Weight == 0 {
			dc.Weight = DefaultWeight
		}
		for name, ds := range dc.Services {
			if ds == nil {
				ds = &DCService{}
				dc.Services[name] = ds
			}
			svc := c.Services[name]
			if svc == nil {
				continue // reported by validate
			}
			if ds.Check != nil {
				ds.EffectiveCheck = ds.Check.over(svc.Check)
			} else {
				ds.EffectiveCheck = svc.Check
			}
		}
	}

	if c.DNS.Zone != "" && !strings.HasSuffix(c.DNS.Zone, ".") {
		c.DNS.Zone += "."
	}
	c.DNS.Zone = strings.ToLower(c.DNS.Zone)
	if c.DNS.UDPSize == 0 {
		c.DNS.UDPSize = DefaultUDPSize
	}
	c.fillDNSSECDefaults()
	if c.DNS.TCPIdleTimeout == 0 {
		c.DNS.TCPIdleTimeout = Duration(10 * time.Second)
	}
	if c.DNS.TCPMaxConnections == 0 {
		c.DNS.TCPMaxConnections = 1000
	}
	if c.DNS.RRL.Slip == 0 {
		c.DNS.RRL.Slip = 2
	}
	if c.DNS.RRL.IPv4PrefixLen == 0 {
		c.DNS.RRL.IPv4PrefixLen = 24
	}
	if c.DNS.RRL.IPv6PrefixLen == 0 {
		c.DNS.RRL.IPv6PrefixLen = 56
	}
	if c.DNS.TCPMaxConnectionsPerNetwork == 0 {
		c.DNS.TCPMaxConnectionsPerNetwork = max(1, c.DNS.TCPMaxConnections/10)
	}
	// SOA timers inside the ranges zone checkers expect (Zonemaster: refresh
	// >= 4h, retry >= 1h, expire >= 1 week and several refreshes; RFC 1912
	// section 2.2). They matter only to secondaries, which this zone has none of.
	if c.DNS.SOA.Refresh == 0 {
		c.DNS.SOA.Refresh = TTL(DefaultSOARefresh)
	}
	if c.DNS.SOA.Retry == 0 {
		c.DNS.SOA.Retry = TTL(DefaultSOARetry)
	}
	if c.DNS.SOA.Expire == 0 {
		c.DNS.SOA.Expire = TTL(DefaultSOAExpire)
	}
	if c.DNS.SOA.NegativeTTL == 0 {
		c.DNS.SOA.NegativeTTL = TTL(60 * time.Second)
	}
	c.fillProxyDefaults()
	c.fillClusterDefaults()
	c.fillAdminDefaults()
}

// over returns c with every unset field taken from base.
func (c Check) over(base Check) Check {
	if c.Type == "" {
		c.Type = base.Type
	}
	if c.Method == "" {
		c.Method = base.Method
	}
	if c.Path == "" {
		c.Path = base.Path
	}
	if c.Host == "" {
		c.Host = base.Host
	}
	if c.Headers == nil {
		c.Headers = base.Headers
	}
	if c.ExpectStatus == nil {
		c.ExpectStatus = base.ExpectStatus
	}
	if c.ExpectBody == "" {
		c.ExpectBody = base.ExpectBody
	}
	if c.TLSServerName == "" {
		c.TLSServerName = base.TLSServerName
	}
	if c.CAFile == "" {
		c.CAFile = base.CAFile
	}
	if !c.SkipVerify {
		c.SkipVerify = base.SkipVerify
	}
	if c.Interval == 0 {
		c.Interval = base.Interval
	}
	if c.Timeout == 0 {
		c.Timeout = base.Timeout
	}
	if c.Rise == 0 {
		c.Rise = base.Rise
	}
	if c.Fall == 0 {
		c.Fall = base.Fall
	}
	if c.FastInterval == 0 {
		c.FastInterval = base.FastInterval
	}
	if c.DownInterval == 0 {
		c.DownInterval = base.DownInterval
	}
	if c.SourceAddress == "" {
		c.SourceAddress = base.SourceAddress
	}
	if c.FlapWindow == 0 {
		c.FlapWindow = base.FlapWindow
	}
	if c.FlapThreshold == 0 {
		c.FlapThreshold = base.FlapThreshold
	}
	if c.FlapChanges == 0 {
		c.FlapChanges = base.FlapChanges
	}
	if c.FlapHold == 0 {
		c.FlapHold = base.FlapHold
	}
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }

func sortStrings(s []string) { sort.Strings(s) }

// DefaultDNSSECCacheSize is dns.dnssec.cache_size when it is zero.
const DefaultDNSSECCacheSize = 10000

func (c *Config) fillDNSSECDefaults() {
	if c.DNS.DNSSEC.CacheSize == 0 {
		c.DNS.DNSSEC.CacheSize = DefaultDNSSECCacheSize
	}
}

// DNSSECKeyPaths returns dns.dnssec.key_file with relative paths resolved
// against the directory of the config file.
func (c *Config) DNSSECKeyPaths() []string {
	out := make([]string, 0, len(c.DNS.DNSSEC.KeyFiles))
	for _, f := range c.DNS.DNSSEC.KeyFiles {
		if !filepath.IsAbs(f) && c.Path != "" {
			f = filepath.Join(filepath.Dir(c.Path), f)
		}
		out = append(out, f)
	}
	return out
}
