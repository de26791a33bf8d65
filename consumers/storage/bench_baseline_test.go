package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstream/callstream/consumers"
)

// Writers the benchmarks measure beside HandleBatch, in the same run on the
// same events: what the database does without the upsert (the ceiling), and
// the PostgreSQL path this package used before COPY (for comparison).

// batchWriter writes one batch the way a variant does.
type batchWriter func(ctx context.Context, batch []consumers.Delivery) error

// plainTable is a table of call_logs' columns and indexes without the
// primary key. The plain baselines insert the rows HandleBatch writes (the
// latest event of each call in the batch); a call's later revision in
// another batch is one more row there, where the upsert updates the row.
const plainTable = "plain_calls"

func createPlainTable(t testing.TB, s *Store) {
	t.Helper()
	switch s.Dialect() {
	case DialectPostgres:
		execSQL(t, s, `CREATE TABLE `+plainTable+` (LIKE call_logs)`)
	default:
		// SQLite has no LIKE: a CREATE TABLE AS of no rows gets the columns.
		execSQL(t, s, `CREATE TABLE `+plainTable+` AS SELECT * FROM call_logs WHERE 0`)
	}
	execSQL(t, s, `CREATE INDEX `+plainTable+`_key ON `+plainTable+` (org, call_key)`)
	execSQL(t, s, `CREATE INDEX `+plainTable+`_org_creation_time ON `+plainTable+` (org, creation_time, call_type, call_status)`)
}

// pgColumnNames are the columns of call_logs in the order of columns.
var pgColumnNames = []string{"call_key", "event_id", "org", "revision", "call_id", "source_number",
	"destination_number", "call_type", "call_status", "creation_time", "start_time", "end_time",
	"call_duration_seconds", "end_reason", "observed_at", "raw"}

// copySource hands rows to pgx.CopyFrom. Values returns the same slice for
// every row: CopyFrom encodes a row before it asks for the next.
type copySource struct {
	rows []row
	next int
	vals [nColumns]any
}

func (c *copySource) Next() bool { c.next++; return c.next <= len(c.rows) }
func (c *copySource) Err() error { return nil }

func (c *copySource) Values() ([]any, error) {
	ev := c.rows[c.next-1].ev
	v := &c.vals
	v[0], v[1], v[2], v[3] = ev.CallKey, ev.EventID, ev.Org, int32(ev.Revision)
	v[4] = nil
	if ev.CallID != nil {
		v[4] = *ev.CallID
	}
	v[5], v[6], v[7], v[8] = ev.SourceNumber, ev.DestinationNumber, ev.CallType, ev.CallStatus
	v[9], v[10], v[11] = ev.CreationTime, timeOrNil(ev.StartTime), timeOrNil(ev.EndTime)
	v[12], v[13], v[14] = ev.CallDurationSeconds, ev.EndReason, ev.ObservedAt
	v[15] = json.RawMessage("null")
	if len(ev.Raw) > 0 {
		v[15] = ev.Raw
	}
	return v[:], nil
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

// pgxCopyUpsert is HandleBatch's path with the staging table filled by
// pgx.CopyFrom instead of this package's encoder.
func pgxCopyUpsert(t testing.TB, s *Store) batchWriter {
	pool := s.db.(*postgresDB).pool
	return func(ctx context.Context, batch []consumers.Delivery) error {
		rows := latestPerKey(batch)
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", pgStageTable}, pgColumnNames, &copySource{rows: rows}); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, pgUpsertStaged)
			return err
		})
	}
}

// pgPlainCopy is plain pgx.CopyFrom into the plain table, in one
// transaction per batch.
func pgPlainCopy(t testing.TB, s *Store) batchWriter {
	createPlainTable(t, s)
	pool := s.db.(*postgresDB).pool
	return func(ctx context.Context, batch []consumers.Delivery) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{plainTable}, pgColumnNames, &copySource{rows: latestPerKey(batch)})
			return err
		})
	}
}

// pgUnnestUpsert is the path before COPY: the whole batch in one INSERT ...
// SELECT FROM unnest of one array parameter per column, with the same
// upsert clause.
func pgUnnestUpsert(t testing.TB, s *Store) batchWriter {
	pool := s.db.(*postgresDB).pool
	q := `INSERT INTO call_logs (` + columns + `)
SELECT k, e, o, r, ci, sn, dn, ct, cs, crt, st, et, d, er, oa, raw::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::int8[],
	$14::text[], $15::timestamptz[], $16::text[])
	AS u(k, e, o, r, ci, sn, dn, ct, cs, crt, st, et, d, er, oa, raw)` +
		fmt.Sprintf(upsertClause, `COLLATE "C"`, `COLLATE "C"`)
	return func(ctx context.Context, batch []consumers.Delivery) error {
		rows := latestPerKey(batch)
		n := len(rows)
		key, eventID, org := make([]string, n), make([]string, n), make([]string, n)
		revision, callID := make([]int32, n), make([]*string, n)
		src, dst, callType, status := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		creation, start, end := make([]time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		duration, endReason, observed, raw := make([]int64, n), make([]string, n), make([]time.Time, n), make([]string, n)
		for i, r := range rows {
			ev := r.ev
			key[i], eventID[i], org[i] = ev.CallKey, ev.EventID, ev.Org
			revision[i], callID[i] = int32(ev.Revision), ev.CallID
			src[i], dst[i], callType[i], status[i] = ev.SourceNumber, ev.DestinationNumber, ev.CallType, ev.CallStatus
			creation[i], start[i], end[i] = ev.CreationTime, ev.StartTime, ev.EndTime
			duration[i], endReason[i], observed[i], raw[i] = ev.CallDurationSeconds, ev.EndReason, ev.ObservedAt, rawJSON(ev)
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, q, key, eventID, org, revision, callID, src, dst, callType, status,
				creation, start, end, duration, endReason, observed, raw)
			return err
		})
	}
}

// sqlitePlainInsert is plain prepared INSERTs into the plain table,
// perStatement rows each, in one transaction per batch.
func sqlitePlainInsert(t testing.TB, s *Store, perStatement int) batchWriter {
	createPlainTable(t, s)
	db := sqliteOf(t, s.db.(*sqliteDB))
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", nColumns), ",") + ")"
	stmt := func(n int) string {
		return "INSERT INTO " + plainTable + " (" + columns + ") VALUES " + strings.TrimSuffix(strings.Repeat(tuple+",", n), ",")
	}
	full, err := db.Prepare(stmt(perStatement))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	one, err := db.Prepare(stmt(1))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return func(ctx context.Context, batch []consumers.Delivery) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		txFull, txOne := tx.StmtContext(ctx, full), tx.StmtContext(ctx, one)
		var args sqliteArgs
		rows := latestPerKey(batch)
		for len(rows) > 0 {
			st, n := txFull, perStatement
			if len(rows) < n {
				st, n = txOne, 1
			}
			if _, err := st.ExecContext(ctx, args.of(rows[:n])...); err != nil {
				return err
			}
			rows = rows[n:]
		}
		return tx.Commit()
	}
}
