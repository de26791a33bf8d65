package sqlitebus

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// retentionChunk bounds the messages one retention transaction deletes, so
// it holds the write lock only briefly.
const retentionChunk = 5000

func (b *Bus) retentionLoop() {
	defer b.loops.Done()
	t := time.NewTicker(b.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			if _, err := b.ApplyRetention(b.ctx); err != nil && b.ctx.Err() == nil {
				b.metrics.errors.WithLabelValues("retention").Inc()
				b.log.Error("sqlitebus: retention", "err", err)
			}
		}
	}
}

// ApplyRetention deletes, in every topic, the messages that are older than
// Retention and that every consumer group of the topic has committed, and
// returns how many it deleted. The retention loop calls it every
// RetentionInterval.
//
// Which groups count: every group that ever subscribed to the topic, unless
// it is stale, that is, it has no subscription in this process and has not
// subscribed, committed or unsubscribed for GroupRetention (a plug-in switched off must
// not keep the file growing). A topic that no group ever subscribed to (the
// DLQ, when only `callstream dlq replay` reads it) keeps every message:
// nothing has consumed them.
func (b *Bus) ApplyRetention(ctx context.Context) (int64, error) {
	topics, err := b.allTopics(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, tp := range topics {
		for {
			var n int64
			err := b.w.doLazy(func(tx *txn) error {
				var err error
				n, err = tx.retain(tp, now()-b.cfg.Retention.Nanoseconds(), now()-b.cfg.GroupRetention.Nanoseconds())
				return err
			})
			if err != nil {
				return total, fmt.Errorf("sqlitebus: retention of %s: %w", tp.name, err)
			}
			total += n
			b.metrics.deleted.WithLabelValues(tp.name).Add(float64(n))
			if n < retentionChunk || ctx.Err() != nil {
				break
			}
		}
	}
	return total, ctx.Err()
}

// allTopics returns every topic of the file.
func (b *Bus) allTopics(ctx context.Context) ([]*topic, error) {
	rows, err := b.rdb.QueryContext(ctx, "SELECT id, name FROM sqlitebus_topics ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: list topics: %w", err)
	}
	defer rows.Close()
	var out []*topic
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("sqlitebus: list topics: %w", err)
		}
		out = append(out, b.cacheTopic(name, id))
	}
	return out, rows.Err()
}

// retain deletes up to retentionChunk messages of tp older than cutoff
// (Unix ns) and below every live group's committed offset; groups last
// seen before staleBefore and not subscribed here do not count.
func (t *txn) retain(tp *topic, cutoff, staleBefore int64) (int64, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT grp, committed, updated_at FROM sqlitebus_groups WHERE topic_id = ?", tp.id)
	if err != nil {
		return 0, err
	}
	var end int64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT next_offset FROM sqlitebus_topics WHERE id = ?", tp.id).Scan(&end); err != nil {
		rows.Close()
		return 0, err
	}
	groups, bound := 0, end
	for rows.Next() {
		var grp string
		var committed, updated int64
		if err := rows.Scan(&grp, &committed, &updated); err != nil {
			rows.Close()
			return 0, err
		}
		groups++
		if updated >= staleBefore || t.b.isActive(grp, tp.id) {
			bound = min(bound, committed)
		}
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if groups == 0 {
		return 0, nil
	}
	old, err := offsetAt(t.ctx, t.tx, tp, cutoff)
	if err != nil {
		return 0, err
	}
	var first sql.NullInt64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT min(off) FROM "+tp.table).Scan(&first); err != nil {
		return 0, err
	}
	upto := min(bound, old)
	if !first.Valid || first.Int64 >= upto {
		return 0, nil
	}
	upto = min(upto, first.Int64+retentionChunk)
	res, err := t.tx.ExecContext(t.ctx, "DELETE FROM "+tp.table+" WHERE off < ?", upto)
	if err != nil {
		return 0, err
	}
	t.trimmed = append(t.trimmed, trimmed{tp, upto})
	return res.RowsAffected()
}
