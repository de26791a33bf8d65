package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgUpsert writes a whole batch in one statement: each column travels as one
// array parameter (binary-encoded by pgx) and unnest turns them back into
// rows. That is one round trip per batch whatever its size, without the temp
// table COPY would need. A statement must not hold one call_key twice,
// which latestPerKey guarantees.
var pgUpsert = `INSERT INTO call_logs (` + columns + `)
SELECT k, e, o, r, ci, sn, dn, ct, cs, crt, st, et, d, er, oa, raw::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::int8[],
	$14::text[], $15::timestamptz[], $16::text[])
	AS u(k, e, o, r, ci, sn, dn, ct, cs, crt, st, et, d, er, oa, raw)` +
	// COLLATE "C" compares event ids byte by byte, like Go and SQLite.
	fmt.Sprintf(upsertClause, `COLLATE "C"`, `COLLATE "C"`)

// migrationLock is the pg_advisory_xact_lock key that serialises migrations
// of consumers starting together (hashtext of this text and the schema).
const migrationLock = "callstream.storage.migrate"

type postgresDB struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, t target, cfg Config) (*postgresDB, error) {
	pc, err := pgxpool.ParseConfig(t.conn)
	if err != nil {
		// pgx's parse errors mask the password already; say which DSN anyway.
		return nil, fmt.Errorf("storage: PostgreSQL DSN %s: %w", t.redacted, err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = int32(cfg.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("storage: connect to PostgreSQL %s: %w", t.redacted, err)
	}
	p := &postgresDB{pool: pool}
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

// pgColumns is a batch laid out as one slice per column.
type pgColumns struct {
	key, eventID, org          []string
	revision                   []int32
	callID                     []*string
	src, dst, callType, status []string
	creation                   []time.Time
	start, end                 []*time.Time
	duration                   []int64
	endReason                  []string
	observed                   []time.Time
	raw                        []string
}

func newPGColumns(rows []row) *pgColumns {
	n := len(rows)
	c := &pgColumns{
		key: make([]string, n), eventID: make([]string, n), org: make([]string, n),
		revision: make([]int32, n), callID: make([]*string, n),
		src: make([]string, n), dst: make([]string, n), callType: make([]string, n), status: make([]string, n),
		creation: make([]time.Time, n), start: make([]*time.Time, n), end: make([]*time.Time, n),
		duration: make([]int64, n), endReason: make([]string, n), observed: make([]time.Time, n), raw: make([]string, n),
	}
	for i, r := range rows {
		ev := r.ev
		c.key[i], c.eventID[i], c.org[i] = ev.CallKey, ev.EventID, ev.Org
		c.revision[i], c.callID[i] = int32(ev.Revision), ev.CallID
		c.src[i], c.dst[i], c.callType[i], c.status[i] = ev.SourceNumber, ev.DestinationNumber, ev.CallType, ev.CallStatus
		c.creation[i], c.start[i], c.end[i] = ev.CreationTime, ev.StartTime, ev.EndTime
		c.duration[i], c.endReason[i], c.observed[i], c.raw[i] = ev.CallDurationSeconds, ev.EndReason, ev.ObservedAt, rawJSON(ev)
	}
	return c
}

func (c *pgColumns) args() []any {
	return []any{c.key, c.eventID, c.org, c.revision, c.callID, c.src, c.dst, c.callType, c.status,
		c.creation, c.start, c.end, c.duration, c.endReason, c.observed, c.raw}
}

func (p *postgresDB) writeBatch(ctx context.Context, rows []row) (int64, error) {
	for _, r := range rows {
		if r.ev.Revision > 1<<31-1 || r.ev.Revision < -1<<31 {
			return 0, errRevisionRange
		}
	}
	var applied int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, pgUpsert, newPGColumns(rows).args()...)
		applied = tag.RowsAffected()
		return err
	})
	return applied, err
}

// errRevisionRange is a revision the integer column cannot hold.
var errRevisionRange = errors.New("revision out of the range of a PostgreSQL integer")

func (p *postgresDB) writeEach(ctx context.Context, rows []row) ([]error, int64, error) {
	errs := make([]error, len(rows))
	var applied int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for i, r := range rows {
			if r.ev.Revision > 1<<31-1 || r.ev.Revision < -1<<31 {
				errs[i] = errRevisionRange
				continue
			}
			// A nested transaction is a savepoint.
			err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				tag, err := sp.Exec(ctx, pgUpsert, newPGColumns(rows[i:i+1]).args()...)
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
