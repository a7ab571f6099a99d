package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/internal/testpki"
)

// tlsConfig renders a two-DC config whose api service has svcTLS as its
// upstream_tls and whose west DC overrides it with dcTLS ("" for none).
func tlsConfig(svcTLS, dcTLS string) string {
	var b strings.Builder
	b.WriteString("datacenters:\n  - name: east\n    services:\n      api:\n        endpoints: [\"127.0.0.1:55054\"]\n")
	b.WriteString("  - name: west\n    services:\n      api:\n        endpoints: [\"127.0.0.1:55074\"]\n")
	if dcTLS != "" {
		b.WriteString("        upstream_tls: " + dcTLS + "\n")
	}
	b.WriteString("services:\n  api:\n    hostnames: [\"api.coopr.example.com\"]\n")
	if svcTLS != "" {
		b.WriteString("    upstream_tls: " + svcTLS + "\n")
	}
	b.WriteString("dns:\n  zone: coopr.example.com\n")
	return b.String()
}

func TestUpstreamTLSResolvesPerDC(t *testing.T) {
	ca := testpki.NewCA(t, "svc CA")
	other := testpki.NewCA(t, "west CA")
	client := ca.Client(t, "coopr-gslb")
	westClient := other.Client(t, "coopr-gslb-west")
	caPEM, _ := os.ReadFile(ca.CAFile)
	otherPEM, _ := os.ReadFile(other.CAFile)

	tests := []struct {
		name, svc, dc string
		east, west    *UpstreamTLS // without the PEM bytes
		westCA        []byte
	}{
		{name: "none"},
		{
			name: "service only",
			svc:  fmt.Sprintf("{ca_file: %q, server_name: backend.internal}", ca.CAFile),
			east: &UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal"},
			west: &UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal"}, westCA: caPEM,
		},
		{
			name: "DC overrides the CA, keeps the name and client certificate",
			svc:  fmt.Sprintf("{ca_file: %q, server_name: backend.internal, cert_file: %q, key_file: %q}", ca.CAFile, client.CertFile, client.KeyFile),
			dc:   fmt.Sprintf("{ca_file: %q}", other.CAFile),
			east: &UpstreamTLS{CAFile: ca.CAFile, ServerName: "backend.internal", CertFile: client.CertFile, KeyFile: client.KeyFile},
			west: &UpstreamTLS{CAFile: other.CAFile, ServerName: "backend.internal", CertFile: client.CertFile, KeyFile: client.KeyFile}, westCA: otherPEM,
		},
		{
			name: "DC's client certificate replaces the pair",
			svc:  fmt.Sprintf("{cert_file: %q, key_file: %q}", client.CertFile, client.KeyFile),
			dc:   fmt.Sprintf("{cert_file: %q, key_file: %q}", westClient.CertFile, westClient.KeyFile),
			east: &UpstreamTLS{CertFile: client.CertFile, KeyFile: client.KeyFile},
			west: &UpstreamTLS{CertFile: westClient.CertFile, KeyFile: westClient.KeyFile},
		},
		{
			name: "DC only",
			dc:   fmt.Sprintf("{ca_file: %q}", other.CAFile),
			west: &UpstreamTLS{CAFile: other.CAFile}, westCA: otherPEM,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(tlsConfig(tt.svc, tt.dc)))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				dc   string
				want *UpstreamTLS
			}{{"east", tt.east}, {"west", tt.west}} {
				got := cfg.UpstreamTLSFor("api", c.dc)
				if (got == nil) != (c.want == nil) {
					t.Fatalf("%s: got %+v, want %+v", c.dc, got, c.want)
				}
				if got == nil {
					continue
				}
				if got.CAFile != c.want.CAFile || got.ServerName != c.want.ServerName || got.CertFile != c.want.CertFile || got.KeyFile != c.want.KeyFile {
					t.Errorf("%s: got %+v, want %+v", c.dc, got, c.want)
				}
				if (got.CertFile != "") != (len(got.CertPEM) > 0 && len(got.KeyPEM) > 0) {
					t.Errorf("%s: client certificate files not read: %d/%d bytes", c.dc, len(got.CertPEM), len(got.KeyPEM))
				}
				if c.dc == "west" && !bytes.Equal(got.CAPEM, tt.westCA) {
					t.Errorf("west: CA bytes are not %s's", got.CAFile)
				}
			}
			if cfg.UpstreamTLSFor("api", "nowhere") != nil || cfg.UpstreamTLSFor("nothing", "east") != nil {
				t.Error("UpstreamTLSFor of an unknown DC or service is not nil")
			}
		})
	}
}

