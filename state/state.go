// Package state keeps what an operator did (drains) and what must survive a
// restart (the affinity key) in admin.state_dir, written atomically so that a
// crash mid-write never leaves a torn file.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

const drainsFile = "drains.json"

// Store reads and writes the state directory. The zero value (no directory)
// keeps nothing and reports no error. Its methods are safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open returns a Store over dir, creating it if needed. An empty dir gives a
// Store that persists nothing.
func Open(dir string) (*Store, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("admin.state_dir: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// drainsDoc is the file format, versioned so it can change. Version 1 had
// only the DC drains; version 2 adds the drains of a service in a DC and of
// an endpoint. Both read the same: a version 1 file has no scoped drains,
// and a version 1 binary ignores them.
type drainsDoc struct {
	Version int                      `json:"version"`
	Drains  map[string]routing.Drain `json:"drains"`
	Scoped  []routing.ScopedDrain    `json:"scoped,omitempty"`
}

// drainsVersion is the version SaveDrains writes.
const drainsVersion = 2

// LoadDrains returns the drains saved last, those of whole DCs by name and
// the scoped ones (of a service in a DC, of an endpoint); none when nothing
// was saved.
func (s *Store) LoadDrains() (map[string]routing.Drain, []routing.ScopedDrain, error) {
	if s == nil || s.dir == "" {
		return nil, nil, nil
	}
	path := filepath.Join(s.dir, drainsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var doc drainsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Version > drainsVersion {
		return nil, nil, fmt.Errorf("%s: version %d is newer than this coopr-gslb knows (%d)", path, doc.Version, drainsVersion)
	}
	for i, sd := range doc.Scoped {
		if sd.DC == "" || sd.IsDC() {
			return nil, nil, fmt.Errorf("%s: scoped[%d]: want a dc with a service or an endpoint", path, i)
		}
	}
	return doc.Drains, doc.Scoped, nil
}

// SaveDrains replaces the saved drains.
func (s *Store) SaveDrains(drains map[string]routing.Drain, scoped []routing.ScopedDrain) error {
	if s == nil || s.dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(drainsDoc{Version: drainsVersion, Drains: drains, Scoped: scoped}, "", "  ")
	if err != nil {
		return err
	}
	return s.write(drainsFile, data, 0o600)
}

// LoadOrCreateKey returns the secret stored under name, creating it with
// generate the first time. Without a directory it returns a fresh secret.
func (s *Store) LoadOrCreateKey(name string, generate func() ([]byte, error)) ([]byte, error) {
	if s == nil || s.dir == "" {
		return generate()
	}
	s.mu.Lock()
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	s.mu.Unlock()
	if err == nil && len(data) > 0 {
		return data, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := generate()
	if err != nil {
		return nil, err
	}
	return key, s.write(name, key, 0o600)
}

// write replaces name atomically: a temp file in the same directory, fsync,
// rename, then fsync of the directory so the rename itself is durable.
func (s *Store) write(name string, data []byte, perm os.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp, err := os.CreateTemp(s.dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, name)); err != nil {
		return err
	}
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
