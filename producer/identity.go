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
	var d digest
	d.init()
	d.add(org)
	d.add(r.SourceNumber)
	d.add(r.DestinationNumber)
	d.add(r.CallType)
	d.addTimeValue(r.CreationTime)
	sum := d.sum()
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

// content is what the content hash digests: every normalised field of a
// call, as a record gives them and as an event on the topic carries them,
// so that a restore recomputes the hash from the event's value alone.
type content struct {
	org, callKey, id, source, dest, callType, status string
	creation                                         time.Time
	start, end                                       *time.Time
	duration                                         int64
	endReason                                        string
}

func recordContent(org, callKey string, r *unpod.Record) content {
	return content{
		org: org, callKey: callKey, id: r.ID, source: r.SourceNumber, dest: r.DestinationNumber,
		callType: r.CallType, status: r.CallStatus, creation: r.CreationTime, start: r.StartTime, end: r.EndTime,
		duration: r.DurationSeconds, endReason: r.EndReason,
	}
}

func (c *content) identity() Identity {
	var d digest
	d.init()
	d.add(c.org)
	d.add(c.callKey)
	d.add(c.id)
	d.add(c.source)
	d.add(c.dest)
	d.add(c.callType)
	d.add(c.status)
	d.addTimeValue(c.creation)
	d.addTime(c.start)
	d.addTime(c.end)
	d.addInt(c.duration)
	d.add(c.endReason)
	sum := d.sum()
	return Identity{CallKey: c.callKey, ContentHash: hex.EncodeToString(sum[:16]), hash: binary.BigEndian.Uint64(sum[:8])}
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

// digest hashes a sequence of fields, each length-prefixed so that no two
// different sequences share an encoding. The fields are the same as text:
// times as RFC 3339 in UTC with nanoseconds, integers in decimal.
type digest struct {
	buf     []byte
	scratch [64]byte
	arr     [256]byte
}

func (d *digest) init() { d.buf = d.arr[:0] }

func (d *digest) addTimeValue(t time.Time) {
	d.addBytes(t.UTC().AppendFormat(d.scratch[:0], time.RFC3339Nano))
}

func (d *digest) addInt(n int64) { d.addBytes(strconv.AppendInt(d.scratch[:0], n, 10)) }

func (d *digest) addBytes(b []byte) {
	d.buf = binary.AppendUvarint(d.buf, uint64(len(b)))
	d.buf = append(d.buf, b...)
}

func (d *digest) add(s string) {
	d.buf = binary.AppendUvarint(d.buf, uint64(len(s)))
	d.buf = append(d.buf, s...)
}

func (d *digest) addTime(t *time.Time) {
	if t == nil {
		d.buf = append(d.buf, 0) // null and "" must differ
		return
	}
	d.buf = append(d.buf, 1)
	d.addTimeValue(*t)
}

func (d *digest) sum() [32]byte { return sha256.Sum256(d.buf) }