func TestUpstreamTLSValidation(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	client := ca.Client(t, "coopr-gslb")
	other := ca.Client(t, "other")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name, svc, dc string
		want          string // FILE:LINE: path: message fragment
	}{
		{name: "missing CA file", svc: fmt.Sprintf("{ca_file: %q}", missing),
			want: "config.yaml:13: services.api.upstream_tls.ca_file: cannot read " + missing + ": no such file or directory"},
		{name: "CA file without PEM", svc: fmt.Sprintf("{ca_file: %q}", garbage),
			want: "config.yaml:13: services.api.upstream_tls.ca_file: " + garbage + " holds no PEM certificate"},
		{name: "cert without key", svc: fmt.Sprintf("{cert_file: %q}", client.CertFile),
			want: "services.api.upstream_tls.key_file: cert_file is set but key_file is not"},
		{name: "key without cert", dc: fmt.Sprintf("{key_file: %q}", client.KeyFile),
			want: "config.yaml:10: datacenters[1].services.api.upstream_tls.cert_file: key_file is set but cert_file is not"},
		{name: "key of another certificate", svc: fmt.Sprintf("{cert_file: %q, key_file: %q}", client.CertFile, other.KeyFile),
			want: "services.api.upstream_tls.cert_file: cert_file " + client.CertFile + " and key_file " + other.KeyFile + " are not a certificate and its key"},
		{name: "unreadable key", dc: fmt.Sprintf("{cert_file: %q, key_file: %q}", client.CertFile, missing),
			want: "datacenters[1].services.api.upstream_tls.key_file: cannot read"},
		{name: "unknown key", svc: "{ca: x}", want: `services.api.upstream_tls.ca: unknown field "ca"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tlsConfig(tt.svc, tt.dc)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestUpstreamTLSReloadRereads: every Load reads the files again, so a
// renewed CA is what the next configuration carries.
func TestUpstreamTLSReloadRereads(t *testing.T) {
	a, b := testpki.NewCA(t, "a"), testpki.NewCA(t, "b")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	data := []byte(tlsConfig(fmt.Sprintf("{ca_file: %q}", caFile), ""))
	for _, ca := range []*testpki.CA{a, b} {
		pem, _ := os.ReadFile(ca.CAFile)
		if err := os.WriteFile(caFile, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.UpstreamTLSFor("api", "east").CAPEM; !bytes.Equal(got, pem) {
			t.Fatalf("CA bytes after rewriting the file are not the new CA's")
		}
	}
}

func TestAdminListenerDefaultsAndValidation(t *testing.T) {
	cfg, _, err := Parse([]byte(tlsConfig("", "")))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Admin
	if a.ReadTimeout.D() != DefaultAdminReadTimeout || a.WriteTimeout.D() != DefaultAdminWriteTimeout || a.IdleTimeout.D() != DefaultAdminIdleTimeout || a.MaxConnections != DefaultAdminMaxConnections {
		t.Errorf("admin listener defaults: %+v", a)
	}
	for _, tt := range []struct{ extra, want string }{
		{"admin: {idle_timeout: -1s}", "admin.idle_timeout: must not be negative"},
		{"admin: {max_connections: -1}", "admin.max_connections: must not be negative"},
		{"admin: {allowed_hosts: [\"a b\"]}", "admin.allowed_hosts[0]:"},
	} {
		_, _, err := Parse([]byte(tlsConfig("", "") + tt.extra + "\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.extra, err, tt.want)
		}
	}
}
