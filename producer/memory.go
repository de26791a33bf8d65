package producer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// memKey is the digest of org and call key: 16 bytes whatever the length of
// either, so that a remembered call costs the same for every id format.
type memKey [16]byte

// memEntry is what the gate remembers of a call: 16 bytes.
type memEntry struct {
	hash     uint64 // first 8 bytes of the latest published content hash
	revision uint32 // latest published revision
	minute   uint32 // creation time in Unix minutes, for eviction
}

func keyOf[S ~string | ~[]byte](org, callKey S) memKey {
	b := make([]byte, 0, 64)
	b = append(b, org...)
	b = append(b, 0)
	b = append(b, callKey...)
	sum := sha256.Sum256(b)
	var k memKey
	copy(k[:], sum[:16])
	return k
}

// hashPrefix shortens a hex content hash to what the memory stores: its
// first 8 bytes (a false "same" needs a 64-bit collision within one call).
// The event id cannot stand in for it: it depends on the revision too.
func hashPrefix(contentHash string) uint64 {
	var b [8]byte
	hex.Decode(b[:], []byte(contentHash[:min(16, len(contentHash))])) // a short or bad hash leaves zeros
	return binary.BigEndian.Uint64(b[:])
}

func unixMinute(t time.Time) uint32 {
	m := t.Unix() / 60
	if m < 0 {
		return 0
	}
	return uint32(m)
}

// Memory remembers call key -> latest content for the lookback horizon:
// the dedup gate. It is safe for concurrent use.
type Memory struct {
	mu sync.Mutex
	m  map[memKey]memEntry
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{m: make(map[memKey]memEntry)} }

// Decision is the gate's verdict on one record.
type Decision struct {
	Publish  bool // false: the same content was published before
	Revision int  // revision to publish: 1 for a new call, previous+1 for a change
}

// Check decides what to do with a record whose identity is (org, callKey,
// contentHash), without remembering anything: remember only what the
// broker acknowledged, with Commit. The gate compares contents, not event
// ids: a call whose content goes back to an earlier version is a change
// from the latest one.
func (m *Memory) Check(org, callKey, contentHash string) Decision {
	return m.check(keyOf(org, callKey), hashPrefix(contentHash))
}

func (m *Memory) check(k memKey, hash uint64) Decision {
	m.mu.Lock()
	e, ok := m.m[k]
	m.mu.Unlock()
	switch {
	case !ok:
		return Decision{Publish: true, Revision: 1}
	case e.hash == hash:
		return Decision{Revision: int(e.revision)}
	default:
		return Decision{Publish: true, Revision: int(e.revision) + 1}
	}
}

// Commit remembers that revision of the call was published with that
// content. A lower revision than the one remembered is ignored, so
// replaying the topic in any order leaves the latest revision.
func (m *Memory) Commit(org, callKey, contentHash string, revision int, created time.Time) {
	m.commit(keyOf(org, callKey), memEntry{hash: hashPrefix(contentHash), revision: uint32(revision), minute: unixMinute(created)})
}

// commit reports whether k was new to the memory: a call published (or
// read back) for the first time within the horizon, which the audit counts.
func (m *Memory) commit(k memKey, e memEntry) bool {
	m.mu.Lock()
	old, ok := m.m[k]
	if !ok || e.revision >= old.revision {
		m.m[k] = e
	}
	m.mu.Unlock()
	return !ok
}

// Len returns the number of remembered calls.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}

// Evict forgets calls created before t and returns how many it forgot.
func (m *Memory) Evict(t time.Time) int {
	limit := unixMinute(t)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, e := range m.m {
		if e.minute < limit {
			delete(m.m, k)
			n++
		}
	}
	return n
}

const entrySize = 16 + 8 + 4 + 4

// memoryVersion is the meaning of an encoded memory's 8-byte digests:
// 2 for content-hash prefixes. The first encoding (the state's
// memory_version absent) held event-id prefixes, which no longer compare
// with anything.
const memoryVersion = 2

// MarshalBinary encodes the memory (32 bytes a call), for the state file of
// embedded mode.
func (m *Memory) MarshalBinary() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]byte, 0, 8+entrySize*len(m.m))
	out = binary.BigEndian.AppendUint64(out, uint64(len(m.m)))
	for k, e := range m.m {
		out = append(out, k[:]...)
		out = binary.BigEndian.AppendUint64(out, e.hash)
		out = binary.BigEndian.AppendUint32(out, e.revision)
		out = binary.BigEndian.AppendUint32(out, e.minute)
	}
	return out, nil
}

// UnmarshalBinary merges an encoding made by MarshalBinary into m.
func (m *Memory) UnmarshalBinary(b []byte) error {
	if len(b) < 8 {
		return errors.New("producer: memory encoding shorter than its header")
	}
	n := binary.BigEndian.Uint64(b)
	b = b[8:]
	if uint64(len(b)) != n*entrySize {
		return fmt.Errorf("producer: memory encoding holds %d bytes for %d entries, want %d", len(b), n, n*entrySize)
	}
	for ; len(b) > 0; b = b[entrySize:] {
		var k memKey
		copy(k[:], b)
		m.commit(k, memEntry{
			hash:     binary.BigEndian.Uint64(b[16:]),
			revision: binary.BigEndian.Uint32(b[24:]),
			minute:   binary.BigEndian.Uint32(b[28:]),
		})
	}
	return nil
}
