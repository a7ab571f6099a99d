package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/dnssec"
)

// validator collects problems, each placed at the line of its field path.
type validator struct {
	c  *Config
	ps Problems
	// files are the upstream TLS files read so far.
	files tlsFiles
}

func (v *validator) line(path string) int {
	if v.c.loc == nil {
		return 0
	}
	// Fall back to the nearest enclosing field that the file spelled out, so a
	// missing key is reported where its parent is.
	for p := path; ; {
		if l, ok := v.c.loc.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return 0
		}
		p = p[:i]
	}
}

func (v *validator) file() string {
	if v.c.loc != nil {
		return v.c.loc.file
	}
	return v.c.Path
}

func (v *validator) errorf(path, format string, args ...any) {
	v.ps = append(v.ps, Problem{File: v.file(), Line: v.line(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.ps = append(v.ps, Problem{File: v.file(), Line: v.line(path), Path: path, Message: fmt.Sprintf(format, args...), Warning: true})
}

var (
	dcNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)
	hostnameRE = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// validate checks the filled-in configuration and parses derived fields
// (networks, addresses). It reports every problem rather than stopping at the first.
func (c *Config) validate() Problems {
	v := &validator{c: c}
	v.listen()
	v.check("health", c.Health)
	v.services()
	v.datacenters()
	v.idPartition()
	v.dns()
	v.proxy()
	v.notify()
	v.cluster()
	v.admin()
	v.log()
	return v.ps
}

func (v *validator) listen() {
	l := v.c.Listen
	for _, f := range []struct{ path, addr string }{
		{"listen.http", l.HTTP}, {"listen.https", l.HTTPS}, {"listen.dns", l.DNS}, {"listen.admin", l.Admin},
	} {
		if f.addr == "" {
			continue
		}
		if err := checkHostPort(f.addr, true); err != nil {
			v.errorf(f.path, "%v", err)
		}
	}
}

func checkHostPort(addr string, allowEmptyHost bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" && !allowEmptyHost {
		return fmt.Errorf("%q has no host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

func (v *validator) check(path string, c Check) {
	switch c.Type {
	case "http", "https", "tcp":
	default:
		v.errorf(path+".type", "unknown check type %q (want http, https or tcp)", c.Type)
	}
	if c.Type != "tcp" && !strings.HasPrefix(c.Path, "/") {
		v.errorf(path+".path", "path %q must start with /", c.Path)
	}
	for i, s := range c.ExpectStatus {
		if s < 100 || s > 599 {
			v.errorf(fmt.Sprintf("%s.expect_status[%d]", path, i), "%d is not an HTTP status", s)
		}
	}
	if c.Interval <= 0 {
		v.errorf(path+".interval", "must be positive")
	}
	if c.Timeout <= 0 {
		v.errorf(path+".timeout", "must be positive")
	} else if c.Timeout > c.Interval {
		v.errorf(path+".timeout", "timeout %s is longer than interval %s; probes would pile up", c.Timeout, c.Interval)
	}
	if c.FastInterval < 0 || (c.FastInterval > 0 && c.FastInterval > c.Interval) {
		v.errorf(path+".fast_interval", "must be positive and at most the interval %s", c.Interval)
	}
	if c.DownInterval < 0 || c.DownInterval > c.Interval {
		v.errorf(path+".down_interval", "must be positive and at most the interval %s", c.Interval)
	}
	if c.Rise < 1 {
		v.errorf(path+".rise", "must be at least 1")
	}
	if c.Fall < 1 {
		v.errorf(path+".fall", "must be at least 1")
	}
	if c.FlapWindow > 64 {
		v.errorf(path+".flap_window", "%d is more than 64 results", c.FlapWindow)
	}
	if c.FlapWindow > 0 && (c.FlapThreshold < 1 || c.FlapThreshold > c.FlapWindow) {
		v.errorf(path+".flap_threshold", "%d must be from 1 to flap_window %d", c.FlapThreshold, c.FlapWindow)
	}
	if c.FlapChanges > 0 && c.FlapHold <= 0 {
		v.errorf(path+".flap_hold", "must be positive while flap_changes is %d", c.FlapChanges)
	}
}

func (v *validator) services() {
	c := v.c
	if len(c.Services) == 0 {
		v.errorf("services", "at least one service is required")
	}
	owner := map[string]string{} // hostname+prefix -> service
	for _, name := range c.ServiceNames {
		s := c.Services[name]
		path := "services." + name
		if !dcNameRE.MatchString(name) {
			v.errorf(path, "service name %q must be lower-case letters, digits, - or _", name)
		}
		if len(s.Hostnames) == 0 {
			v.errorf(path+".hostnames", "at least one hostname is required")
		}
		prefixes := s.PathPrefixes
		if len(prefixes) == 0 {
			prefixes = []string{"/"}
		}
		for i, p := range s.PathPrefixes {
			if !strings.HasPrefix(p, "/") {
				v.errorf(fmt.Sprintf("%s.path_prefixes[%d]", path, i), "%q must start with /", p)
			}
		}
		for i, h := range s.Hostnames {
			hp := fmt.Sprintf("%s.hostnames[%d]", path, i)
			if !hostnameRE.MatchString(h) {
				v.errorf(hp, "%q is not a valid host name", h)
				continue
			}
			for _, p := range prefixes {
				if other, dup := owner[h+" "+p]; dup {
					v.errorf(hp, "%q (path %s) is already a hostname of service %q", h, p, other)
				}
				owner[h+" "+p] = name
			}
		}
		v.check(path+".check", s.Check)
		v.upstreamTLS(path+".upstream_tls", s.UpstreamTLS)
		switch s.Policy {
		case "failover", "weighted", "nearest", "all":
		default:
			v.errorf(path+".policy", "unknown policy %q (want failover, weighted, nearest or all)", s.Policy)
		}
		switch s.WhenAllDown {
		case "serve_all", "refuse":
		default:
			v.errorf(path+".when_all_down", "unknown value %q (want serve_all or refuse)", s.WhenAllDown)
		}
		m := s.MinHealthy
		if m.IsPercent && (m.Percent < 1 || m.Percent > 100) {
			v.errorf(path+".min_healthy", "percentage %d%% must be from 1%% to 100%%", m.Percent)
		}
		if !m.IsPercent && m.Count < 1 {
			v.errorf(path+".min_healthy", "count must be at least 1")
		}
		if s.DNSTTL < 0 || s.DNSTTL > 86400 {
			v.errorf(path+".dns_ttl", "%d is out of range 0..86400", s.DNSTTL)
		}
		if s.FailoverBudget < 0 {
			v.errorf(path+".failover_budget", "must not be negative")
		} else if s.FailoverBudget > 0 {
			det := c.Detection(name)
			if s.FailoverBudget.D() < det+MinTTL*time.Second {
				v.warnf(path+".failover_budget", "%s cannot be met: detection alone takes up to %s and the TTL is at least %ds; worst-case failover is %s", s.FailoverBudget, det, MinTTL, det+MinTTL*time.Second)
			}
		}
		switch s.ShardRouting {
		case "off", "writes", "all":
		default:
			v.errorf(path+".shard_routing", "unknown value %q (want off, writes or all)", s.ShardRouting)
		}
		if s.ShardRouting != "off" {
			for i, dc := range c.Datacenters {
				if dc == nil {
					continue
				}
				if dc.CooprIDs == nil {
					v.errorf(fmt.Sprintf("datacenters[%d]", i), "coopr_ids is required: service %q uses shard_routing", name)
				}
				if len(dc.Takeover) == 0 {
					v.errorf(fmt.Sprintf("datacenters[%d].takeover", i), "datacenter %q needs a takeover list: service %q uses shard_routing, and its shards need a new owner when it fails", dc.Name, name)
				}
			}
		}
		switch s.Affinity {
		case "", "none", "cookie":
		default:
			v.errorf(path+".affinity", "unknown affinity %q (want cookie or none)", s.Affinity)
		}
		deployed := 0
		for _, dc := range c.Datacenters {
			if dc != nil && dc.Services[name] != nil {
				deployed++
			}
		}
		if deployed == 0 && len(c.Datacenters) > 0 {
			v.errorf(path, "no datacenter deploys service %q", name)
		}
		if s.Policy == "nearest" {
			has := false
			for _, dc := range c.Datacenters {
				if dc != nil && len(dc.ClientNetworks) > 0 {
					has = true
				}
			}
			if !has {
				v.warnf(path+".policy", "policy nearest but no datacenter lists client_networks; it behaves like failover")
			}
		}
	}
}

func (v *validator) datacenters() {
	c := v.c
	if len(c.Datacenters) == 0 {
		v.errorf("datacenters", "at least one datacenter is required")
	}
	seen := map[string]int{}
	for i, dc := range c.Datacenters {
		path := fmt.Sprintf("datacenters[%d]", i)
		if dc == nil {
			v.errorf(path, "empty datacenter")
			continue
		}
		if dc.Name == "" {
			v.errorf(path+".name", "a name is required")
		} else if !dcNameRE.MatchString(dc.Name) {
			v.errorf(path+".name", "%q must be lower-case letters, digits, - or _", dc.Name)
		} else if j, dup := seen[dc.Name]; dup {
			v.errorf(path+".name", "%q is already the name of datacenters[%d]", dc.Name, j)
		} else {
			seen[dc.Name] = i
		}
		if dc.Priority < 0 {
			v.errorf(path+".priority", "must not be negative")
		}
		if dc.Weight < 0 {
			v.errorf(path+".weight", "must not be negative")
		}
		dc.Networks = dc.Networks[:0]
		for j, n := range dc.ClientNetworks {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				v.errorf(fmt.Sprintf("%s.client_networks[%d]", path, j), "%q is not a CIDR network such as 10.1.0.0/16", n)
				continue
			}
			if p.Masked() != p {
				v.warnf(fmt.Sprintf("%s.client_networks[%d]", path, j), "%q has host bits set; using %s", n, p.Masked())
			}
			dc.Networks = append(dc.Networks, p.Masked())
		}
		if len(dc.Services) == 0 {
			v.errorf(path+".services", "datacenter %q deploys no service", dc.Name)
		}
		for _, sname := range sortedKeys(dc.Services) {
			ds := dc.Services[sname]
			sp := path + ".services." + sname
			if c.Services[sname] == nil {
				v.errorf(sp, "unknown service %q (define it under services:)", sname)
				continue
			}
			if len(ds.Endpoints) == 0 {
				v.errorf(sp+".endpoints", "at least one endpoint (host:port) is required")
			}
			dupe := map[string]bool{}
			for j, e := range ds.Endpoints {
				ep := fmt.Sprintf("%s.endpoints[%d]", sp, j)
				if err := checkHostPort(e, false); err != nil {
					v.errorf(ep, "%v", err)
				} else if dupe[e] {
					v.errorf(ep, "%q is listed twice", e)
				}
				dupe[e] = true
			}
			ds.ParsedAddresses = ds.ParsedAddresses[:0]
			for j, a := range ds.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || ip.Zone() != "" {
					v.errorf(fmt.Sprintf("%s.addresses[%d]", sp, j), "%q is not an IP address", a)
					continue
				}
				ds.ParsedAddresses = append(ds.ParsedAddresses, ip.Unmap())
			}
			if len(ds.Addresses) == 0 && v.c.Listen.DNS != "" {
				v.warnf(sp+".addresses", "no addresses: DNS will never answer %q with datacenter %q", sname, dc.Name)
			}
			if ds.Check != nil {
				v.check(sp+".check", ds.EffectiveCheck)
			}
			v.upstreamTLS(sp+".upstream_tls", ds.UpstreamTLS)
			v.fillUpstreamTLS(ds, c.Services[sname])
		}
	}
	for i, dc := range c.Datacenters {
		if dc == nil {
			continue
		}
		for j, t := range dc.Takeover {
			tp := fmt.Sprintf("datacenters[%d].takeover[%d]", i, j)
			if _, ok := seen[t]; !ok {
				v.errorf(tp, "unknown datacenter %q", t)
			} else if t == dc.Name {
				v.errorf(tp, "a datacenter cannot take over its own shards")
			}
		}
	}
}

// idPartition checks Coopr's cluster-ID partition (server.ids.start.num and
// server.ids.increment.by): IDs only identify their owner DC when every DC
// uses the same increment and a distinct start.
func (v *validator) idPartition() {
	dcs := v.c.Datacenters
	with := 0
	for _, dc := range dcs {
		if dc != nil && dc.CooprIDs != nil {
			with++
		}
	}
	if with == 0 {
		return
	}
	inc := 0
	starts := map[int]string{}
	for i, dc := range dcs {
		if dc == nil {
			continue
		}
		path := fmt.Sprintf("datacenters[%d].coopr_ids", i)
		if dc.CooprIDs == nil {
			v.errorf(fmt.Sprintf("datacenters[%d]", i), "coopr_ids is missing; when one datacenter sets it, all must")
			continue
		}
		ids := dc.CooprIDs
		if ids.Increment < 1 {
			v.errorf(path+".increment", "must be at least 1")
			continue
		}
		if ids.Start < 0 {
			v.errorf(path+".start", "must not be negative")
			continue
		}
		if inc == 0 {
			inc = ids.Increment
		} else if ids.Increment != inc {
			v.errorf(path+".increment", "%d differs from %d; every datacenter must use the same increment", ids.Increment, inc)
			continue
		}
		if other, dup := starts[ids.Start%inc]; dup {
			v.errorf(path+".start", "%d is the same partition as datacenter %q (start mod increment %d)", ids.Start, other, inc)
		}
		starts[ids.Start%inc] = dc.Name
	}
	if inc == 0 {
		return
	}
	n := len(dcs)
	if inc < n {
		v.errorf("datacenters[0].coopr_ids.increment", "increment %d is smaller than the number of datacenters (%d)", inc, n)
	} else if inc < 2*n {
		v.warnf("datacenters[0].coopr_ids.increment", "increment %d leaves little room to add datacenters (Coopr advises room for expansion; use at least %d)", inc, 2*n)
	}
}

func (v *validator) dns() {
	c := v.c
	if c.Listen.DNS == "" {
		return
	}
	if c.DNS.Zone == "" {
		v.errorf("dns.zone", "a zone is required when listen.dns is set (e.g. \"coopr.example.com.\")")
		return
	}
	if _, ok := dns.IsDomainName(c.DNS.Zone); !ok {
		v.errorf("dns.zone", "%q is not a domain name", c.DNS.Zone)
		return
	}
	for _, name := range c.ServiceNames {
		for i, h := range c.Services[name].Hostnames {
			if !dns.IsSubDomain(c.DNS.Zone, dns.Fqdn(strings.TrimPrefix(h, "*."))) {
				v.warnf(fmt.Sprintf("services.%s.hostnames[%d]", name, i), "%q is outside dns.zone %q; DNS will not answer it", h, c.DNS.Zone)
			}
		}
	}
	if c.DNS.UDPSize < 512 || c.DNS.UDPSize > 65535 {
		v.errorf("dns.udp_size", "%d is out of range 512..65535", c.DNS.UDPSize)
	}
	dnames := map[string]bool{}
	for _, r := range c.DNS.Records {
		if rr, _ := dns.NewZoneParser(strings.NewReader(r), c.DNS.Zone, "").Next(); rr != nil && rr.Header().Rrtype == dns.TypeDNAME {
			dnames[strings.ToLower(rr.Header().Name)] = true
		}
	}
	for i, r := range c.DNS.Records {
		path := fmt.Sprintf("dns.records[%d]", i)
		if rr, _ := dns.NewZoneParser(strings.NewReader(r), c.DNS.Zone, "").Next(); rr != nil {
			name := strings.ToLower(rr.Header().Name)
			for owner := range dnames {
				if name != owner && dns.IsSubDomain(owner, name) {
					v.errorf(path, "%s is below the DNAME at %s; nothing may exist there (RFC 6672 section 2.3)", rr.Header().Name, owner)
				}
			}
		}
		zp := dns.NewZoneParser(strings.NewReader(r), c.DNS.Zone, "")
		rr, ok := zp.Next()
		if err := zp.Err(); err != nil {
			v.errorf(path, "%v", err)
			continue
		}
		if !ok || rr == nil {
			v.errorf(path, "empty record")
			continue
		}
		if !dns.IsSubDomain(c.DNS.Zone, rr.Header().Name) {
			v.errorf(path, "%s is outside the zone %s", rr.Header().Name, c.DNS.Zone)
		}
	}
	if len(c.DNS.Nameservers) == 0 {
		v.warnf("dns.nameservers", "not set: serving ns1.%s with the DNS listener's address; a real deployment should name its nameservers", c.DNS.Zone)
	}
	if c.DNS.SOA.RName == "" {
		v.warnf("dns.soa", "not set: using defaults; a real deployment should set soa.mname and soa.rname")
	}
	if c.DNS.TCPMaxConnectionsPerNetwork < 0 {
		v.errorf("dns.tcp_max_connections_per_network", "%d is negative", c.DNS.TCPMaxConnectionsPerNetwork)
	}
	if len(c.DNS.NSID) > 512 {
		v.errorf("dns.nsid", "longer than 512 bytes")
	}
	if f := c.DNS.CookieSecretFile; f != "" {
		b, err := os.ReadFile(f)
		secret := []byte(strings.TrimSpace(string(b)))
		switch {
		case err != nil:
			v.errorf("dns.cookie_secret_file", "%v", err)
		case len(secret) < 16:
			v.errorf("dns.cookie_secret_file", "%s holds %d bytes; a cookie secret needs at least 16", f, len(secret))
		default:
			c.DNS.CookieSecret = secret
		}
	}
	v.dnssec()
}

func (v *validator) dnssec() {
	d := v.c.DNS.DNSSEC
	seen := map[string]bool{}
	for i, f := range d.KeyFiles {
		path := fmt.Sprintf("dns.dnssec.key_file[%d]", i)
		if len(d.KeyFiles) == 1 {
			path = "dns.dnssec.key_file"
		}
		switch {
		case strings.TrimSpace(f) == "":
			v.errorf(path, "empty file name")
		case seen[f]:
			v.errorf(path, "%q is listed twice", f)
		default:
			// The key is read here, so that check and a reload's load
			// step refuse a missing, unreadable or foreign key.
			file := v.c.DNSSECKeyPaths()[i]
			k, err := dnssec.LoadKeyFile(file)
			switch {
			case err != nil:
				v.errorf(path, "%v", err)
			case v.c.DNS.Zone != "" && !strings.EqualFold(k.DNSKEY.Hdr.Name, dns.CanonicalName(v.c.DNS.Zone)):
				v.errorf(path, "%s is a key for %s, not for the zone %s", f, k.DNSKEY.Hdr.Name, v.c.DNS.Zone)
			}
		}
		seen[f] = true
	}
	if d.CacheSize < 0 {
		v.errorf("dns.dnssec.cache_size", "%d is negative", d.CacheSize)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// NotifyEvents are the event kinds a webhook can subscribe to.
var NotifyEvents = []string{"dc_down", "dc_up", "drained", "undrained", "all_down", "dnssec_expiring"}

func (v *validator) notify() {
	for i, n := range v.c.Notify {
		path := fmt.Sprintf("notify[%d]", i)
		if n == nil {
			v.errorf(path, "empty entry")
			continue
		}
		u, err := url.Parse(n.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(path+".url", "%q is not an http(s) URL", n.URL)
		}
		for j, e := range n.Events {
			if !slices.Contains(NotifyEvents, e) {
				v.errorf(fmt.Sprintf("%s.events[%d]", path, j), "unknown event %q (want one of %s)", e, strings.Join(NotifyEvents, ", "))
			}
		}
	}
}
