package sqlitebus

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

// Bounds of a topic's tail cache.
const (
	tailRecords = 32768
	tailBytes   = 32 << 20
)

// record is one stored message as subscriptions deliver it. It is shared
// (by the tail cache, by every group, by redeliveries) and never modified.
type record struct {
	off     int64
	uuid    string
	md      map[string]string // stored metadata, the key and the timestamp: all but the position
	payload []byte
	size    int
}

// newRecord builds a record from what is stored; it takes md over.
func newRecord(off int64, ts string, id string, key sql.NullString, md map[string]string, payload []byte) *record {
	if md == nil {
		md = make(map[string]string, 2)
	}
	if key.Valid {
		md[schemas.KeyMetadata] = key.String
	}
	md[schemas.TimestampMetadata] = ts
	r := &record{off: off, uuid: id, md: md, payload: payload, size: len(payload) + len(id)}
	for k, v := range md {
		r.size += len(k) + len(v)
	}
	return r
}

// formatTS is how TimestampMetadata shows a stored timestamp.
func formatTS(ts int64) string { return time.Unix(0, ts).UTC().Format(time.RFC3339Nano) }

// decodeMetadata reads the stored metadata. A record whose metadata cannot
// be read is still delivered, with the error under
// schemas.UnmarshalErrorMetadata, so the handler (or the poison queue)
// decides what it is worth instead of the bus dropping or blocking on it.
func decodeMetadata(off int64, b []byte) (map[string]string, bool) {
	if len(b) == 0 {
		return nil, true
	}
	var md map[string]string
	if err := json.Unmarshal(b, &md); err != nil {
		return map[string]string{schemas.UnmarshalErrorMetadata: fmt.Sprintf("sqlitebus: metadata of offset %d: %v", off, err)}, false
	}
	return md, true
}

// message builds a new watermill message of r, at its position on topic.
func (r *record) message(topic string) *message.Message {
	msg := message.NewMessage(r.uuid, r.payload)
	msg.Metadata = make(message.Metadata, len(r.md)+3)
	maps.Copy(msg.Metadata, r.md)
	schemas.SetPosition(msg.Metadata, schemas.Position{Topic: topic, Partition: 0, Offset: r.off})
	return msg
}

// cacheAppend adds records this Bus just committed to the topic's tail
// cache, from which subscriptions near the end read without a query or a
// decode. The cache holds consecutive offsets only: if another process
// appended in between, it starts again at recs.
func (t *topic) cacheAppend(recs []*record) {
	if len(recs) == 0 {
		return
	}
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	if len(t.tail) == 0 || t.tailFrom+int64(len(t.tail)) != recs[0].off {
		clear(t.tail)
		t.tail, t.tailFrom, t.tailSize = t.tail[:0], recs[0].off, 0
	}
	t.tail = append(t.tail, recs...)
	for _, r := range recs {
		t.tailSize += r.size
	}
	drop := 0
	for drop < len(t.tail) && (len(t.tail)-drop > tailRecords || t.tailSize > tailBytes) {
		t.tailSize -= t.tail[drop].size
		drop++
	}
	clear(t.tail[:drop])
	t.tail = t.tail[drop:]
	t.tailFrom += int64(drop)
}

// cacheTrim drops cached records below offset upto (deleted by
// retention), so no subscription reads them from the cache.
func (t *topic) cacheTrim(upto int64) {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	drop := int(min(max(upto-t.tailFrom, 0), int64(len(t.tail))))
	for _, r := range t.tail[:drop] {
		t.tailSize -= r.size
	}
	clear(t.tail[:drop])
	t.tail = t.tail[drop:]
	t.tailFrom += int64(drop)
}

// cacheRead returns up to n cached records from offset from on; none if
// from is not in the cache.
func (t *topic) cacheRead(from int64, n int) []*record {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	i := from - t.tailFrom
	if i < 0 || i >= int64(len(t.tail)) {
		return nil
	}
	end := min(int64(len(t.tail)), i+int64(n))
	return append([]*record(nil), t.tail[i:end]...)
}
