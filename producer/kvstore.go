package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// KV is a durable store of small values by key, read whole: in Kafka mode
// the compacted topic callstream.producer-state.v1 (kafkabus.KV).
type KV interface {
	// Load returns the latest value of every key.
	Load(ctx context.Context) (map[string][]byte, error)
	// Put saves entries durably before it returns.
	Put(ctx context.Context, entries map[string][]byte) error
}

// KVStore keeps checkpoints in a KV, one record per organization keyed by
// its handle, so the producer holds no local state and can move between
// machines.
type KVStore struct{ kv KV }

// NewKVStore returns a StateStore on kv.
func NewKVStore(kv KV) *KVStore { return &KVStore{kv: kv} }

// stateRecord is the value of one organization's record.
type stateRecord struct {
	Version    int           `json:"version"`
	SavedAt    time.Time     `json:"saved_at"`
	Checkpoint *Checkpoint   `json:"checkpoint"`
	Offsets    map[int]int64 `json:"offsets"`
}

// Load implements StateStore: the latest record of every organization.
func (s *KVStore) Load(ctx context.Context) (*State, error) {
	values, err := s.kv.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("producer: load state: %w", err)
	}
	st := emptyState()
	for org, v := range values {
		var rec stateRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, fmt.Errorf("producer: state record of org %q: %w", org, err)
		}
		if rec.Version != stateVersion || rec.Checkpoint == nil || len(rec.Checkpoint.Rungs) == 0 {
			return nil, fmt.Errorf("producer: state record of org %q: unsupported version %d or no checkpoint", org, rec.Version)
		}
		rec.Checkpoint.Org = org
		st.Orgs[org] = rec.Checkpoint
		// Every save writes the same offsets into every org's record; the
		// newest save's are the ones to keep.
		if st.SavedAt.IsZero() || rec.SavedAt.After(st.SavedAt) {
			st.Offsets, st.SavedAt = rec.Offsets, rec.SavedAt
		}
	}
	return st, nil
}

// Save implements StateStore: one record per organization, in one batch.
func (s *KVStore) Save(ctx context.Context, st *State) error {
	entries := make(map[string][]byte, len(st.Orgs))
	for org, cp := range st.Orgs {
		v, err := json.Marshal(stateRecord{Version: stateVersion, SavedAt: st.SavedAt, Checkpoint: cp, Offsets: st.Offsets})
		if err != nil {
			return fmt.Errorf("producer: encode state of org %s: %w", org, err)
		}
		entries[org] = v
	}
	if err := s.kv.Put(ctx, entries); err != nil {
		return fmt.Errorf("producer: save state: %w", err)
	}
	return nil
}
