package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/coopr-gslb/coopr-gslb/cluster"
)

// clusterDrainsFile holds the replicated drain registers of a cluster
// member, tombstones included, apart from drains.json (a single instance's
// drains), so turning the cluster on or off never misreads either file.
const clusterDrainsFile = "cluster-drains.json"

// clusterDrainsDoc is the file format, versioned so it can change.
type clusterDrainsDoc struct {
	Version int             `json:"version"`
	Drains  []cluster.Drain `json:"drains"`
}

var _ cluster.DrainStore = (*Store)(nil)

// HasClusterDrains reports whether a cluster drain file was ever saved.
func (s *Store) HasClusterDrains() bool {
	if s == nil || s.dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(s.dir, clusterDrainsFile))
	return err == nil
}

// LoadClusterDrains returns the cluster drain registers saved last; none
// when nothing was saved. It implements cluster.DrainStore.
func (s *Store) LoadClusterDrains() ([]cluster.Drain, error) {
	if s == nil || s.dir == "" {
		return nil, nil
	}
	path := filepath.Join(s.dir, clusterDrainsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc clusterDrainsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Drains, nil
}

// SaveClusterDrains replaces the saved cluster drain registers, atomically.
// It implements cluster.DrainStore.
func (s *Store) SaveClusterDrains(drains []cluster.Drain) error {
	if s == nil || s.dir == "" {
		return nil
	}
	if drains == nil {
		drains = []cluster.Drain{}
	}
	data, err := json.MarshalIndent(clusterDrainsDoc{Version: 1, Drains: drains}, "", "  ")
	if err != nil {
		return err
	}
	return s.write(clusterDrainsFile, data, 0o600)
}
