package producer

import (
	"crypto/sha1" //nolint:gosec // UUIDv5 is defined with SHA-1
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/callstream/callstream/pkg/unpod"
)

// EventNamespace is the fixed UUID namespace of event ids. Changing it
// changes every event id ever produced: never do that within a major
// version of the event.
const EventNamespace = "6f1c3e2a-5b7d-4c1e-9a3f-2d8e4b6a7c90"

// eventNamespace is EventNamespace parsed once.
var eventNamespace = uuid.MustParse(EventNamespace)

// Identity is what the dedup gate knows about one record. The event id
// depends on the revision too, which only the gate decides: see EventID.
type Identity struct {
	CallKey     string // the API id, or "k_" + a digest of the immutable fields
	ContentHash string // hex digest of every normalised field
	hash        uint64 // the content hash's first 8 bytes, what the gate remembers
}

// Identify computes a record's identity as DESIGN.md section 3 defines it.
func Identify(org string, r *unpod.Record) Identity {
	key := CallKey(org, r)
	c := recordContent(org, key, r)
	return c.identity()
}

// CallKey returns the API's id when present; otherwise a digest of the
// fields that do not change as a call's record evolves: org, source,
// destination, call type and creation time (UTC, nanoseconds).
func CallKey(org string, r *unpod.Record) string {
	if r.ID != "" {
		return r.ID
	}
	var arr [256]byte
	b := appendText(arr[:0], org)
	b = appendText(b, r.SourceNumber)
	b = appendText(b, r.DestinationNumber)
	b = appendText(b, r.CallType)
	b = appendTimeText(b, r.CreationTime)
	sum := sha256.Sum256(b)
	return "k_" + hex.EncodeToString(sum[:16])
}

// ContentHash digests every normalised field of r, so that any change an
// event consumer can see makes a new revision, while a change of spelling
// only (no-answer for missed) or of fields callstream does not model does
// not. The raw payload is carried but not hashed.
func ContentHash(org, callKey string, r *unpod.Record) string {
	c := recordContent(org, callKey, r)
	return c.identity().ContentHash
}

// fields is what the content hash digests: every normalised field of a
// call, as a record gives them (content, strings) and as the restore scans
// them from an event's value (byte slices of it, without copying), so that
// a restore recomputes the hash from the event's value alone.
type fields[S ~string | ~[]byte] struct {
	org, callKey, id, source, dest, callType, status S
	creation                                         time.Time
	start, end                                       *time.Time
	duration                                         int64
	endReason                                        S
}

// content is the fields of a record.
type content = fields[string]

func recordContent(org, callKey string, r *unpod.Record) content {
	return content{
		org: org, callKey: callKey, id: r.ID, source: r.SourceNumber, dest: r.DestinationNumber,
		callType: r.CallType, status: r.CallStatus, creation: r.CreationTime, start: r.StartTime, end: r.EndTime,
		duration: r.DurationSeconds, endReason: r.EndReason,
	}
}

// sum is the digest of the fields. Each is length-prefixed, so that no two
// different sequences share an encoding, and taken as text: times as
// RFC 3339 in UTC with nanoseconds, integers in decimal, a null time
// differing from every time. The buffer is a local array handed along by
// value: a pointer handed to generic code escapes, which would cost an
// allocation per event in a restore.
func (c *fields[S]) sum() [32]byte {
	var arr [512]byte
	b := arr[:0]
	b = appendText(b, c.org)
	b = appendText(b, c.callKey)
	b = appendText(b, c.id)
	b = appendText(b, c.source)
	b = appendText(b, c.dest)
	b = appendText(b, c.callType)
	b = appendText(b, c.status)
	b = appendTimeText(b, c.creation)
	b = appendOptionalTime(b, c.start)
	b = appendOptionalTime(b, c.end)
	var scratch [24]byte
	b = appendText(b, strconv.AppendInt(scratch[:0], c.duration, 10))
	b = appendText(b, c.endReason)
	return sha256.Sum256(b)
}

// appendText appends s length-prefixed.
func appendText[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTimeText appends t as RFC 3339 text in UTC, length-prefixed.
func appendTimeText(b []byte, t time.Time) []byte {
	var scratch [64]byte
	return appendText(b, t.UTC().AppendFormat(scratch[:0], time.RFC3339Nano))
}

// appendOptionalTime appends 0 for nil (null and "" must differ), else 1
// and t.
func appendOptionalTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, 0)
	}
	return appendTimeText(append(b, 1), *t)
}

// hash is the first 8 bytes of the content hash: what the gate remembers.
func (c *fields[S]) hash() uint64 {
	sum := c.sum()
	return binary.BigEndian.Uint64(sum[:8])
}

func (c *fields[S]) identity() Identity {
	sum := c.sum()
	return Identity{CallKey: string(c.callKey), ContentHash: hex.EncodeToString(sum[:16]), hash: binary.BigEndian.Uint64(sum[:8])}
}

// EventID is the UUIDv5 of org, call key, revision and content hash
// (DESIGN.md section 3): the same revision of the same content read twice
// gets the same id, so replays are idempotent downstream, and every
// revision gets its own id, even one whose content goes back to an earlier
// revision's (A, B, A gives three ids). It equals
// uuid.NewSHA1(EventNamespace, org + "\x00" + callKey + "\x00" +
// decimal revision + "\x00" + contentHash), computed without allocating.
func EventID(org, callKey string, revision int, contentHash string) uuid.UUID {
	var arr [256]byte
	b := append(arr[:0], eventNamespace[:]...)
	b = append(b, org...)
	b = append(b, 0)
	b = append(b, callKey...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(revision), 10)
	b = append(b, 0)
	b = append(b, contentHash...)
	sum := sha1.Sum(b)
	var id uuid.UUID
	copy(id[:], sum[:16])
	id[6] = (id[6] & 0x0f) | 0x50 // version 5
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id
}
