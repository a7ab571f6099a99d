package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/dnssec"
)

// writeDNSSECKey writes a key for zone to path.
func writeDNSSECKey(t *testing.T, path, zone string) {
	t.Helper()
	k, err := dnssec.GenerateKey(zone)
	if err != nil {
		t.Fatal(err)
	}
	if err := dnssec.WriteKeyFile(path, k, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestDNSSECKeyFile(t *testing.T) {
	dir := t.TempDir()
	writeDNSSECKey(t, filepath.Join(dir, "k1.key"), "coopr.example.com.")
	writeDNSSECKey(t, filepath.Join(dir, "k2.key"), "coopr.example.com.")
	writeDNSSECKey(t, filepath.Join(dir, "other.key"), "other.example.")
	abs2 := filepath.ToSlash(filepath.Join(dir, "k2.key"))
	cases := []struct {
		name    string
		yaml    string
		want    []string
		wantErr string
	}{
		{"unset", "", nil, ""},
		{"one string", "  dnssec:\n    key_file: k1.key\n", []string{dir + "/k1.key"}, ""},
		{"list", "  dnssec:\n    key_file: [k1.key, " + abs2 + "]\n", []string{dir + "/k1.key", abs2}, ""},
		{"missing", "  dnssec:\n    key_file: [k1.key, nothere.key]\n", nil, "dns.dnssec.key_file[1]: open "},
		{"another zone's key", "  dnssec:\n    key_file: other.key\n", nil, "dns.dnssec.key_file: other.key is a key for other.example., not for the zone coopr.example.com"},
		{"duplicate", "  dnssec:\n    key_file: [k1.key, k1.key]\n", nil, "dns.dnssec.key_file[1]: \"k1.key\" is listed twice"},
		{"empty", "  dnssec:\n    key_file: \"\"\n", nil, "dns.dnssec.key_file: empty file name"},
		{"mapping", "  dnssec:\n    key_file: {a: b}\n", nil, "want a string or a list of strings"},
		{"unknown key", "  dnssec:\n    keyfile: k1.key\n", nil, "unknown field \"keyfile\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Load(filepath.Join(dir, "config.yaml"), []byte(minimal+tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.DNSSECKeyPaths()
			for i := range got {
				got[i] = filepath.ToSlash(got[i])
			}
			for i := range tc.want {
				tc.want[i] = filepath.ToSlash(tc.want[i])
			}
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("key paths = %q, want %q", got, tc.want)
			}
			if cfg.DNS.DNSSEC.CacheSize != DefaultDNSSECCacheSize {
				t.Errorf("cache_size = %d, want the default %d", cfg.DNS.DNSSEC.CacheSize, DefaultDNSSECCacheSize)
			}
		})
	}
}
