package instance

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
	r = newReloader(path, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), []applyStep{
		{"record", func(next *config.Config) { *applied = append(*applied, next) }},
	})
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
	if !errors.Is(err, bad) || r.frontDoors != nil {
		t.Fatalf("attach: %v, prepare set %v", err, r.frontDoors != nil)
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
				if st := r.Last(); !slices.Equal(slices.Sorted(slices.Values(st.NeedsRestart)), slices.Sorted(slices.Values(tc.needsRestart))) {
					t.Errorf("needs restart %q, want %q", st.NeedsRestart, tc.needsRestart)
				}
				tc.check(t, old, prepared)
			}
		})
	}
}

// restartYAML sets every restart-only key from vals (key -> YAML value).
const restartYAML = `
listen: {http: "{listen.http}", https: "{listen.https}", dns: "{listen.dns}", admin: "{listen.admin}"}
datacenters:
  - name: east
    services:
      api: {endpoints: ["127.0.0.1:55054"], addresses: ["192.0.2.10"]}
services:
  api:
    hostnames: [api.coopr.example.com]
dns: {zone: coopr.example.com., udp_sockets: {dns.udp_sockets}}
admin: {state_dir: "{admin.state_dir}", token_file: "{admin.token_file}", read_requires_token: {admin.read_requires_token},
  allowed_hosts: ["{admin.allowed_hosts}"], read_timeout: {admin.read_timeout}, write_timeout: {admin.write_timeout},
  idle_timeout: {admin.idle_timeout}, max_connections: {admin.max_connections}}
proxy: {affinity_key_file: "{proxy.affinity_key_file}", idle_timeout: {proxy.idle_timeout}, read_header_timeout: {proxy.read_header_timeout},
  max_header_bytes: {proxy.max_header_bytes}, shutdown_timeout: {proxy.shutdown_timeout},
  max_response_header_bytes: {proxy.max_response_header_bytes}}
tls:
  certificates:
    - {cert: /etc/coopr-gslb/cert.pem, key: /etc/coopr-gslb/key.pem}
  acme: {email: "{tls.acme.email}", ca: "{tls.acme.ca}", ca_root: "{tls.acme.ca_root}", storage: "{tls.acme.storage}", on_demand: {tls.acme.on_demand}}
`

// TestReloadEveryRestartKeyTwice changes every key tagged reload:"restart"
// twice and sees each listed in needs_restart after both reloads, with the
// running value kept in the configuration in effect.
func TestReloadEveryRestartKeyTwice(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, "secret-0123456789abcdef0123456789abcdef\n")
		return p
	}
	// Three values per key: as started, first change, second change.
	values := map[string][3]string{
		"listen.http":                     {"127.0.0.1:18080", "127.0.0.1:18081", "127.0.0.1:18082"},
		"listen.https":                    {"127.0.0.1:18443", "127.0.0.1:18444", "127.0.0.1:18445"},
		"listen.dns":                      {"127.0.0.1:18053", "127.0.0.1:18054", "127.0.0.1:18055"},
		"listen.admin":                    {"127.0.0.1:19090", "127.0.0.1:19091", "127.0.0.1:19092"},
		"dns.udp_sockets":                 {"1", "2", "3"},
		"admin.state_dir":                 {filepath.Join(dir, "s0"), filepath.Join(dir, "s1"), filepath.Join(dir, "s2")},
		"admin.token_file":                {file("t0"), file("t1"), file("t2")},
		"admin.read_requires_token":       {"false", "true", "true"},
		"admin.allowed_hosts":             {"a.example.com", "b.example.com", "c.example.com"},
		"admin.read_timeout":              {"10s", "11s", "12s"},
		"admin.write_timeout":             {"30s", "31s", "32s"},
		"admin.idle_timeout":              {"60s", "61s", "62s"},
		"admin.max_connections":           {"256", "257", "258"},
		"proxy.affinity_key_file":         {file("k0"), file("k1"), file("k2")},
		"proxy.idle_timeout":              {"90s", "91s", "92s"},
		"proxy.read_header_timeout":       {"10s", "11s", "12s"},
		"proxy.max_header_bytes":          {"65536", "65537", "65538"},
		"proxy.shutdown_timeout":          {"15s", "16s", "17s"},
		"proxy.max_response_header_bytes": {"1048576", "1048577", "1048578"},
		"tls.acme.email":                  {"a@coopr.example.com", "b@coopr.example.com", "c@coopr.example.com"},
		"tls.acme.ca":                     {"https://a.example.com/dir", "https://b.example.com/dir", "https://c.example.com/dir"},
		"tls.acme.ca_root":                {file("r0"), file("r1"), file("r2")},
		"tls.acme.storage":                {filepath.Join(dir, "a0"), filepath.Join(dir, "a1"), filepath.Join(dir, "a2")},
		"tls.acme.on_demand":              {"false", "true", "true"},
	}
	// The tags are the list: a key tagged later must be added here.
	all := RestartOnlyKeys()
	for _, k := range all {
		if _, ok := values[k]; !ok {
			t.Errorf("restart-only key %s has no test values", k)
		}
	}
	for _, k := range []string{"admin.state_dir", "dns.udp_sockets", "proxy.affinity_key_file", "admin.read_requires_token"} {
		if !slices.Contains(all, k) {
			t.Errorf("%s is not restart-only", k)
		}
	}
	render := func(i int) string {
		y := restartYAML
		for k, v := range values {
			y = strings.ReplaceAll(y, "{"+k+"}", v[i])
		}
		return y
	}
	r, path, applied := testReloader(t, render(0))
	started := r.current
	for i := 1; i <= 2; i++ {
		writeFile(t, path, render(i))
		if err := r.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if got := r.Last().NeedsRestart; !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(all))) {
			t.Errorf("reload %d: needs_restart %q, want every restart-only key %q", i, got, all)
		}
		cur := (*applied)[len(*applied)-1]
		if cur.Admin.StateDir != started.Admin.StateDir || cur.DNS.UDPSockets != started.DNS.UDPSockets ||
			cur.Proxy.AffinityKeyFile != started.Proxy.AffinityKeyFile || *cur.Admin.ReadRequiresToken != *started.Admin.ReadRequiresToken ||
			cur.Listen != started.Listen || *cur.TLS.ACME != *started.TLS.ACME {
			t.Errorf("reload %d applied new values of restart-only keys", i)
		}
	}
	// Back to the running values: nothing needs a restart any more.
	writeFile(t, path, render(0))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := r.Last().NeedsRestart; len(got) != 0 {
		t.Errorf("needs_restart %q after going back to the running values", got)
	}
}
