package dnsserver

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TTLs of the records the configuration does not give a TTL for.
const (
	// soaTTL is the TTL of the SOA record. Negative answers are cached for
	// min(soaTTL, negative_ttl) (RFC 2308 section 5).
	soaTTL = 3600
	// nsTTL is the TTL of NS records and glue built from dns.nameservers.
	nsTTL = 3600
	// anyTTL is the TTL of the HINFO record that answers ANY (RFC 8482).
	anyTTL = 3600
	// soaMinimum is the least SOA MINIMUM field served.
	soaMinimum = 3600
)

// contentSerial derives the SOA serial from what makes the zone: the dns
// block (the cookie secret aside), and each service's hostnames, policy and
// TTL and each datacenter's addresses. Instances with the same configuration
// serve the same serial, and a change of content changes it. It is a hash,
// so a new serial is not "greater" in RFC 1982 terms; nothing transfers this
// zone (AXFR and IXFR are refused), so only equality matters to the
// resolvers and checkers that compare serials. It is never 0.
func contentSerial(cfg *config.Config) uint32 {
	type dcPart struct {
		Name      string
		Addresses map[string][]string
	}
	d := cfg.DNS
	d.CookieSecret, d.CookieSecretFile = nil, ""
	content := struct {
		DNS      config.DNS
		Services map[string][]string
		DCs      []dcPart
	}{DNS: d, Services: map[string][]string{}}
	for _, name := range cfg.ServiceNames {
		sc := cfg.Services[name]
		content.Services[name] = append(slices.Clone(sc.Hostnames), "policy="+sc.Policy, "ttl="+strconv.Itoa(int(sc.DNSTTL)))
	}
	for _, dc := range cfg.Datacenters {
		if dc == nil {
			continue
		}
		p := dcPart{Name: dc.Name, Addresses: map[string][]string{}}
		for svc, ds := range dc.Services {
			if ds != nil {
				p.Addresses[svc] = ds.Addresses
			}
		}
		content.DCs = append(content.DCs, p)
	}
	b, _ := json.Marshal(content)
	sum := sha256.Sum256(b)
	return max(binary.BigEndian.Uint32(sum[:4]), 1)
}

// zone is what the configuration says about the DNS zone, built once per
// *config.Config and read-only afterwards, so any number of queries may read
// it concurrently.
type zone struct {
	cfg *config.Config
	// origin is the zone apex as a lower-case FQDN; empty when the
	// configuration has no zone, in which case every query is refused.
	origin string
	serial uint32
	apex   *node
	// nodes holds every name that exists in the zone, by lower-case FQDN,
	// including empty non-terminals and names below delegations (glue).
	nodes map[string]*node
	// maxDepth is the label count of the deepest name, so a lookup of a long
	// name that does not exist skips the labels no node can match.
	maxDepth int
	// soa answers SOA queries; negSOA, the same record with TTL
	// min(SOA TTL, negative_ttl), goes in the authority section of negative
	// answers.
	soa, negSOA *dns.SOA
	negTTL      uint32
	services    []*serviceData
	settings    settings
	// nsid is the NSID option's value in hex (RFC 5001), empty for none.
	nsid string
	// cookieKey is the configured cookie secret's key, nil for none.
	cookieKey *cookieKey
	// signer signs answers to DO queries (dnssec.go), nil for none.
	signer *dnssec.Signer
}

// settings are the serving parameters the configuration gives, read per
// query or per connection so that a reload changes them without a restart.
// (The number of UDP sockets is fixed when the Server starts.)
type settings struct {
	udpSize     uint16
	idleTimeout time.Duration
	maxConns    int
	maxPerNet   int
	rrl         config.RRL
	cookies     bool
}

