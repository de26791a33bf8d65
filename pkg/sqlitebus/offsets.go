package sqlitebus

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// readChunk is how many records ReadRange reads per query.
const readChunk = 1000

// A topic this file does not have is read as an empty one: topics are
// created on first use, so "absent" and "empty" are the same to a reader.

// topicBounds returns the end offset of tp (the offset the next message
// gets) and its start (the first offset retention kept; the end when
// empty).
func (b *Bus) topicBounds(ctx context.Context, tp *topic) (end, start int64, err error) {
	var first sql.NullInt64
	err = b.rdb.QueryRowContext(ctx, "SELECT t.next_offset, (SELECT min(off) FROM "+tp.table+") FROM sqlitebus_topics t WHERE t.id = ?",
		tp.id).Scan(&end, &first)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlitebus: offsets of %s: %w", tp.name, err)
	}
	start = end
	if first.Valid {
		start = first.Int64
	}
	return end, start, nil
}

// EndOffsets returns the end offset of topic's only partition, 0: the
// offset the next message published to it will get.
func (b *Bus) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	tp, err := b.lookupTopic(ctx, topic)
	if err != nil || tp == nil {
		return map[int]int64{0: 0}, err
	}
	end, _, err := b.topicBounds(ctx, tp)
	if err != nil {
		return nil, err
	}
	return map[int]int64{0: end}, nil
}

// OffsetsAt returns, for partition 0 of topic, the first offset whose
// timestamp is at or after t, or the end offset when there is none.
// Timestamps never decrease along the log (see appendRows), so this is a
// binary search of point reads.
func (b *Bus) OffsetsAt(ctx context.Context, topic string, t time.Time) (map[int]int64, error) {
	tp, err := b.lookupTopic(ctx, topic)
	if err != nil || tp == nil {
		return map[int]int64{0: 0}, err
	}
	tx, err := b.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: offsets of %s at %s: %w", topic, t.Format(time.RFC3339Nano), err)
	}
	defer func() { _ = tx.Rollback() }()
	off, err := offsetAt(ctx, tx, tp, t.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: offsets of %s at %s: %w", topic, t.Format(time.RFC3339Nano), err)
	}
	return map[int]int64{0: off}, nil
}

// querier is what offsetAt reads through: a read or a write transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// offsetAt returns the first offset of tp with a timestamp >= ts, else the
// end offset.
func offsetAt(ctx context.Context, q querier, tp *topic, ts int64) (int64, error) {
	var end int64
	if err := q.QueryRowContext(ctx, "SELECT next_offset FROM sqlitebus_topics WHERE id = ?", tp.id).Scan(&end); err != nil {
		return 0, err
	}
	probe := "SELECT off, ts FROM " + tp.table + " WHERE off >= ? ORDER BY off LIMIT 1"
	// first existing record at or after off; ok false past the last.
	at := func(off int64) (o, t int64, ok bool, err error) {
		err = q.QueryRowContext(ctx, probe, off).Scan(&o, &t)
		if err == sql.ErrNoRows {
			return 0, 0, false, nil
		}
		return o, t, err == nil, err
	}
	lo, hi := int64(0), end
	for lo < hi {
		mid := lo + (hi-lo)/2
		o, t, ok, err := at(mid)
		if err != nil {
			return 0, err
		}
		switch {
		case !ok:
			hi = mid
		case t >= ts:
			hi = mid // the answer is at most o, and nothing lies in [mid, o)
		default:
			lo = o + 1
		}
	}
	if lo >= end {
		return end, nil
	}
	o, _, ok, err := at(lo)
	if err != nil {
		return 0, err
	}
	if !ok {
		return end, nil
	}
	return o, nil
}

