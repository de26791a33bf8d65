package producer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/callstream/callstream/schemas"
)

// Dead letters: nothing the API sends is dropped. A record the producer
// cannot publish as an event goes to the DLQ topic (Deps.DLQTopic) through
// the same Publisher, with its raw bytes as the payload, the org as the
// record key and these metadata: schemas.DLQHandlerMetadata "producer",
// schemas.DLQReasonMetadata (what was wrong), schemas.DLQOrgMetadata,
// schemas.DLQTimeMetadata, and the producer's own keys below. Kinds, the
// reason label of callstream_producer_dead_lettered_total:
//
//   - unknown_status: a call_status no mapping knows (extend
//     unpod.status_map, then replay it with Producer.Replay);
//   - undecodable: not a call log at all (no creation_time, a member of
//     the wrong type);
//   - outside_window: a creation_time outside the window it was served
//     for (year 0000, 9999, 1970): publishing it would put an event where
//     no rung ever reads again, so it would be published anew after every
//     eviction;
//   - too_large: its event is over producer.max_message_bytes, or the bus
//     refused it as too large (schemas.ErrTooLarge).
//
// A raw record over producer.dlq_max_message_bytes is stored by reference
// to the API, where it still is: the DLQ record carries its first
// dlqExcerpt bytes, its full size and sha256, its org and call key, and
// the metric's reason gets the suffix "_by_reference".
//
// A record is dead-lettered once: the producer remembers the sha256 of org
// and raw bytes (8 bytes of it) per org until every rung has passed the
// window it was read in, seeing it again extending that, so the rescan
// ladder does not dead-letter it again at every rung. The marks are saved
// in the org's checkpoint (dead_letters), so a restart remembers them
// too; a crash between the DLQ's acknowledgement and the next save (within
// save_interval) can dead-letter a record once more. A window with dead
// letters is complete: they count as read.
const (
	// DLQKindMetadata is the kind above, without the by-reference suffix.
	DLQKindMetadata = schemas.DLQMetadataPrefix + "kind"
	// DLQCallKeyMetadata is the record's call_key, when it could be told.
	DLQCallKeyMetadata = schemas.DLQMetadataPrefix + "call_key"
	// DLQWindowMetadata is the window the record was read in,
	// "start/end" in RFC 3339.
	DLQWindowMetadata = schemas.DLQMetadataPrefix + "window"
	// DLQRawSizeMetadata and DLQRawSHA256Metadata are the raw record's
	// size in bytes and hex sha256, on every producer dead letter.
	DLQRawSizeMetadata   = schemas.DLQMetadataPrefix + "raw_size"
	DLQRawSHA256Metadata = schemas.DLQMetadataPrefix + "raw_sha256"
	// DLQStoredMetadata is "whole" when the payload is the raw record, or
	// "by_reference" when it is only its first bytes.
	DLQStoredMetadata = schemas.DLQMetadataPrefix + "stored"
)

// Dead-letter kinds.
const (
	kindUnknownStatus = "unknown_status"
	kindUndecodable   = "undecodable"
	kindOutsideWindow = "outside_window"
	kindTooLarge      = "too_large"
	byReference       = "_by_reference"
)

// dlqExcerpt is the most of a raw record that a by-reference dead letter
// carries.
const dlqExcerpt = 64 << 10

// deadLetter is one record on its way to the DLQ.
type deadLetter struct {
	raw     []byte
	kind    string
	reason  string
	callKey string // "" when the record could not be identified
	detail  string // distinguishes log lines within a kind: the unknown spelling
	mark    uint64
}

// markOf digests org and a raw record for the dead-letter marks.
func markOf(org string, raw []byte) uint64 {
	h := sha256.New()
	h.Write([]byte(org))
	h.Write([]byte{0})
	h.Write(raw)
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// maxDeadMarks bounds the marks of one org, and so its state record:
// 12 bytes each, 240 KB for the lot. Past it the oldest tenth is dropped
// (those may be dead-lettered once more) and a warning logged.
const maxDeadMarks = 20_000

// deadMarks remembers what was dead-lettered, per org: mark -> the Unix
// minute of the end of the latest window it was read in.
type deadMarks struct {
	mu   sync.Mutex
	orgs map[string]map[uint64]uint32
}

// seen reports whether mark was dead-lettered for org, and if so extends
// its life to minute.
func (d *deadMarks) seen(org string, mark uint64, minute uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.orgs[org][mark]
	if ok && minute > m {
		d.orgs[org][mark] = minute
	}
	return ok
}

// add remembers mark; it reports whether the oldest marks had to go.
func (d *deadMarks) add(org string, mark uint64, minute uint32) (trimmed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.orgs == nil {
		d.orgs = map[string]map[uint64]uint32{}
	}
	m := d.orgs[org]
	if m == nil {
		m = map[uint64]uint32{}
		d.orgs[org] = m
	}
	if len(m) >= maxDeadMarks {
		minutes := make([]uint32, 0, len(m))
		for _, v := range m {
			minutes = append(minutes, v)
		}
		slices.Sort(minutes)
		cut := minutes[len(minutes)/10]
		for k, v := range m {
			if v <= cut {
				delete(m, k)
			}
		}
		trimmed = true
	}
	m[mark] = max(m[mark], minute)
	return trimmed
}

// evict forgets org's marks of windows that ended before minute.
func (d *deadMarks) evict(org string, minute uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, v := range d.orgs[org] {
		if v < minute {
			delete(d.orgs[org], k)
		}
	}
}

// encode returns org's marks, 12 bytes each, for its checkpoint.
func (d *deadMarks) encode(org string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.orgs[org]
	if len(m) == 0 {
		return nil
	}
	out := make([]byte, 0, 12*len(m))
	for k, v := range m {
		out = binary.BigEndian.AppendUint64(out, k)
		out = binary.BigEndian.AppendUint32(out, v)
	}
	return out
}

// decode merges marks encode made.
func (d *deadMarks) decode(org string, b []byte) error {
	if len(b)%12 != 0 {
		return fmt.Errorf("producer: dead-letter marks of org %s: %d bytes, not a multiple of 12", org, len(b))
	}
	for ; len(b) > 0; b = b[12:] {
		d.add(org, binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:]))
	}
	return nil
}

