package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A batch reaches PostgreSQL as COPY into a temporary staging table, then
// one INSERT ... SELECT from it with the upsert rule. COPY is the cheapest
// way in for many rows (binary, streamed, no statement per row and no
// parameter limit) but cannot upsert; the staging table gives the upsert a
// relation to read. Being temporary, it is private to the connection and
// writes no WAL; ON COMMIT DELETE ROWS empties it at every commit, and a
// rolled-back batch leaves nothing in it either.

// pgStageTable is the staging table, in the connection's temporary schema.
// It has call_logs' columns and types but no constraint, so COPY never
// refuses a row the upsert would take; the upsert checks them.
const pgStageTable = "call_logs_stage"

const pgCreateStage = `CREATE TEMPORARY TABLE IF NOT EXISTS ` + pgStageTable + ` (
	call_key text, event_id text, org text, revision integer, call_id text,
	source_number text, destination_number text, call_type text, call_status text,
	creation_time timestamptz, start_time timestamptz, end_time timestamptz,
	call_duration_seconds bigint, end_reason text, observed_at timestamptz, raw jsonb
) ON COMMIT DELETE ROWS`

// pgUpsertStaged moves the staged rows into call_logs. The rows were copied
// in (org, call_key) order, at most one per call (see latestPerKey), and a
// scan of the staging table, emptied at every commit, returns them in that
// order, so concurrent batches lock rows in one order. An ORDER BY to
// guarantee it cost about 8% more server CPU per event; should the order
// ever differ, PostgreSQL detects the deadlock (40P01), which is transient,
// and the batch is retried. COLLATE "C" compares event ids byte by byte,
// like Go and SQLite.
var pgUpsertStaged = `INSERT INTO call_logs (` + columns + `)
SELECT ` + columns + ` FROM pg_temp.` + pgStageTable +
	fmt.Sprintf(upsertClause, `COLLATE "C"`, `COLLATE "C"`)

// pgUpsertOne upserts one row, for writing a refused batch row by row.
var pgUpsertOne = `INSERT INTO call_logs (` + columns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb)` +
	fmt.Sprintf(upsertClause, `COLLATE "C"`, `COLLATE "C"`)

// pgCopyStage fills the staging table from a stream appendCopyRows wrote.
var pgCopyStage = `COPY pg_temp.` + pgStageTable + ` (` + columns + `) FROM STDIN (FORMAT binary)`

// migrationLock is the pg_advisory_xact_lock key that serialises migrations
// of consumers starting together (hashtext of this text and the schema).
const migrationLock = "callstream.storage.migrate"

type postgresDB struct {
	pool *pgxpool.Pool
	// bufs holds *[]byte COPY buffers, reused from batch to batch.
	bufs sync.Pool
}

func openPostgres(ctx context.Context, t target, cfg Config) (*postgresDB, error) {
	pc, err := pgxpool.ParseConfig(t.conn)
	if err != nil {
		// pgx's parse errors mask the password already; say which DSN
		// anyway. A DSN that does not parse will not parse on a retry.
		return nil, backoff.Permanent(fmt.Errorf("storage: PostgreSQL DSN %s: %w", t.redacted, err))
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = int32(cfg.MaxConns)
	}
	// Every connection, first or replacing one lost in an outage, gets its
	// own staging table before it is used.
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, pgCreateStage); err != nil {
			return fmt.Errorf("create staging table: %w", err)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("storage: connect to PostgreSQL %s: %w", t.redacted, err)
	}
	p := &postgresDB{pool: pool, bufs: sync.Pool{New: func() any { return new([]byte) }}}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage: connect to PostgreSQL %s: %w", t.redacted, err)
	}
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage: migrate PostgreSQL %s: %w", t.redacted, err)
	}
	return p, nil
}

// migrate applies the pending migrations in one transaction, under an
// advisory lock so that consumers starting together apply them once.
func (p *postgresDB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(DialectPostgres)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1 || current_schema()))`, migrationLock); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer NOT NULL PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		for _, m := range ms {
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			if done {
				continue
			}
			// No arguments: the simple protocol runs every statement of the file.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %d_%s: %w", m.version, m.name, err)
			}
		}
		return nil
	})
}

func checkRevisions(rows []row) error {
	for _, r := range rows {
		if r.ev.Revision > 1<<31-1 || r.ev.Revision < -1<<31 {
			return errRevisionRange
		}
	}
	return nil
}

func (p *postgresDB) writeBatch(ctx context.Context, rows []row) (int64, error) {
	if err := checkRevisions(rows); err != nil {
		return 0, err
	}
	var applied int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		buf := p.bufs.Get().(*[]byte)
		*buf = appendCopyRows((*buf)[:0], rows)
		_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(*buf), pgCopyStage)
		if cap(*buf) <= maxPooledBuffer {
			p.bufs.Put(buf)
		}
		if err != nil {
			return fmt.Errorf("copy into the staging table: %w", err)
		}
		tag, err := tx.Exec(ctx, pgUpsertStaged)
		if err != nil {
			return fmt.Errorf("upsert from the staging table: %w", err)
		}
		applied = tag.RowsAffected()
		return nil
	})
	return applied, err
}

// maxPooledBuffer is the largest COPY buffer kept for the next batch; a
// batch of unusually large records gets a buffer of its own.
const maxPooledBuffer = 16 << 20

// errRevisionRange is a revision the integer column cannot hold.
var errRevisionRange = errors.New("revision out of the range of a PostgreSQL integer")

func (p *postgresDB) writeEach(ctx context.Context, rows []row) ([]error, int64, error) {
	errs := make([]error, len(rows))
	var applied int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for i, r := range rows {
			if err := checkRevisions(rows[i : i+1]); err != nil {
				errs[i] = err
				continue
			}
			ev := r.ev
			args := []any{ev.CallKey, ev.EventID, ev.Org, int32(ev.Revision), ev.CallID,
				ev.SourceNumber, ev.DestinationNumber, ev.CallType, ev.CallStatus,
				ev.CreationTime, ev.StartTime, ev.EndTime, ev.CallDurationSeconds, ev.EndReason, ev.ObservedAt, rawJSON(ev)}
			// A nested transaction is a savepoint.
			err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				tag, err := sp.Exec(ctx, pgUpsertOne, args...)
				applied += tag.RowsAffected()
				return err
			})
			if err != nil && !p.rejectsRow(err) {
				return err
			}
			errs[i] = err
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return errs, applied, nil
}

// rejectsRow: SQLSTATE class 22 (data exception: bad JSON, a NUL or an
// invalid UTF-8 sequence in text (22021), a character the database encoding
// lacks or \u0000 in jsonb (22P05), an out-of-range value), class 23
// (integrity constraint violation) and 54000 (program_limit_exceeded: a
// call_key too long for the primary key's index, a jsonb value too large).
// Each is about the values of a row, so the batch is written again row by
// row to find which. Everything else (connection lost, server shutting
// down, a lock or statement timeout, a read-only server, disk full, the
// table missing) is the database's state, which passes.
func (p *postgresDB) rejectsRow(err error) bool {
	if errors.Is(err, errRevisionRange) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23":
		return true
	}
	return pe.Code == "54000"
}

func (p *postgresDB) close() error {
	p.pool.Close()
	return nil
}