// ReadRange calls fn with the payload of every message of topic from
// from[0] (missing, or below what retention kept: the start) up to the
// end offset seen when it is called, in offset order, then returns. An
// error from fn stops the read and is returned.
func (b *Bus) ReadRange(ctx context.Context, topic string, from map[int]int64, fn func(value []byte) error) error {
	tp, err := b.lookupTopic(ctx, topic)
	if err != nil || tp == nil {
		return err
	}
	end, _, err := b.topicBounds(ctx, tp)
	if err != nil {
		return err
	}
	next := max(from[0], 0)
	q := "SELECT off, payload FROM " + tp.table + " WHERE off >= ? AND off < ? ORDER BY off LIMIT ?"
	for next < end {
		n, err := b.readChunk(ctx, q, next, end, fn)
		if err != nil {
			return fmt.Errorf("sqlitebus: read %s from offset %d: %w", topic, next, err)
		}
		if n < 0 {
			return nil // nothing left below end
		}
		next = n
	}
	return nil
}

// readChunk reads up to readChunk records of [next, end) and returns the
// offset after the last one, or -1 if there was none.
func (b *Bus) readChunk(ctx context.Context, q string, next, end int64, fn func([]byte) error) (int64, error) {
	rows, err := b.rdb.QueryContext(ctx, q, next, end, readChunk)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	after := int64(-1)
	for rows.Next() {
		var off int64
		var payload []byte
		if err := rows.Scan(&off, &payload); err != nil {
			return 0, err
		}
		if err := fn(payload); err != nil {
			return 0, err
		}
		after = off + 1
	}
	return after, rows.Err()
}

// CommittedOffsets returns the committed offset of group on topic's
// partition 0 (the next offset it reads), or an empty map if the group
// never subscribed to it.
func (b *Bus) CommittedOffsets(ctx context.Context, topic, group string) (map[int]int64, error) {
	tp, err := b.lookupTopic(ctx, topic)
	if err != nil || tp == nil {
		return map[int]int64{}, err
	}
	var c int64
	err = b.rdb.QueryRowContext(ctx, "SELECT committed FROM sqlitebus_groups WHERE grp = ? AND topic_id = ?", group, tp.id).Scan(&c)
	if err == sql.ErrNoRows {
		return map[int]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: committed offset of group %s on %s: %w", group, topic, err)
	}
	return map[int]int64{0: c}, nil
}

// Lag returns how many messages of topic group has not committed yet: all
// that retention kept if the group never subscribed.
func (b *Bus) Lag(ctx context.Context, topic, group string) (int64, error) {
	tp, err := b.lookupTopic(ctx, topic)
	if err != nil || tp == nil {
		return 0, err
	}
	end, start, err := b.topicBounds(ctx, tp)
	if err != nil {
		return 0, err
	}
	c, err := b.CommittedOffsets(ctx, topic, group)
	if err != nil {
		return 0, err
	}
	next := start
	if o, ok := c[0]; ok && o > start {
		next = o
	}
	return max(end-next, 0), nil
}

// SetCommitted sets the committed offset of group on topic (partition 0
// only), to replay from there or to skip ahead: the group's next
// subscription starts at it. It refuses while the group has a
// subscription to topic in this process, whose commits would overwrite it.
func (b *Bus) SetCommitted(ctx context.Context, topic, group string, offsets map[int]int64) error {
	if group == "" {
		return fmt.Errorf("sqlitebus: set committed offset on %s: empty consumer group", topic)
	}
	off, ok := offsets[0]
	if !ok || len(offsets) != 1 || off < 0 {
		return fmt.Errorf("sqlitebus: set committed offset of group %s on %s: want one non-negative offset for partition 0, got %v", group, topic, offsets)
	}
	tp, err := b.ensureTopic(ctx, topic)
	if err != nil {
		return err
	}
	if b.isActive(group, tp.id) {
		return fmt.Errorf("sqlitebus: set committed offset of group %s on %s: the group is subscribed in this process", group, topic)
	}
	if err := b.w.do(func(tx *txn) error { return tx.commitGroup(tp, group, off) }); err != nil {
		return fmt.Errorf("sqlitebus: set committed offset of group %s on %s: %w", group, topic, err)
	}
	return nil
}