// errDeadLetter marks a failure to put a record on the DLQ: like a failed
// publish, the window is not done and the organization is retried.
var errDeadLetter = errors.New("producer: dead-letter queue")

// deadLetter puts one record on the DLQ, whole or by reference, remembers
// it and counts it. It logs the first record of each kind (and unknown
// spelling) of each org; later ones are only counted.
func (p *Producer) deadLetter(org string, w Window, dl *deadLetter) error {
	sum := sha256.Sum256(dl.raw)
	md := message.Metadata{
		schemas.KeyMetadata:        org,
		schemas.DLQHandlerMetadata: schemas.HandlerProducer,
		schemas.DLQReasonMetadata:  dl.reason,
		schemas.DLQOrgMetadata:     org,
		schemas.DLQTimeMetadata:    p.now().UTC().Format(time.RFC3339Nano),
		DLQKindMetadata:            dl.kind,
		DLQWindowMetadata:          w.Start.UTC().Format(time.RFC3339Nano) + "/" + w.End.UTC().Format(time.RFC3339Nano),
		DLQRawSizeMetadata:         strconv.Itoa(len(dl.raw)),
		DLQRawSHA256Metadata:       hex.EncodeToString(sum[:]),
		DLQStoredMetadata:          "whole",
	}
	if dl.callKey != "" {
		md[DLQCallKeyMetadata] = dl.callKey
	}
	id := uuid.NewSHA1(eventNamespace, []byte("dlq\x00"+org+"\x00"+hex.EncodeToString(sum[:]))).String()
	msg := message.NewMessage(id, dl.raw)
	msg.Metadata = md
	label := dl.kind
	if messageSize(msg) > p.cfg.DLQMaxMessageBytes {
		msg = byRef(msg, p.cfg.DLQMaxMessageBytes)
		label += byReference
	}
	err := p.deps.Publisher.Publish(p.deps.DLQTopic, msg)
	if errors.Is(err, schemas.ErrTooLarge) && msg.Metadata[DLQStoredMetadata] == "whole" {
		// The DLQ topic's limit is lower than dlq_max_message_bytes says.
		msg, label = byRef(msg, p.cfg.DLQMaxMessageBytes), label+byReference
		err = p.deps.Publisher.Publish(p.deps.DLQTopic, msg)
	}
	if err != nil {
		return fmt.Errorf("%w: publish a %s record of org %s to %s: %v", errDeadLetter, dl.kind, org, p.deps.DLQTopic, err)
	}
	if p.dead.add(org, dl.mark, unixMinute(w.End)) {
		p.log.Warn("too many dead-lettered records remembered for one organization; the oldest were forgotten and may be dead-lettered again",
			"org", org, "limit", maxDeadMarks)
	}
	p.mu.Lock()
	p.dirty = true
	p.mu.Unlock()
	p.deadLettered.Add(1)
	p.m.deadLettered.WithLabelValues(org, label).Inc()
	if p.firstOfKind(org + "\x00" + dl.kind + "\x00" + dl.detail) {
		p.log.Warn("API record dead-lettered; further records of this kind are counted in callstream_producer_dead_lettered_total, not logged",
			"org", org, "kind", dl.kind, "reason", dl.reason, "stored", msg.Metadata[DLQStoredMetadata],
			"raw_bytes", len(dl.raw), "call_key", dl.callKey, "dlq", p.deps.DLQTopic, "raw", truncate(string(dl.raw), 300))
	}
	return nil
}

// maxLoggedKinds bounds the kinds remembered as logged: past it (an API
// sending a new status spelling in every record) nothing more is logged,
// and the metric still counts.
const maxLoggedKinds = 1000

// firstOfKind reports whether kind is seen for the first time.
func (p *Producer) firstOfKind(kind string) bool {
	p.loggedMu.Lock()
	defer p.loggedMu.Unlock()
	if p.logged[kind] || len(p.logged) >= maxLoggedKinds {
		return false
	}
	p.logged[kind] = true
	return true
}

// byRef replaces a dead letter's payload by its first bytes: the record is
// stored by reference to the API, where it still is.
func byRef(msg *message.Message, limit int) *message.Message {
	n := min(len(msg.Payload), dlqExcerpt, max(limit/2, 0))
	out := message.NewMessage(msg.UUID, msg.Payload[:n:n])
	out.Metadata = message.Metadata{}
	for k, v := range msg.Metadata {
		out.Metadata[k] = v
	}
	out.Metadata[DLQStoredMetadata] = "by_reference"
	return out
}

// messageSize is what a message weighs on the bus: payload, id and
// metadata (the record key among them). A bus adds framing, which
// max_message_bytes leaves room for.
func messageSize(msg *message.Message) int {
	n := len(msg.Payload) + len(msg.UUID)
	for k, v := range msg.Metadata {
		n += len(k) + len(v)
	}
	return n
}
