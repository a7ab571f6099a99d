package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDNSSECKeyFile(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		want    []string
		wantErr string
	}{
		{"unset", "", nil, ""},
		{"one string", "  dnssec:\n    key_file: k1.key\n", []string{"/etc/coopr/k1.key"}, ""},
		{"list", "  dnssec:\n    key_file: [k1.key, /abs/k2.key]\n", []string{"/etc/coopr/k1.key", "/abs/k2.key"}, ""},
		{"duplicate", "  dnssec:\n    key_file: [k1.key, k1.key]\n", nil, "dns.dnssec.key_file[1]: \"k1.key\" is listed twice"},
		{"empty", "  dnssec:\n    key_file: \"\"\n", nil, "dns.dnssec.key_file: empty file name"},
		{"mapping", "  dnssec:\n    key_file: {a: b}\n", nil, "want a string or a list of strings"},
		{"unknown key", "  dnssec:\n    keyfile: k1.key\n", nil, "unknown field \"keyfile\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Load("/etc/coopr/config.yaml", []byte(minimal+tc.yaml))
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
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("key paths = %q, want %q", got, tc.want)
			}
			if cfg.DNS.DNSSEC.CacheSize != DefaultDNSSECCacheSize {
				t.Errorf("cache_size = %d, want the default %d", cfg.DNS.DNSSEC.CacheSize, DefaultDNSSECCacheSize)
			}
		})
	}
}
