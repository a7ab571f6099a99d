// Package config defines coopr-gslb's configuration: its types, defaults, strict YAML
// decoding and validation. It is a leaf package: it imports nothing else of the project.
//
// A Config is built once by Load (decode, fill defaults, validate) and never mutated
// afterwards; every other package treats it as read-only and may share it freely.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Listen      Listen              `yaml:"listen"`
	Health      Check               `yaml:"health"`
	Datacenters []*Datacenter       `yaml:"datacenters"`
	Services    map[string]*Service `yaml:"services"`
	DNS         DNS                 `yaml:"dns"`
	Admin       Admin               `yaml:"admin"`
	Notify      []*Notify           `yaml:"notify"`
	Proxy       Proxy               `yaml:"proxy"`
	TLS         TLS                 `yaml:"tls"`
	// Cluster, if not nil, makes this instance a member of a gossip cluster.
	Cluster *Cluster `yaml:"cluster" reload:"presence"`
	// Log configures the main log.
	Log Log `yaml:"log"`

	// ServiceNames lists the keys of Services in sorted order so that every
	// consumer iterates services deterministically.
	ServiceNames []string `yaml:"-"`
	// Path is the file the configuration came from, for messages.
	Path string `yaml:"-"`

	loc *locator
}

// Listen holds the listener addresses. An empty address disables that front door.
//
// A field tagged reload:"restart" is bound or read once at start: a reload
// reports its change as needing a restart and keeps the running value. This
// tag is the one place that says so (see the instance package's reload).
type Listen struct {
	HTTP  string `yaml:"http" reload:"restart"`
	HTTPS string `yaml:"https" reload:"restart"`
	DNS   string `yaml:"dns" reload:"restart"`
	Admin string `yaml:"admin" reload:"restart"`
}

// Check describes how to probe an endpoint. The top-level `health` block gives the
// defaults; a service's `check` and a datacenter service's `check` override them
// field by field.
type Check struct {
	Type          string            `yaml:"type"` // http | https | tcp
	Method        string            `yaml:"method"`
	Path          string            `yaml:"path"`
	Host          string            `yaml:"host"`
	Headers       map[string]string `yaml:"headers"`
	ExpectStatus  []int             `yaml:"expect_status"`
	ExpectBody    string            `yaml:"expect_body"`
	TLSServerName string            `yaml:"tls_server_name"`
	CAFile        string            `yaml:"ca_file"`
	SkipVerify    bool              `yaml:"insecure_skip_verify"`
	Interval      Duration          `yaml:"interval"`
	Timeout       Duration          `yaml:"timeout"`
	Rise          int               `yaml:"rise"`
	Fall          int               `yaml:"fall"`
	// FastInterval re-probes an endpoint whose state is in doubt (the first
	// failure of an up endpoint, the first success of a down one) until rise
	// or fall decides it. Zero means the interval (no fast re-probing).
	FastInterval Duration `yaml:"fast_interval"`
	// DownInterval probes an endpoint that is down this often, so that its
	// recovery is seen sooner (HAProxy's downinter). Zero means the interval.
	DownInterval Duration `yaml:"down_interval"`
	// SourceAddress is the local IP address probes are sent from; only the
	// top-level health block may set it. If empty, the system chooses.
	SourceAddress string `yaml:"source_address"`
	// FlapWindow is how many recent probe results an up endpoint is judged
	// on besides fall: it goes down once FlapThreshold of them failed, so
	// an endpoint failing every other probe is caught. The window restarts
	// at every state change. Zero means DefaultFlapWindow; negative, off.
	FlapWindow    int `yaml:"flap_window"`
	FlapThreshold int `yaml:"flap_threshold"`
	// FlapChanges state changes within FlapHold mark an endpoint as
	// flapping: it is held down until it has made no change for FlapHold.
	// Zero means the defaults; a negative FlapChanges turns damping off.
	FlapChanges int      `yaml:"flap_changes"`
	FlapHold    Duration `yaml:"flap_hold"`
}

// Datacenter is one Coopr site.
type Datacenter struct {
	Name     string `yaml:"name"`
	Priority int    `yaml:"priority"`
	// Weight is the DC's share under the weighted policy and among DCs of equal
	// priority under failover. Zero means the default, 100.
	Weight         int                   `yaml:"weight"`
	ClientNetworks []string              `yaml:"client_networks"`
	CooprIDs       *CooprIDs             `yaml:"coopr_ids"`
	Takeover       []string              `yaml:"takeover"`
	Services       map[string]*DCService `yaml:"services"`

	// Networks is ClientNetworks parsed, filled by Load.
	Networks []netip.Prefix `yaml:"-"`
}

// CooprIDs mirrors Coopr's server.ids.start.num and server.ids.increment.by.
type CooprIDs struct {
	Start     int `yaml:"start"`
	Increment int `yaml:"increment"`
}

