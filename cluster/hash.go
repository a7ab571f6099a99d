package cluster

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// ConfigHash returns a short hex digest of what every member of a cluster
// must agree on: the datacenters, services, health checks, DNS zone and the
// proxy's policy keys. Keys that differ from host to host by design (listen
// addresses, the cluster block, health.source_address, admin, TLS files, the
// access log, the affinity key file's path) are left out, so two members
// serving the same configuration publish the same hash. cfg is not modified.
func ConfigHash(cfg *config.Config) string {
	health := cfg.Health
	health.SourceAddress = ""
	proxy := cfg.Proxy
	proxy.AccessLog = nil
	proxy.AffinityKeyFile = ""

	dcs := make([]config.Datacenter, 0, len(cfg.Datacenters))
	for _, dc := range cfg.Datacenters {
		if dc == nil {
			continue
		}
		d := *dc
		d.Services = make(map[string]*config.DCService, len(dc.Services))
		for name, ds := range dc.Services {
			s := *ds
			s.EffectiveCheck.SourceAddress = ""
			if s.Check != nil {
				c := *s.Check
				c.SourceAddress = ""
				s.Check = &c
			}
			d.Services[name] = &s
		}
		dcs = append(dcs, d)
	}
	svcs := make(map[string]config.Service, len(cfg.Services))
	for name, s := range cfg.Services {
		c := *s
		c.Check.SourceAddress = ""
		svcs[name] = c
	}
	doc := struct {
		Version     int
		Health      config.Check
		Datacenters []config.Datacenter
		Services    map[string]config.Service
		DNS         config.DNS
		Proxy       config.Proxy
	}{1, health, dcs, svcs, cfg.DNS, proxy}
	// encoding/json sorts map keys, so equal configurations encode equally.
	data, err := json.Marshal(doc)
	if err != nil {
		panic("cluster: hashing the configuration: " + err.Error()) // plain data; cannot fail
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Labels for DeriveSecret, one per use, so that no two uses share a key.
const (
	// SecretDNSCookie is the label of the DNS server-cookie secret (RFC 7873).
	SecretDNSCookie = "coopr-gslb dns cookie"
	// SecretAffinity is the label of the affinity-cookie signing key.
	SecretAffinity = "coopr-gslb affinity cookie"
)

// DeriveSecret returns a 32-byte secret for label derived from the cluster
// key with HKDF-SHA256, so that every member holding the same key derives the
// same secret and no derived secret reveals the key or another label's.
func DeriveSecret(clusterKey []byte, label string) []byte {
	out, err := hkdf.Key(sha256.New, clusterKey, nil, label, 32)
	if err != nil {
		panic("cluster: deriving a secret: " + err.Error()) // only for lengths over 255*32
	}
	return out
}
