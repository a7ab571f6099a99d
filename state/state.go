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

// drainsDoc is the file format, versioned so it can change.
type drainsDoc struct {
	Version int                      `json:"version"`
	Drains  map[string]routing.Drain `json:"drains"`
}

// LoadDrains returns the drains saved last; none when nothing was saved.
func (s *Store) LoadDrains() (map[string]routing.Drain, error) {
	if s == nil || s.dir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(s.dir, drainsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc drainsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(s.dir, drainsFile), err)
	}
	return doc.Drains, nil
}

// SaveDrains replaces the saved drains.
func (s *Store) SaveDrains(drains map[string]routing.Drain) error {
	if s == nil || s.dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(drainsDoc{Version: 1, Drains: drains}, "", "  ")
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
