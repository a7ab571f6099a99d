package config

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeKey(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseClusterKey(t *testing.T) {
	raw32 := []byte("0123456789abcdefghijklmnopqrs\xfe\xff\x00")
	raw16 := []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\xff")
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"raw 32", raw32, raw32},
		{"32 base64 characters are base64 text", []byte("0123456789abcdefghijklmnopqrstuv"), mustB64("0123456789abcdefghijklmnopqrstuv")},
		{"raw 16 ending in a newline byte", raw16[:15:15], nil},
		{"raw 16 binary", raw16, raw16},
		{"hex 16", []byte(hex.EncodeToString(raw16) + "\n"), raw16},
		{"hex 32 upper", []byte(strings.ToUpper(hex.EncodeToString(raw32))), raw32},
		{"base64 24", []byte(base64.StdEncoding.EncodeToString(raw32[:24]) + "\r\n"), raw32[:24]},
		{"base64 32", []byte(base64.StdEncoding.EncodeToString(raw32)), raw32},
		{"too short", []byte("short\n"), nil},
		{"17 bytes", []byte("0123456789abcdefg"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseClusterKey(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("want an error, got key %x", got)
				}
				return
			}
			if err != nil || string(got) != string(tc.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestClusterConfig(t *testing.T) {
	key := writeKey(t, []byte(hex.EncodeToString([]byte("0123456789abcdef"))+"\n"))
	bad := writeKey(t, []byte("nope\n"))
	ok := func(s string) string {
		return s + "cluster:\n  name: a\n  bind: 127.0.0.1:7946\n  peers: [127.0.0.1:7946, 127.0.0.1:7947]\n  secret_key_file: " + key + "\n"
	}
	t.Run("valid", func(t *testing.T) {
		cfg, _, err := Parse([]byte(ok(minimal) + "  quorum: 2\n"))
		if err != nil {
			t.Fatal(err)
		}
		cl := cfg.Cluster
		if cl.Name != "a" || cl.Bind != "127.0.0.1:7946" || len(cl.Peers) != 2 || cl.Quorum.Count != 2 || cl.Quorum.String() != "2" {
			t.Fatalf("got %+v", cl)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		cfg, _, err := Parse([]byte(minimal + "cluster: {}\n"))
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		if cfg.Cluster.Name != host || cfg.Cluster.Bind != DefaultClusterBind || !cfg.Cluster.Quorum.IsMajority() {
			t.Fatalf("got %+v", cfg.Cluster)
		}
	})
	t.Run("no block", func(t *testing.T) {
		cfg, _, err := Parse([]byte(minimal))
		if err != nil || cfg.Cluster != nil {
			t.Fatalf("got %+v, %v", cfg.Cluster, err)
		}
	})
	t.Run("source address reaches every check", func(t *testing.T) {
		cfg, _, err := Parse([]byte(strings.Replace(minimal, "  timeout: 500ms\n", "  timeout: 500ms\n  source_address: 127.0.0.2\n", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Datacenters[0].Services["api"].EffectiveCheck.SourceAddress; got != "127.0.0.2" {
			t.Fatalf("effective check source_address = %q", got)
		}
	})
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"peers need a key", minimal + "cluster:\n  peers: [127.0.0.1:7946]\n", "cluster.secret_key_file: required when cluster.peers is set"},
		{"bad key file", minimal + "cluster:\n  secret_key_file: " + bad + "\n", "config.yaml:31: cluster.secret_key_file: " + bad + ": a key must be 16, 24 or 32 bytes"},
		{"missing key file", minimal + "cluster:\n  secret_key_file: /nonexistent/key\n", "cluster.secret_key_file: open /nonexistent/key"},
		{"bad peer", ok(minimal) + "  advertise: 127.0.0.1:7946\n", ""},
		{"peer not host:port", strings.Replace(ok(minimal), "127.0.0.1:7947", "peer-b", 1), "config.yaml:33: cluster.peers[1]: \"peer-b\" is not host:port"},
		{"duplicate peer", strings.Replace(ok(minimal), "127.0.0.1:7947", "127.0.0.1:7946", 1), "cluster.peers[1]: \"127.0.0.1:7946\" is already cluster.peers[0]"},
		{"bad bind", strings.Replace(ok(minimal), "bind: 127.0.0.1:7946", "bind: gossip.local:7946", 1), "config.yaml:32: cluster.bind: host \"gossip.local\" must be an IP address"},
		{"bad advertise", ok(minimal) + "  advertise: 0.0.0.0:7946\n", "cluster.advertise: host \"0.0.0.0\" must be a reachable IP address"},
		{"bad quorum", ok(minimal) + "  quorum: most\n", "config.yaml:35: cluster.quorum: \"most\" is neither \"majority\" nor a count"},
		{"zero quorum", ok(minimal) + "  quorum: 0\n", "cluster.quorum: \"0\" is neither"},
		{"unknown cluster key", ok(minimal) + "  gossip: yes\n", "config.yaml:35: cluster.gossip: unknown field"},
		{"bad source address", strings.Replace(minimal, "  timeout: 500ms\n", "  timeout: 500ms\n  source_address: eth0\n", 1), "config.yaml:9: health.source_address: \"eth0\" is not an IP address"},
		{"source address per service", strings.Replace(minimal, "expect_body: \"OK\"}", "expect_body: \"OK\", source_address: 127.0.0.2}", 1), "services.api.check.source_address: source_address may only be set in the top-level health block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps, err := Parse([]byte(tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tc.want)
			}
			for _, p := range ps {
				if strings.Contains(p.String(), tc.want) {
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%v", tc.want, err)
		})
	}
}

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestExampleClusterBlock: the commented cluster block of
// config.example.yaml, uncommented, is valid and shows the defaults.
func TestExampleClusterBlock(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "# cluster:"):
			in = true
			line = strings.TrimPrefix(line, "# ")
		case in && strings.HasPrefix(line, "#   "):
			line = strings.TrimPrefix(line, "# ")
		default:
			in = false
		}
		out = append(out, line)
	}
	cfg, _, err := Parse([]byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	cl := cfg.Cluster
	if cl == nil || cl.Name != host || cl.Bind != DefaultClusterBind || !cl.Quorum.IsMajority() || len(cl.Peers) != 0 {
		t.Fatalf("example cluster block: %+v", cl)
	}
}