// node is one name of the zone.
type node struct {
	name string
	sets []rrset
	// cname is the name's CNAME record, if it has one; it then has no other data.
	cname *dns.CNAME
	// dname is the name's DNAME record, if it has one: names below it are
	// redirected (RFC 6672), and none of them exists in the zone.
	dname *dns.DNAME
	// service indexes zone.services when the name is a GSLB hostname whose
	// A and AAAA records come from routing; -1 otherwise.
	service int
	// cut is the delegation at or above this name, nil when the zone is
	// authoritative for it.
	cut *node
	// wild is the wildcard child "*.<name>", if any (RFC 4592).
	wild *node
	// ns is the NS RRset at the apex or at a delegation; glue holds the
	// in-zone addresses of its targets, for the additional section.
	ns, glue []dns.RR
}

type rrset struct {
	rrtype uint16
	rrs    []dns.RR
}

// rrs returns the records of type t at n.
func (n *node) rrs(t uint16) []dns.RR {
	for i := range n.sets {
		if n.sets[i].rrtype == t {
			return n.sets[i].rrs
		}
	}
	return nil
}

func (n *node) add(rr dns.RR) {
	t := rr.Header().Rrtype
	for i := range n.sets {
		if n.sets[i].rrtype == t {
			for _, have := range n.sets[i].rrs {
				if dns.IsDuplicate(have, rr) {
					return
				}
			}
			n.sets[i].rrs = append(n.sets[i].rrs, rr)
			return
		}
	}
	n.sets = append(n.sets, rrset{rrtype: t, rrs: []dns.RR{rr}})
}

// serviceData is what DNS needs of one service: its name and each
// datacenter's addresses. Which datacenters an answer carries is routing's
// decision (routing.Answer.DNS).
type serviceData struct {
	name string
	dcs  map[string]*dcData
	// networks are the datacenters' client networks under the nearest
	// policy, for the ECS scope.
	networks []dcNetwork
	// refused counts answers given while no datacenter may serve.
	refused prometheus.Counter
}

// dcData is one datacenter's addresses for one service, ready to be put in
// A and AAAA records.
type dcData struct {
	dc     string
	v4, v6 []net.IP
	// answers counts GSLB answers that named this datacenter.
	answers prometheus.Counter
}

// zoneBuilder collects the zone's names while buildZone runs.
type zoneBuilder struct {
	z   *zone
	log *slog.Logger
}

// buildZone derives the zone from cfg. snap, built from cfg, says which
// service owns each hostname. It never fails: a record that cannot be served
// is logged and left out, so a reload never takes the zone down. (The
// configuration was validated, so that does not happen in practice.)
func buildZone(cfg *config.Config, snap *routing.Snapshot, serial uint32, m *metrics, log *slog.Logger) *zone {
	d := cfg.DNS
	z := &zone{
		cfg:    cfg,
		serial: serial,
		nodes:  map[string]*node{},
		settings: settings{
			udpSize:     uint16(orDefault(d.UDPSize, config.DefaultUDPSize)),
			idleTimeout: d.TCPIdleTimeout.D(),
			maxConns:    d.TCPMaxConnections,
			maxPerNet:   d.TCPMaxConnectionsPerNetwork,
			rrl:         d.RRL,
			cookies:     d.Cookies == nil || *d.Cookies,
		},
	}
	if z.serial == 0 {
		z.serial = contentSerial(cfg)
	}
	if d.NSID != "" {
		id := d.NSID
		if id == "hostname" {
			id, _ = os.Hostname()
		}
		z.nsid = hex.EncodeToString([]byte(id))
	}
	if len(d.CookieSecret) > 0 {
		z.cookieKey = newCookieKey(d.CookieSecret)
	}
	if z.settings.idleTimeout <= 0 {
		z.settings.idleTimeout = 10 * time.Second
	}
	if z.settings.maxConns <= 0 {
		z.settings.maxConns = 1000
	}
	if z.settings.maxPerNet <= 0 {
		z.settings.maxPerNet = max(1, z.settings.maxConns/10)
	}
	origin, ok := canonicalName(d.Zone)
	if d.Zone == "" || !ok {
		if d.Zone != "" {
			log.Warn("dns: zone is not a domain name; refusing every query", "zone", d.Zone)
		}
		return z
	}
	z.origin = origin
	b := &zoneBuilder{z: z, log: log}
	z.apex = b.node(origin)

	b.staticRecords(d.Records)
	b.nameservers(cfg)
	b.soa(d.SOA)
	b.services(cfg, snap, m)
	b.finish()
	return z
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (b *zoneBuilder) node(name string) *node {
	n := b.z.nodes[name]
	if n == nil {
		n = &node{name: name, service: -1}
		b.z.nodes[name] = n
	}
	return n
}

// staticRecords adds dns.records, parsed relative to the zone.
func (b *zoneBuilder) staticRecords(records []string) {
	origin := b.z.origin
	for i, text := range records {
		zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			b.addStatic(i, rr)
		}
		if err := zp.Err(); err != nil {
			b.log.Warn("dns: skipping a record that does not parse", "record", i, "error", err)
		}
	}
}

