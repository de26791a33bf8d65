package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stateVersion is the version of the encoding of State.
const stateVersion = 1

// State is what the producer persists: a checkpoint per organization, the
// events topic's end offsets when it was saved and, in embedded mode only,
// the dedup memory itself (with Kafka, the memory is rebuilt from the
// events topic instead).
type State struct {
	Version int                    `json:"version"`
	SavedAt time.Time              `json:"saved_at"`
	Orgs    map[string]*Checkpoint `json:"orgs"`
	Offsets map[int]int64          `json:"offsets,omitempty"`
	Memory  []byte                 `json:"memory,omitempty"`
	// MemoryVersion is the encoding of Memory (memoryVersion); 0 is the
	// first one, whose digests were event ids.
	MemoryVersion int `json:"memory_version,omitempty"`
}

// StateStore loads and saves the producer's State.
type StateStore interface {
	// Load returns the saved state, or an empty State when none was saved.
	Load(ctx context.Context) (*State, error)
	// Save replaces the saved state; it returns once the state is durable.
	Save(ctx context.Context, s *State) error
}

func emptyState() *State {
	return &State{Version: stateVersion, Orgs: map[string]*Checkpoint{}}
}

func decodeState(data []byte, where string) (*State, error) {
	s := emptyState()
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("producer: decode state from %s: %w", where, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("producer: state in %s has version %d, want %d", where, s.Version, stateVersion)
	}
	if s.Orgs == nil {
		s.Orgs = map[string]*Checkpoint{}
	}
	for org, c := range s.Orgs {
		if c == nil || len(c.Rungs) == 0 || c.Rungs[0].Age != 0 {
			return nil, fmt.Errorf("producer: state in %s: checkpoint of org %q has no rung 0", where, org)
		}
		c.Org = org
	}
	return s, nil
}

// FileStore keeps the state in one local file, replaced atomically on
// every save: embedded mode.
type FileStore struct {
	path string
}

// NewFileStore returns a store writing path; its directory is created on
// the first save.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Load implements StateStore.
func (f *FileStore) Load(context.Context) (*State, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return emptyState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("producer: read state file: %w", err)
	}
	return decodeState(data, f.path)
}

// Save implements StateStore: write a temporary file, sync it, rename it
// over the old one, so a crash leaves either the old or the new state.
func (f *FileStore) Save(_ context.Context, s *State) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("producer: encode state: %w", err)
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("producer: create state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("producer: create state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("producer: write state file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("producer: sync state file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("producer: close state file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("producer: replace state file %s: %w", f.path, err)
	}
	return nil
}
