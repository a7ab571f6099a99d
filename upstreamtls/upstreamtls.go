// Package upstreamtls turns a service's resolved upstream_tls settings
// (config.UpstreamTLS, from config.Config.UpstreamTLSFor) into the
// *tls.Config that the proxy's Transport and the health probes dial the
// service's endpoints with.
//
// It reads no files: config.Load read them into the settings, so a reload
// (a new Config) brings the files' new contents and everything built from
// one Config agrees on them.
package upstreamtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// ClientConfig returns the client TLS configuration for u: the CAs of
// ca_file (the system's roots when it is empty), server_name as the name
// to verify and send as SNI (when empty, the caller's dial host: net/http's
// Transport fills it in; see ForHost), the client certificate for mTLS
// when cert_file and key_file are given, and TLS 1.2 at least. It returns
// nil and no error for a nil u (plain HTTP). Each call returns a new
// Config the caller may modify.
func ClientConfig(u *config.UpstreamTLS) (*tls.Config, error) {
	if u == nil {
		return nil, nil
	}
	c := &tls.Config{
		ServerName:         u.ServerName,
		InsecureSkipVerify: u.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if u.CAFile != "" {
		if len(u.CAPEM) == 0 {
			return nil, fmt.Errorf("upstream_tls.ca_file %s: not read", u.CAFile)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(u.CAPEM) {
			return nil, fmt.Errorf("upstream_tls.ca_file %s: no PEM certificate", u.CAFile)
		}
		c.RootCAs = pool
	}
	if u.CertFile != "" || u.KeyFile != "" {
		if len(u.CertPEM) == 0 || len(u.KeyPEM) == 0 {
			return nil, errors.New("upstream_tls: cert_file and key_file must both be given and read")
		}
		cert, err := tls.X509KeyPair(u.CertPEM, u.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls: cert_file %s, key_file %s: %w", u.CertFile, u.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ForHost returns c itself when it names a server, else a copy that
// verifies host (an endpoint's host, without port), as the Transport does
// for the host it dials. Probes and any dialer of its own call it.
func ForHost(c *tls.Config, host string) *tls.Config {
	if c == nil || c.ServerName != "" {
		return c
	}
	c = c.Clone()
	c.ServerName = host
	return c
}

// Key identifies one service in one datacenter.
type Key struct{ Service, DC string }

// Set holds the client TLS configuration of every (service, DC) of one
// Config that has upstream_tls, built once when the Config is loaded.
// It is immutable and safe for concurrent use.
type Set struct {
	byKey map[Key]*tls.Config
}

// Build makes the Set of cfg. Settings shared by several DCs (the usual
// case: the service's block without override) are built once: the CA pool
// and the key pair are parsed once per distinct setting, not per DC. The
// error names the first (service, DC) that fails; config.Load has already
// checked the files, so it only fails on a Config not made by Load.
func Build(cfg *config.Config) (*Set, error) {
	s := &Set{byKey: map[Key]*tls.Config{}}
	built := map[*config.UpstreamTLS]*tls.Config{}
	for _, dc := range cfg.Datacenters {
		for _, name := range cfg.ServiceNames {
			u := cfg.UpstreamTLSFor(name, dc.Name)
			if u == nil {
				continue
			}
			c, ok := built[u]
			if !ok {
				var err error
				if c, err = ClientConfig(u); err != nil {
					return nil, fmt.Errorf("service %s in datacenter %s: %w", name, dc.Name, err)
				}
				built[u] = c
			}
			s.byKey[Key{name, dc.Name}] = c
		}
	}
	return s, nil
}

// For returns the client TLS configuration of service in dc, or nil for
// plain HTTP. The Config is shared: callers must not modify it (use
// ForHost or Clone).
func (s *Set) For(service, dc string) *tls.Config {
	if s == nil {
		return nil
	}
	return s.byKey[Key{service, dc}]
}

// FailClosed is the Set used when Build fails: every (service, DC) with
// upstream_tls gets a configuration that trusts no CA, so its requests fail
// the handshake instead of going out in clear text.
func FailClosed(cfg *config.Config) *Set {
	s := &Set{byKey: map[Key]*tls.Config{}}
	deny := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	for _, dc := range cfg.Datacenters {
		for _, name := range cfg.ServiceNames {
			if cfg.UpstreamTLSFor(name, dc.Name) != nil {
				s.byKey[Key{name, dc.Name}] = deny
			}
		}
	}
	return s
}