func (b *zoneBuilder) addStatic(i int, rr dns.RR) {
	h := rr.Header()
	name, ok := canonicalName(h.Name)
	if !ok || !dns.IsSubDomain(b.z.origin, name) {
		b.log.Warn("dns: skipping a record outside the zone", "record", i, "name", h.Name)
		return
	}
	h.Name = name
	if h.Class != dns.ClassINET {
		b.log.Warn("dns: skipping a record of class other than IN", "record", i, "name", h.Name)
		return
	}
	// Targets that may lead back into the zone are folded to lower case so
	// that chasing them finds their nodes.
	switch rr := rr.(type) {
	case *dns.SOA:
		b.log.Warn("dns: skipping a static SOA record; the SOA comes from dns.soa", "record", i)
		return
	case *dns.CNAME:
		if rr.Target, ok = canonicalName(rr.Target); !ok {
			return
		}
	case *dns.NS:
		if rr.Ns, ok = canonicalName(rr.Ns); !ok {
			return
		}
	case *dns.DNAME:
		if rr.Target, ok = canonicalName(rr.Target); !ok {
			return
		}
	}
	b.node(name).add(rr)
}

// nameservers adds the apex NS records and the addresses of in-zone
// nameservers. Without dns.nameservers (and without static NS records at the
// apex) the zone names ns1.<zone>, at the DNS listener's address when that is
// a concrete IP.
func (b *zoneBuilder) nameservers(cfg *config.Config) {
	z := b.z
	servers := cfg.DNS.Nameservers
	if len(servers) == 0 && len(z.apex.rrs(dns.TypeNS)) == 0 {
		servers = map[string][]string{"ns1": nil}
		if host, _, err := net.SplitHostPort(cfg.Listen.DNS); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
				servers["ns1"] = []string{ip.String()}
			}
		}
	}
	names := make([]string, 0, len(servers))
	for k := range servers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		target, ok := canonicalName(absoluteName(k, z.origin))
		if !ok {
			b.log.Warn("dns: skipping a nameserver that is not a domain name", "nameserver", k)
			continue
		}
		z.apex.add(&dns.NS{Hdr: hdr(z.origin, dns.TypeNS, nsTTL), Ns: target})
		if !dns.IsSubDomain(z.origin, target) {
			continue // out of zone: its addresses are someone else's to serve
		}
		for _, a := range servers[k] {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				b.log.Warn("dns: skipping a nameserver address that is not an IP", "nameserver", k, "address", a)
				continue
			}
			b.node(target).add(addressRR(target, nsTTL, ip.Unmap()))
		}
	}
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func addressRR(name string, ttl uint32, ip netip.Addr) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()}
}