// DCService is one service as deployed in one datacenter.
type DCService struct {
	// Endpoints are host:port pairs probed and proxied to.
	Endpoints []string `yaml:"endpoints"`
	// Addresses are what DNS answers for this DC (its VIPs).
	Addresses []string `yaml:"addresses"`
	// Check overrides the service's check for this DC only. If nil, the
	// service's check applies.
	Check *Check `yaml:"check"`
	// UpstreamTLS overrides the service's upstream_tls for this DC, field by
	// field (cert_file and key_file together). If nil, the service's applies.
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls"`

	// ParsedAddresses is Addresses parsed, filled by Load.
	ParsedAddresses []netip.Addr `yaml:"-"`
	// EffectiveCheck is the check after defaults and overrides, filled by Load.
	EffectiveCheck Check `yaml:"-"`
	// EffectiveUpstreamTLS is the service's upstream_tls with this DC's
	// override applied and its files read, filled by Load; nil means plain
	// HTTP to the endpoints. Config.UpstreamTLSFor returns it.
	EffectiveUpstreamTLS *UpstreamTLS `yaml:"-"`
}

// Service is a name users reach (the Coopr API, the UI) and how to route it.
type Service struct {
	Hostnames    []string   `yaml:"hostnames"`
	PathPrefixes []string   `yaml:"path_prefixes"`
	Check        Check      `yaml:"check"`
	Policy       string     `yaml:"policy"` // failover | weighted | nearest | all
	MinHealthy   MinHealthy `yaml:"min_healthy"`
	WhenAllDown  string     `yaml:"when_all_down"` // serve_all | refuse
	DNSTTL       Seconds    `yaml:"dns_ttl"`
	Affinity     string     `yaml:"affinity"` // "" | none | cookie
	// Retry overrides proxy.retry for this service. If nil, proxy.retry applies.
	Retry *Retry `yaml:"retry"`
	// Idempotent lists requests the operator declares safe to replay, as
	// "METHOD /path/prefix" (e.g. "PUT /v2/providers/").
	Idempotent []string `yaml:"idempotent"`
	// LoadBalancing picks an endpoint inside a DC: round_robin (default) or least_outstanding.
	LoadBalancing string `yaml:"load_balancing"`
	// UpstreamHost, if set, replaces the Host header sent to endpoints; by
	// default the client's Host is kept.
	UpstreamHost string `yaml:"upstream_host"`
	// FailoverBudget, if set, is the worst-case time a client may be sent to
	// a failed DC; the DNS TTL is derived from it (budget minus worst-case
	// detection time, at least MinTTL) instead of dns_ttl.
	FailoverBudget Duration `yaml:"failover_budget"`
	// ShardRouting sends requests for /v2/clusters/{id} to the DC that owns
	// the cluster's ID partition: off (default), writes (non-read methods) or all.
	ShardRouting string `yaml:"shard_routing"`
	// UpstreamTLS, if set, makes the proxy and the health probes speak TLS
	// to this service's endpoints. If nil, they speak plain HTTP.
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls"`
}

// MinHealthy is the number of healthy endpoints a DC needs for a service, given
// as a count ("1") or a percentage ("50%").
type MinHealthy struct {
	Count     int
	Percent   int // used when IsPercent
	IsPercent bool
	set       bool
}

// Required returns how many of total endpoints must be healthy. It is never
// below 1 for a non-empty DC, so a DC with no healthy endpoint is never healthy.
func (m MinHealthy) Required(total int) int {
	n := m.Count
	if m.IsPercent {
		n = (total*m.Percent + 99) / 100
	}
	if n < 1 {
		n = 1
	}
	return n
}

// String renders the value as written in the config.
func (m MinHealthy) String() string {
	if m.IsPercent {
		return itoa(m.Percent) + "%"
	}
	return itoa(m.Count)
}

// DNS configures the authoritative zone.
type DNS struct {
	Zone string `yaml:"zone"`
	// Nameservers maps NS names to their addresses (glue for in-zone names).
	// If empty, ns1.<zone> with the DNS listener's address is served.
	Nameservers map[string][]string `yaml:"nameservers"`
	SOA         SOA                 `yaml:"soa"`
	// Records are static records in zone-file syntax, relative to Zone.
	Records []string `yaml:"records"`
	// UDPSize is the EDNS(0) UDP payload size we advertise. Zero means 1232.
	UDPSize int `yaml:"udp_size"`
	// UDPSockets is how many SO_REUSEPORT UDP sockets to serve. Zero means one per CPU.
	UDPSockets int `yaml:"udp_sockets" reload:"restart"`
	// TCPIdleTimeout closes idle TCP connections. Zero means 10s.
	TCPIdleTimeout Duration `yaml:"tcp_idle_timeout"`
	// TCPMaxConnections bounds concurrent TCP connections. Zero means 1000.
	TCPMaxConnections int `yaml:"tcp_max_connections"`
	RRL               RRL `yaml:"rrl"`
	// DNSSEC signs answers online when set up; see DNSSEC.
	DNSSEC DNSSEC `yaml:"dnssec"`
	// TCPMaxConnectionsPerNetwork bounds the TCP connections of one client
	// network (the RRL prefix lengths group them). Zero means a tenth of
	// TCPMaxConnections (at least 1).
	TCPMaxConnectionsPerNetwork int `yaml:"tcp_max_connections_per_network"`
	// NSID is the name-server identifier returned to queries that ask for it
	// (RFC 5001); "hostname" means the host name. Empty: none.
	NSID string `yaml:"nsid"`
	// Cookies turns DNS Cookies (RFC 7873, RFC 9018 server cookies) on or
	// off. If nil: on.
	Cookies *bool `yaml:"cookies"`
	// CookieSecretFile holds the server cookie secret shared by the
	// instances serving the zone (at least 16 bytes). If empty, a random
	// secret per process (unless the cluster supplies one).
	CookieSecretFile string `yaml:"cookie_secret_file"`
	// CookieSecret is the content of CookieSecretFile, read by Load.
	CookieSecret []byte `yaml:"-"`
}

