package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

func TestDrainsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadDrains(); err != nil || got != nil {
		t.Fatalf("empty store: %v %v", got, err)
	}
	since := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	want := map[string]routing.Drain{"east": {Reason: "kernel", Mode: "soft", Deadline: since.Add(time.Hour), By: "ops", Since: since}}
	if err := s.SaveDrains(want); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dir)
	got, err := s2.LoadDrains()
	if err != nil {
		t.Fatal(err)
	}
	if g := got["east"]; g.Reason != "kernel" || g.Mode != "soft" || g.By != "ops" || !g.Since.Equal(since) || !g.Deadline.Equal(since.Add(time.Hour)) {
		t.Errorf("round trip: %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := s.SaveDrains(map[string]routing.Drain{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LoadDrains(); len(got) != 0 {
		t.Errorf("after undrain: %v", got)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, drainsFile), []byte("{not json"), 0o600)
	s, _ := Open(dir)
	if _, err := s.LoadDrains(); err == nil {
		t.Error("a corrupt drains file must not be silently ignored")
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
	if err := none.SaveDrains(nil); err != nil {
		t.Error(err)
	}
}