// soa builds the SOA record. MNAME defaults to the first nameserver, RNAME to
// hostmaster.<zone>.
func (b *zoneBuilder) soa(c config.SOA) {
	z := b.z
	mname := ""
	if c.MName != "" {
		mname, _ = canonicalName(absoluteName(c.MName, z.origin))
	}
	if ns := z.apex.rrs(dns.TypeNS); mname == "" && len(ns) > 0 {
		mname = ns[0].(*dns.NS).Ns
	}
	if mname == "" {
		mname = "ns1." + z.origin
	}
	rname := ""
	if c.RName != "" {
		rname, _ = canonicalName(mailboxName(c.RName, z.origin))
	}
	if rname == "" {
		rname = "hostmaster." + z.origin
	}
	z.negTTL = seconds(c.NegativeTTL.D(), 60*time.Second)
	z.soa = &dns.SOA{
		Hdr:     hdr(z.origin, dns.TypeSOA, soaTTL),
		Ns:      mname,
		Mbox:    rname,
		Serial:  z.serial,
		Refresh: seconds(c.Refresh.D(), config.DefaultSOARefresh),
		Retry:   seconds(c.Retry.D(), config.DefaultSOARetry),
		Expire:  seconds(c.Expire.D(), config.DefaultSOAExpire),
		// MINIMUM caps negative caching (RFC 2308 section 4) and checkers
		// expect it between 300 and 86400; the SOA that negative answers
		// carry has TTL negative_ttl, which bounds the caching below it.
		Minttl: max(z.negTTL, soaMinimum),
	}
	neg := *z.soa
	neg.Hdr.Ttl = min(soaTTL, z.negTTL)
	z.negSOA = &neg
	z.apex.add(z.soa)
}

// seconds converts a duration to whole seconds, def when it is not positive.
func seconds(d, def time.Duration) uint32 {
	if d <= 0 {
		d = def
	}
	return uint32(min(d/time.Second, 1<<31-1))
}

// services marks every service hostname inside the zone as a GSLB name and
// prepares each datacenter's addresses.
func (b *zoneBuilder) services(cfg *config.Config, snap *routing.Snapshot, m *metrics) {
	z := b.z
	index := make(map[string]int, len(cfg.ServiceNames))
	for _, name := range cfg.ServiceNames {
		sd := &serviceData{
			name:    name,
			dcs:     map[string]*dcData{},
			refused: m.gslbAnswers.WithLabelValues(name, "none"),
		}
		sc := cfg.Services[name]
		for _, dc := range cfg.Datacenters {
			if dc == nil || dc.Services[name] == nil {
				continue
			}
			if sc.Policy == "nearest" {
				for _, p := range dc.Networks {
					sd.networks = append(sd.networks, dcNetwork{prefix: p.Masked(), dc: dc.Name})
				}
			}
			ds := dc.Services[name]
			dd := &dcData{dc: dc.Name, answers: m.gslbAnswers.WithLabelValues(name, dc.Name)}
			for _, ip := range ds.ParsedAddresses {
				if ip = ip.Unmap(); ip.Is4() {
					dd.v4 = append(dd.v4, ip.AsSlice())
				} else {
					dd.v6 = append(dd.v6, ip.AsSlice())
				}
			}
			sd.dcs[dc.Name] = dd
		}
		index[name] = len(z.services)
		z.services = append(z.services, sd)
	}
	for _, name := range cfg.ServiceNames {
		for _, h := range cfg.Services[name].Hostnames {
			fq, ok := canonicalName(h)
			if !ok || !dns.IsSubDomain(z.origin, fq) {
				continue // config validation warned about it
			}
			// Several services may share a hostname with different path
			// prefixes; DNS answers for the one routing picks for the name.
			owner := name
			if snap != nil {
				if s := snap.MatchName(strings.TrimSuffix(fq, ".")); s != nil {
					owner = s.Name
				}
			}
			n := b.node(fq)
			n.service = index[owner]
			if n.cname != nil || len(n.rrs(dns.TypeCNAME)) > 0 {
				b.log.Warn("dns: a service hostname also has a static CNAME; ignoring the CNAME", "name", fq, "service", owner)
				n.dropType(dns.TypeCNAME)
			}
		}
	}
}

func (n *node) dropType(t uint16) {
	n.sets = slices.DeleteFunc(n.sets, func(s rrset) bool { return s.rrtype == t })
}