// DNSSEC configures online signing of the zone. If KeyFiles is empty the zone
// is served unsigned.
type DNSSEC struct {
	// KeyFiles are key files written by "coopr-gslb dnssec keygen", relative
	// to the config file's directory unless absolute. The first key signs;
	// the others are published in the DNSKEY RRset only (a pre-published
	// rollover key). Written as one string or a list.
	KeyFiles StringList `yaml:"key_file"`
	// CacheSize bounds the lazily filled signature cache (RRsets not signed
	// in advance). Zero means 10000.
	CacheSize int `yaml:"cache_size"`
}

// StringList is a list of strings that may be written as a single string.
type StringList []string

// RRL configures response rate limiting of UDP answers per client network.
type RRL struct {
	// ResponsesPerSecond per client network; zero disables RRL.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Slip: every Nth limited response goes out truncated (TC) instead of
	// being dropped, so real clients retry over TCP. Zero means 2; 1 truncates all.
	Slip int `yaml:"slip"`
	// IPv4PrefixLen and IPv6PrefixLen group clients into networks. Zero means 24 and 56.
	IPv4PrefixLen int `yaml:"ipv4_prefix_len"`
	IPv6PrefixLen int `yaml:"ipv6_prefix_len"`
}

// SOA holds the zone's SOA fields other than the serial, which derives from
// the zone's content. The timers and the negative TTL are written as
// seconds (3600) or durations ("1h").
type SOA struct {
	MName       string `yaml:"mname"`
	RName       string `yaml:"rname"`
	Refresh     TTL    `yaml:"refresh"`
	Retry       TTL    `yaml:"retry"`
	Expire      TTL    `yaml:"expire"`
	NegativeTTL TTL    `yaml:"negative_ttl"`
}

// Admin configures the status page and API.
type Admin struct {
	// StateDir is where drains (and the affinity key) persist across
	// restarts. If empty, nothing persists.
	StateDir string `yaml:"state_dir" reload:"restart"`
	// TokenFile holds the bearer tokens that may change things, one per line
	// as "NAME TOKEN" (or a bare TOKEN, named "admin"). The environment
	// variable COOPR_GSLB_ADMIN_TOKEN adds one more, named "env".
	TokenFile string `yaml:"token_file" reload:"restart"`
	// ReadRequiresToken makes reads (status page, API GETs, /metrics)
	// need a token too. If nil: no on a loopback listen.admin, yes elsewhere.
	ReadRequiresToken *bool `yaml:"read_requires_token" reload:"restart"`
	// AllowedHosts are extra Host header values the admin listener answers,
	// besides its own address and loopback names (DNS rebinding protection).
	// An entry without a port matches any port.
	AllowedHosts []string `yaml:"allowed_hosts" reload:"restart"`
	// ReadTimeout bounds reading a whole request, WriteTimeout writing its
	// answer, IdleTimeout an idle keep-alive connection. Zero means 10s, 30s
	// and 60s.
	ReadTimeout  Duration `yaml:"read_timeout" reload:"restart"`
	WriteTimeout Duration `yaml:"write_timeout" reload:"restart"`
	IdleTimeout  Duration `yaml:"idle_timeout" reload:"restart"`
	// MaxConnections caps the admin listener's open connections; more wait
	// in the listen backlog. Zero means 256.
	MaxConnections int `yaml:"max_connections" reload:"restart"`
}

// Notify is one webhook that receives routing events.
type Notify struct {
	URL string `yaml:"url"`
	// Events are the kinds sent: dc_down, dc_up, drained, undrained, all_down.
	// If empty, all of them.
	Events []string `yaml:"events"`
	// Headers are added to every POST (e.g. an Authorization header).
	Headers map[string]string `yaml:"headers"`
}

// Duration is a time.Duration written as a Go duration string ("800ms", "1s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders the duration like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// TTL is a DNS time value written as bare seconds (60), as DNS operators
// do, or as a Go duration string ("1m").
type TTL time.Duration

// D returns the value as a time.Duration.
func (t TTL) D() time.Duration { return time.Duration(t) }

// String renders the value like time.Duration does.
func (t TTL) String() string { return time.Duration(t).String() }

// Seconds is a whole number of seconds written as bare seconds (20) or as a
// Go duration string ("20s").
type Seconds int
