package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// reloadYAML is a valid configuration with the TLS listener on; %s is the
// service's policy and %s the tls block.
const reloadYAML = `
listen: {http: "127.0.0.1:8080", https: "127.0.0.1:8443", dns: "", admin: ""}
datacenters:
  - name: east
    services:
      api: {endpoints: ["127.0.0.1:55054"]}
services:
  api:
    hostnames: [api.coopr.example.com]
    policy: %s
%s`

const reloadTLS = `tls:
  certificates:
    - {cert: /etc/coopr-gslb/cert.pem, key: /etc/coopr-gslb/key.pem}
  acme: {ca: "https://acme.example.com/directory", email: ops@coopr.example.com}
`

// testReloader writes the file, loads it as the current configuration and
// returns a reloader of it that records what it applies.
func testReloader(t *testing.T, yaml string) (r *reloader, path string, applied *[]*config.Config) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, yaml)
	cfg, _, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	applied = new([]*config.Config)
	r = newReloader(path, cfg, func(next *config.Config) { *applied = append(*applied, next) }, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	return r, path, applied
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadPrepareFailureKeepsConfig: an error of the prepare step (a
// certificate file that cannot be read) fails the reload exactly like a bad
// file: nothing is applied, the old configuration stays current, and the
// status and metrics say so.
func TestReloadPrepareFailureKeepsConfig(t *testing.T) {
	r, path, applied := testReloader(t, fmt.Sprintf(reloadYAML, "failover", reloadTLS))
	old := r.current
	var prepErr error
	var prepared []*config.Config
	if err := r.attach(func(current *config.Config) (func(*config.Config) error, error) {
		if current != old {
			t.Errorf("attach started with %p, not the current configuration %p", current, old)
		}
		return func(next *config.Config) error {
			prepared = append(prepared, next)
			return prepErr
		}, nil
	}); err != nil {
		t.Fatal(err)
	}

	writeFile(t, path, fmt.Sprintf(reloadYAML, "weighted", reloadTLS))
	prepErr = errors.New("proxy: tls.certificates[0].cert: open /etc/coopr-gslb/cert.pem: no such file or directory")
	if err := r.Reload(); !errors.Is(err, prepErr) {
		t.Fatalf("Reload: %v, want the prepare step's error", err)
	}
	if len(prepared) != 1 || prepared[0].Services["api"].Policy != "weighted" {
		t.Fatalf("prepare saw %v", prepared)
	}
	if len(*applied) != 0 || r.current != old {
		t.Fatalf("a failed prepare applied %d configurations", len(*applied))
	}
	if st := r.Last(); st.OK || st.Error != prepErr.Error() || st.Time.IsZero() {
		t.Errorf("status after a failed prepare: %+v", st)
	}
	if got := testutil.ToFloat64(r.success); got != 0 {
		t.Errorf("config_last_reload_successful %v, want 0", got)
	}
	if got := testutil.ToFloat64(r.total.WithLabelValues("failed")); got != 1 {
		t.Errorf("failed reloads %v, want 1", got)
	}

	// Once the step succeeds, the same file is applied.
	prepErr = nil
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(*applied) != 1 || r.current != (*applied)[0] || r.current.Services["api"].Policy != "weighted" {
		t.Fatalf("applied %v", *applied)
	}
	if st := r.Last(); !st.OK || st.Error != "" {
		t.Errorf("status after a good reload: %+v", st)
	}
	if got := testutil.ToFloat64(r.success); got != 1 {
		t.Errorf("config_last_reload_successful %v, want 1", got)
	}
}

// TestReloadAttachError: a start that fails installs no prepare step.
func TestReloadAttachError(t *testing.T) {
	r, _, _ := testReloader(t, fmt.Sprintf(reloadYAML, "failover", reloadTLS))
	bad := errors.New("listen.https: address in use")
	err := r.attach(func(*config.Config) (func(*config.Config) error, error) {
		return func(*config.Config) error { return nil }, bad
	})
	if !errors.Is(err, bad) || r.prepare != nil {
		t.Fatalf("attach: %v, prepare set %v", err, r.prepare != nil)
	}
}

// TestReloadTLSKeys: certificates and redirect_http reach the prepare step
// as the file says; the ACME client's keys, and TLS being turned off, are
// reported as needing a restart and kept as they run, reload after reload.
func TestReloadTLSKeys(t *testing.T) {
	for _, tc := range []struct {
		name         string
		yaml         string
		needsRestart []string
		check        func(t *testing.T, old, next *config.Config)
	}{
		{
			name: "certificates and redirect are live",
			yaml: fmt.Sprintf(reloadYAML, "failover", strings.NewReplacer("/etc/coopr-gslb/cert.pem", "/etc/coopr-gslb/new.pem", "tls:\n", "tls:\n  redirect_http: true\n").Replace(reloadTLS)),
			check: func(t *testing.T, _, next *config.Config) {
				if next.TLS.Certificates[0].Cert != "/etc/coopr-gslb/new.pem" || !next.TLS.RedirectHTTP {
					t.Errorf("tls given to prepare: %+v", next.TLS)
				}
			},
		},
		{
			name: "ACME client keys",
			yaml: fmt.Sprintf(reloadYAML, "failover", `tls:
  certificates:
    - {cert: /etc/coopr-gslb/cert.pem, key: /etc/coopr-gslb/key.pem}
  acme: {ca: "https://other.example.com/directory", email: sec@coopr.example.com, ca_root: /etc/root.pem, storage: /var/lib/acme, on_demand: true}
`),
			needsRestart: []string{"tls.acme.ca", "tls.acme.ca_root", "tls.acme.email", "tls.acme.storage", "tls.acme.on_demand"},
			check: func(t *testing.T, old, next *config.Config) {
				if *next.TLS.ACME != *old.TLS.ACME {
					t.Errorf("tls.acme given to prepare: %+v, want the running %+v", *next.TLS.ACME, *old.TLS.ACME)
				}
			},
		},
		{
			name:         "proxy server settings",
			yaml:         fmt.Sprintf(reloadYAML, "failover", reloadTLS+"proxy: {idle_timeout: 5s, read_header_timeout: 2s, max_header_bytes: 8192, shutdown_timeout: 1s}\n"),
			needsRestart: []string{"proxy.idle_timeout", "proxy.read_header_timeout", "proxy.max_header_bytes", "proxy.shutdown_timeout"},
			check: func(t *testing.T, old, next *config.Config) {
				if next.Proxy.IdleTimeout != old.Proxy.IdleTimeout || next.Proxy.MaxHeaderBytes != old.Proxy.MaxHeaderBytes {
					t.Errorf("proxy settings given to prepare: %+v, want the running ones", next.Proxy)
				}
			},
		},
		{
			name: "ACME turned off",
			yaml: fmt.Sprintf(reloadYAML, "failover", `tls:
  certificates:
    - {cert: /etc/coopr-gslb/cert.pem, key: /etc/coopr-gslb/key.pem}
`),
			needsRestart: []string{"tls.acme"},
			check: func(t *testing.T, old, next *config.Config) {
				if next.TLS.ACME != old.TLS.ACME {
					t.Errorf("tls.acme given to prepare: %+v", next.TLS.ACME)
				}
			},
		},
		{
			name:         "TLS turned off",
			yaml:         strings.Replace(fmt.Sprintf(reloadYAML, "weighted", ""), `https: "127.0.0.1:8443", `, "", 1),
			needsRestart: []string{"listen.https", "tls.acme"},
			check: func(t *testing.T, old, next *config.Config) {
				// The listener keeps serving its certificates until a restart.
				if next.Listen.HTTPS != old.Listen.HTTPS || len(next.TLS.Certificates) != 1 || next.TLS.ACME != old.TLS.ACME {
					t.Errorf("given to prepare: listen %+v, tls %+v", next.Listen, next.TLS)
				}
				if next.Services["api"].Policy != "weighted" {
					t.Error("the rest of the file was not applied")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, path, _ := testReloader(t, fmt.Sprintf(reloadYAML, "failover", reloadTLS))
			old := r.current
			var prepared *config.Config
			_ = r.attach(func(*config.Config) (func(*config.Config) error, error) {
				return func(next *config.Config) error { prepared = next; return nil }, nil
			})
			writeFile(t, path, tc.yaml)
			// Twice: until a restart, every reload says what still needs one.
			for range 2 {
				if err := r.Reload(); err != nil {
					t.Fatal(err)
				}
				if st := r.Last(); !slices.Equal(st.NeedsRestart, tc.needsRestart) {
					t.Errorf("needs restart %q, want %q", st.NeedsRestart, tc.needsRestart)
				}
				tc.check(t, old, prepared)
			}
		})
	}
}