// finish derives what lookups need from the collected names: empty
// non-terminals, wildcard links, delegations and glue.
func (b *zoneBuilder) finish() {
	z := b.z
	names := make([]string, 0, len(z.nodes))
	for name := range z.nodes {
		names = append(names, name)
	}
	// Nothing exists below a DNAME (RFC 6672 section 2.3): such names are
	// dropped before they can make empty non-terminals.
	for _, name := range names {
		for p := parent([]byte(name)); p != nil && len(p) >= len(z.origin); p = parent(p) {
			if a := z.nodes[string(p)]; a != nil && len(a.rrs(dns.TypeDNAME)) > 0 {
				b.log.Warn("dns: skipping a name below a DNAME", "name", name, "dname", string(p))
				delete(z.nodes, name)
				break
			}
		}
	}
	names = names[:0]
	for name := range z.nodes {
		names = append(names, name)
	}
	// Empty non-terminals exist because a deeper name does (RFC 4592
	// section 2.2.2): they answer NODATA, not NXDOMAIN.
	for _, name := range names {
		for p := parent([]byte(name)); p != nil && len(p) > len(z.origin); p = parent(p) {
			b.node(string(p))
		}
	}
	for name, n := range z.nodes {
		z.maxDepth = max(z.maxDepth, countLabels([]byte(name)))
		if cn := n.rrs(dns.TypeCNAME); len(cn) > 0 {
			if len(n.sets) > 1 {
				b.log.Warn("dns: a CNAME cannot coexist with other data; serving only the CNAME", "name", name)
				n.sets = []rrset{{rrtype: dns.TypeCNAME, rrs: cn[:1]}}
			}
			n.cname = cn[0].(*dns.CNAME)
		}
		if dn := n.rrs(dns.TypeDNAME); len(dn) > 0 {
			n.dname = dn[0].(*dns.DNAME)
		}
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			if p := z.nodes[rest]; p != nil {
				p.wild = n
			}
		}
		n.ns = n.rrs(dns.TypeNS)
	}
	// A name at or below an NS record other than the apex's is delegated;
	// the topmost such NS record is the zone cut.
	for name, n := range z.nodes {
		for p := []byte(name); p != nil && len(p) > len(z.origin); p = parent(p) {
			if a := z.nodes[string(p)]; a != nil && len(a.ns) > 0 {
				n.cut = a
			}
		}
		if n.cut != nil && n.service >= 0 && n.cut == n {
			b.log.Warn("dns: a service hostname is delegated; the delegation wins", "name", name)
		}
	}
	for _, n := range z.nodes {
		if len(n.ns) == 0 || (n.cut != n && n != z.apex) {
			continue
		}
		for _, rr := range n.ns {
			if t := z.nodes[rr.(*dns.NS).Ns]; t != nil {
				n.glue = append(n.glue, t.rrs(dns.TypeA)...)
				n.glue = append(n.glue, t.rrs(dns.TypeAAAA)...)
			}
		}
	}
}

// dcNetwork is a client network of a datacenter.
type dcNetwork struct {
	prefix netip.Prefix
	dc     string
}

// scope returns the ECS scope for an answer naming datacenter dc to client,
// whose decision depended on bits of its address (-1: on no network it is
// in): long enough that no network of another datacenter lies inside it
// (RFC 7871 section 7.2.1), so a resolver's cache gives the answer only to
// clients that get it from us too.
func (sd *serviceData) scope(client netip.Addr, bits int, dc string) int {
	client = client.Unmap()
	scope := max(bits, 0)
	for _, n := range sd.networks {
		if n.dc == dc || n.prefix.Addr().Is4() != client.Is4() || n.prefix.Contains(client) {
			continue
		}
		// The shortest prefix of client that excludes n is one bit longer
		// than what they share.
		common := commonBits(client, n.prefix.Addr())
		if common < n.prefix.Bits() {
			scope = max(scope, common+1)
		}
	}
	return scope
}

// commonBits is the length of the prefix a and b share (same family).
func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	start := 0
	if a.Is4() {
		start, n = 12, 0
	}
	for i := start; i < 16; i++ {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		return n
	}
	return n
}
