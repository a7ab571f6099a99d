package state

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

func TestDrainsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, scoped, err := s.LoadDrains(); err != nil || got != nil || scoped != nil {
		t.Fatalf("empty store: %v %v", got, err)
	}
	since := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	want := map[string]routing.Drain{"east": {Reason: "kernel", Mode: "soft", Deadline: since.Add(time.Hour), By: "ops", Since: since}}
	wantScoped := []routing.ScopedDrain{
		{DrainScope: routing.DrainScope{DC: "east", Service: "api"}, Drain: routing.Drain{Reason: "deploy", Mode: "hard", By: "ops", Since: since}},
		{DrainScope: routing.DrainScope{DC: "west", Service: "api", Endpoint: "10.0.0.1:80"}, Drain: routing.Drain{Reason: "disk", Mode: "soft", Deadline: since.Add(time.Hour), Since: since}},
		{DrainScope: routing.DrainScope{DC: "west", Endpoint: "10.0.0.2:80"}, Drain: routing.Drain{Reason: "nic", Mode: "hard", Since: since}},
	}
	if err := s.SaveDrains(want, wantScoped); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dir)
	got, gotScoped, err := s2.LoadDrains()
	if err != nil {
		t.Fatal(err)
	}
	if len(gotScoped) != len(wantScoped) {
		t.Fatalf("scoped round trip: %+v", gotScoped)
	}
	for i := range wantScoped {
		g, w := gotScoped[i], wantScoped[i]
		if g.DrainScope != w.DrainScope || g.Reason != w.Reason || g.Mode != w.Mode || g.By != w.By || !g.Since.Equal(w.Since) || !g.Deadline.Equal(w.Deadline) {
			t.Errorf("scoped[%d]: got %+v, want %+v", i, g, w)
		}
	}
	if g := got["east"]; g.Reason != "kernel" || g.Mode != "soft" || g.By != "ops" || !g.Since.Equal(since) || !g.Deadline.Equal(since.Add(time.Hour)) {
		t.Errorf("round trip: %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := s.SaveDrains(map[string]routing.Drain{}, nil); err != nil {
		t.Fatal(err)
	}
	if got, scoped, _ := s.LoadDrains(); len(got) != 0 || len(scoped) != 0 {
		t.Errorf("after undrain: %v %v", got, scoped)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, drainsFile), []byte("{not json"), 0o600)
	s, _ := Open(dir)
	if _, _, err := s.LoadDrains(); err == nil {
		t.Error("a corrupt drains file must not be silently ignored")
	}
}

// TestDrainFileVersions: a file written before scoped drains existed
// (version 1) still loads; a newer version or a scoped drain that names no
// service or endpoint is an error naming the file.
func TestDrainFileVersions(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		dcs        []string
		scoped     []string
		err        string
	}{
		{name: "version 1", file: `{"version": 1, "drains": {"east": {"reason": "kernel", "mode": "soft", "deadline": "2026-11-26T02:00:00Z", "by": "ops", "since": "2026-11-26T01:00:00Z"}}}`, dcs: []string{"east"}},
		{name: "version 2", file: `{"version": 2, "drains": {}, "scoped": [{"dc": "east", "service": "api", "reason": "deploy", "mode": "hard", "since": "2026-11-26T01:00:00Z"}, {"dc": "west", "endpoint": "10.0.0.1:80", "mode": "hard", "since": "2026-11-26T01:00:00Z"}]}`, scoped: []string{"east/api", "west/*/10.0.0.1:80"}},
		{name: "newer version", file: `{"version": 3, "drains": {}}`, err: "version 3 is newer"},
		{name: "scoped without scope", file: `{"version": 2, "scoped": [{"dc": "east", "mode": "hard"}]}`, err: "scoped[0]: want a dc with a service or an endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, drainsFile), []byte(tc.file), 0o600)
			s, _ := Open(dir)
			dcs, scoped, err := s.LoadDrains()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), drainsFile) {
					t.Fatalf("error %v, want %q naming the file", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotDCs, gotScoped []string
			for dc := range dcs {
				gotDCs = append(gotDCs, dc)
			}
			for _, sd := range scoped {
				gotScoped = append(gotScoped, sd.String())
			}
			if !slices.Equal(gotDCs, tc.dcs) || !slices.Equal(gotScoped, tc.scoped) {
				t.Errorf("loaded %v %v, want %v %v", gotDCs, gotScoped, tc.dcs, tc.scoped)
			}
			if d := dcs["east"]; tc.name == "version 1" && (d.Reason != "kernel" || d.Mode != "soft" || d.By != "ops") {
				t.Errorf("version 1 drain %+v", d)
			}
		})
	}
}

func TestKeyPersists(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	n := 0
	gen := func() ([]byte, error) { n++; return []byte{byte(n), 2, 3}, nil }
	k1, err := s.LoadOrCreateKey("affinity.key", gen)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := s.LoadOrCreateKey("affinity.key", gen)
	if string(k1) != string(k2) || n != 1 {
		t.Errorf("key regenerated: %v %v (%d)", k1, k2, n)
	}
	var none *Store
	if err := none.SaveDrains(nil, nil); err != nil {
		t.Error(err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
