package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Admin listener defaults.
const (
	DefaultAdminReadTimeout    = 10 * time.Second
	DefaultAdminWriteTimeout   = 30 * time.Second
	DefaultAdminIdleTimeout    = 60 * time.Second
	DefaultAdminMaxConnections = 256
)

// fillAdminDefaults completes the admin listener's limits.
func (c *Config) fillAdminDefaults() {
	a := &c.Admin
	if a.ReadTimeout == 0 {
		a.ReadTimeout = Duration(DefaultAdminReadTimeout)
	}
	if a.WriteTimeout == 0 {
		a.WriteTimeout = Duration(DefaultAdminWriteTimeout)
	}
	if a.IdleTimeout == 0 {
		a.IdleTimeout = Duration(DefaultAdminIdleTimeout)
	}
	if a.MaxConnections == 0 {
		a.MaxConnections = DefaultAdminMaxConnections
	}
}

func (v *validator) admin() {
	a := v.c.Admin
	for _, f := range []struct {
		path string
		d    Duration
	}{{"admin.read_timeout", a.ReadTimeout}, {"admin.write_timeout", a.WriteTimeout}, {"admin.idle_timeout", a.IdleTimeout}} {
		if f.d < 0 {
			v.errorf(f.path, "must not be negative")
		}
	}
	if a.MaxConnections < 0 {
		v.errorf("admin.max_connections", "must not be negative")
	}
	for i, h := range a.AllowedHosts {
		name := h
		if host, _, err := net.SplitHostPort(h); err == nil {
			name = host
		}
		name = strings.Trim(name, "[]")
		if name == "" || strings.ContainsAny(name, "/ \t") {
			v.errorf(fmt.Sprintf("admin.allowed_hosts[%d]", i), "%q is not a host name, an address or host:port", h)
		}
	}
}
