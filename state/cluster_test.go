package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/cluster"
)

func TestClusterDrainsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadClusterDrains(); err != nil || got != nil || s.HasClusterDrains() {
		t.Fatalf("empty store: %v %v", got, err)
	}
	at := time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)
	want := []cluster.Drain{
		{Key: cluster.DrainKey{DC: "east"}, Reason: "kernel", By: "alice", Mode: "soft", Deadline: at.Add(time.Hour), Origin: "a", At: at,
			Stamp: cluster.Stamp{Wall: at.UnixNano(), Logical: 2, Node: "a"}},
		{Key: cluster.DrainKey{DC: "west"}, By: "bob", Origin: "c", At: at, Stamp: cluster.Stamp{Wall: at.UnixNano(), Node: "c"}, Deleted: true},
	}
	if err := s.SaveClusterDrains(want); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dir)
	got, err := s2.LoadClusterDrains()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Key.DC != "east" || got[0].Reason != "kernel" || got[0].Stamp != want[0].Stamp ||
		!got[0].Deadline.Equal(want[0].Deadline) || !got[1].Deleted || got[1].Origin != "c" {
		t.Errorf("round trip: %+v", got)
	}
	if !s2.HasClusterDrains() {
		t.Error("HasClusterDrains false after a save")
	}
	// drains.json is a different file: a single instance's drains are not
	// mistaken for registers.
	if d, _, err := s2.LoadDrains(); err != nil || d != nil {
		t.Errorf("drains.json: %v %v", d, err)
	}
	if err := os.WriteFile(filepath.Join(dir, clusterDrainsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.LoadClusterDrains(); err == nil {
		t.Error("a torn file should be an error naming it")
	}
	var none *Store
	if err := none.SaveClusterDrains(want); err != nil {
		t.Error(err)
	}
}
