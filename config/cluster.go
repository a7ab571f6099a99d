package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Cluster configures gossip between coopr-gslb instances (the `cluster:`
// block). A nil *Cluster (no block) means a single instance that decides
// alone.
type Cluster struct {
	// Name is this instance's member name. If empty, the host name.
	Name string `yaml:"name" reload:"restart"`
	// Bind is the host:port memberlist listens on, for both UDP and TCP.
	// If empty, DefaultClusterBind.
	Bind string `yaml:"bind" reload:"restart"`
	// Advertise is the host:port other members reach this one at. If empty,
	// the bind address (or, when bind's host is unspecified, a private address
	// of the host).
	Advertise string `yaml:"advertise" reload:"restart"`
	// Peers are host:port gossip addresses joined at start and re-joined every
	// few seconds while they are not alive members. The list may include this
	// instance itself, so every host can share one list.
	Peers []string `yaml:"peers"`
	// SecretKeyFile holds the gossip key: 16, 24 or 32 raw bytes, or their
	// hex or base64 text (a trailing newline is ignored). Required when
	// Peers is set.
	SecretKeyFile string `yaml:"secret_key_file" reload:"restart"`
	// Quorum is how many of the voting members must see an endpoint down for
	// it to count as down: "majority" (the default) or a count.
	Quorum Quorum `yaml:"quorum"`
}

// DefaultClusterBind is the gossip address used when cluster.bind is empty.
const DefaultClusterBind = "0.0.0.0:7946"

// Quorum is cluster.quorum: a majority of the voters, or a fixed count.
// The zero value is a majority.
type Quorum struct {
	// Count is the fixed number of down votes needed; 0 means a majority.
	Count int
}

// IsMajority reports whether the quorum is a majority of the voters.
func (q Quorum) IsMajority() bool { return q.Count == 0 }

// String renders the value as written in the config.
func (q Quorum) String() string {
	if q.Count == 0 {
		return "majority"
	}
	return strconv.Itoa(q.Count)
}

// UnmarshalYAML accepts "majority" or a count (2).
func (q *Quorum) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want \"majority\" or a count such as 2", n.Line)
	}
	if s == "majority" {
		*q = Quorum{}
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return fmt.Errorf("line %d: %q is neither \"majority\" nor a count of at least 1", n.Line, n.Value)
	}
	*q = Quorum{Count: v}
	return nil
}

// MarshalYAML writes the value back as it would be written by hand.
func (q Quorum) MarshalYAML() (any, error) {
	if q.Count == 0 {
		return "majority", nil
	}
	return q.Count, nil
}

func (c *Config) fillClusterDefaults() {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if cl.Name == "" {
		cl.Name, _ = os.Hostname()
	}
	if cl.Bind == "" {
		cl.Bind = DefaultClusterBind
	}
}

// cluster checks the cluster block and health.source_address.
func (v *validator) cluster() {
	if src := v.c.Health.SourceAddress; src != "" {
		if a, err := netip.ParseAddr(src); err != nil || a.Zone() != "" {
			v.errorf("health.source_address", "%q is not an IP address", src)
		}
	}
	// Probes leave from one address per host: an override per service or DC
	// would make one instance several vantage points.
	if v.c.loc != nil {
		var paths []string
		for p := range v.c.loc.lines {
			if strings.HasSuffix(p, ".check.source_address") {
				paths = append(paths, p)
			}
		}
		sortStrings(paths)
		for _, p := range paths {
			v.errorf(p, "source_address may only be set in the top-level health block")
		}
	}

	cl := v.c.Cluster
	if cl == nil {
		return
	}
	if cl.Name == "" {
		v.errorf("cluster.name", "a name is required (the host name could not be read)")
	}
	if err := checkHostPort(cl.Bind, true); err != nil {
		v.errorf("cluster.bind", "%v", err)
	} else if host, _, _ := net.SplitHostPort(cl.Bind); host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.errorf("cluster.bind", "host %q must be an IP address", host)
		}
	}
	if cl.Advertise != "" {
		if err := checkHostPort(cl.Advertise, false); err != nil {
			v.errorf("cluster.advertise", "%v", err)
		} else if host, port, _ := net.SplitHostPort(cl.Advertise); port == "0" {
			v.errorf("cluster.advertise", "%q: port 0 cannot be reached", cl.Advertise)
		} else if a, err := netip.ParseAddr(host); err != nil || a.IsUnspecified() {
			v.errorf("cluster.advertise", "host %q must be a reachable IP address", host)
		}
	}
	seen := map[string]int{}
	for i, p := range cl.Peers {
		path := fmt.Sprintf("cluster.peers[%d]", i)
		if err := checkHostPort(p, false); err != nil {
			v.errorf(path, "%v", err)
		} else if j, dup := seen[p]; dup {
			v.errorf(path, "%q is already cluster.peers[%d]", p, j)
		}
		seen[p] = i
	}
	if len(cl.Peers) > 0 && cl.SecretKeyFile == "" {
		v.errorf("cluster.secret_key_file", "required when cluster.peers is set: gossip must be encrypted")
	}
	if cl.SecretKeyFile != "" {
		if _, err := LoadClusterKey(cl.SecretKeyFile); err != nil {
			v.errorf("cluster.secret_key_file", "%v", err)
		}
	}
}

// LoadClusterKey reads a gossip key file: 16, 24 or 32 bytes given raw, or as
// hex or base64 text; a trailing newline is ignored. Text is tried first (hex,
// then base64), so a raw key that happens to be valid text of the right length
// is read as text; keys made by `openssl rand -hex 32` or `-base64 32`, or raw
// random bytes, are read as meant.
func LoadClusterKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParseClusterKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseClusterKey decodes a gossip key; see LoadClusterKey.
func ParseClusterKey(data []byte) ([]byte, error) {
	ok := func(n int) bool { return n == 16 || n == 24 || n == 32 }
	text := strings.TrimRight(string(data), "\r\n")
	if k, err := hex.DecodeString(text); err == nil && ok(len(k)) {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if k, err := enc.DecodeString(text); err == nil && ok(len(k)) {
			return k, nil
		}
	}
	if ok(len(data)) {
		return data, nil
	}
	if ok(len(text)) {
		return []byte(text), nil
	}
	return nil, fmt.Errorf("a key must be 16, 24 or 32 bytes, raw or as hex or base64 text; this file holds %d bytes", len(data))
}
