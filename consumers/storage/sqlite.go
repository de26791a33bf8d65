package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteChunks are the row counts of the prepared multi-row INSERTs, largest
// first (16 parameters a row, far below SQLite's limit of 32766). A batch is
// written with as many of the largest as fit, then the smaller ones: fewer
// statements per batch is what makes SQLite fast here, as each costs a trip
// through database/sql and the VDBE setup. 256 rows took about 7% less CPU
// per event than 64; 1,024 no less than 256 (BenchmarkHandleBatch).
var sqliteChunks = []int{256, 64, 16, 4, 1}

const columns = `call_key, event_id, org, revision, call_id, source_number, destination_number,
	call_type, call_status, creation_time, start_time, end_time, call_duration_seconds,
	end_reason, observed_at, raw`

const nColumns = 16

// upsertClause moves a row only to an event that supersedes it (see
// supersedes); the same text works in SQLite and PostgreSQL.
const upsertClause = `
ON CONFLICT (org, call_key) DO UPDATE SET
	event_id = excluded.event_id, revision = excluded.revision,
	call_id = excluded.call_id, source_number = excluded.source_number,
	destination_number = excluded.destination_number, call_type = excluded.call_type,
	call_status = excluded.call_status, creation_time = excluded.creation_time,
	start_time = excluded.start_time, end_time = excluded.end_time,
	call_duration_seconds = excluded.call_duration_seconds, end_reason = excluded.end_reason,
	observed_at = excluded.observed_at, raw = excluded.raw
WHERE excluded.revision > call_logs.revision
	OR (excluded.revision = call_logs.revision AND excluded.event_id %s > call_logs.event_id %s)`

// sqliteDB writes through a single connection: SQLite has one writer at a
// time anyway, and one connection keeps the prepared statements hot.
//
// After a failure of the database itself (not a row it refused) the
// connection is closed and the next write opens a new one. What such a
// failure leaves behind cannot be seen through database/sql: a COMMIT that
// failed with SQLITE_BUSY leaves its transaction open, and then every later
// BEGIN fails ("cannot start a transaction within a transaction"), so the
// consumer would retry forever an outage that is long over. Opening again
// costs a few milliseconds once per failed attempt, which the runtime spaces
// out with backoff anyway.
type sqliteDB struct {
	path string
	dsn  string
	// mu serialises writes (there is one connection) and guards conn.
	mu   sync.Mutex
	conn *sqliteConn // nil after a failure, until the next write reopens it
}

// sqliteConn is one open database with its prepared statements.
type sqliteConn struct {
	db    *sql.DB
	stmts []*sql.Stmt // the upserts of sqliteChunks rows, in that order
	one   *sql.Stmt   // the single-row upsert, last of stmts
}

func openSQLite(ctx context.Context, t target, cfg Config) (*sqliteDB, error) {
	if dir := filepath.Dir(t.path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("storage: create directory of SQLite file %s: %w", t.path, err)
		}
	}
	busy := cfg.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	// WAL lets readers (an API, sqlite3 in a shell) read while we write.
	// synchronous=FULL fsyncs the WAL at every commit: offsets are committed
	// to Kafka right after, so a commit lost to a power cut would be an event
	// lost for good; NORMAL only guarantees that across process crashes.
	// Batching makes that one fsync per batch, not per event.
	// _txlock=immediate takes the write lock at BEGIN, so a concurrent
	// writer waits on busy_timeout instead of failing on lock upgrade.
	s := &sqliteDB{
		path: t.path,
		dsn: fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-65536)&_txlock=immediate",
			t.path, busy.Milliseconds()),
	}
	c, err := s.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s.conn = c
	return s, nil
}

// open opens the database, applies pending migrations and prepares the
// upserts.
func (s *sqliteDB) open(ctx context.Context) (*sqliteConn, error) {
	db, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return nil, fmt.Errorf("open SQLite %s: %w", s.path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	c := &sqliteConn{db: db}
	if err := c.init(ctx, s.path); err != nil {
		_ = db.Close()
		return nil, err
	}
	return c, nil
}

func (c *sqliteConn) init(ctx context.Context, path string) error {
	if err := c.db.PingContext(ctx); err != nil {
		return fmt.Errorf("open SQLite %s: %w", path, err)
	}
	if err := c.migrate(ctx); err != nil {
		return fmt.Errorf("migrate SQLite %s: %w", path, err)
	}
	for _, n := range sqliteChunks {
		stmt, err := c.db.PrepareContext(ctx, sqliteUpsert(n))
		if err != nil {
			return fmt.Errorf("prepare %d-row upsert on SQLite %s: %w", n, path, err)
		}
		c.stmts = append(c.stmts, stmt)
	}
	c.one = c.stmts[len(c.stmts)-1]
	return nil
}

// use runs f on the open connection, opening it first if a failure closed
// it. A failure of f other than a refused row closes the connection.
// Callers hold s.mu.
func (s *sqliteDB) use(ctx context.Context, f func(c *sqliteConn) error) error {
	if s.conn == nil {
		c, err := s.open(ctx)
		if err != nil {
			return fmt.Errorf("reopen after a failure: %w", err)
		}
		s.conn = c
	}
	err := f(s.conn)
	if err != nil && !s.rejectsRow(err) {
		_ = s.conn.db.Close()
		s.conn = nil
	}
	return err
}

func sqliteUpsert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO call_logs (" + columns + ") VALUES ")
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", nColumns), ",") + ")"
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	b.WriteString(fmt.Sprintf(upsertClause, "", ""))
	return b.String()
}

// migrate applies the pending migrations in one transaction; BEGIN
// IMMEDIATE (see _txlock) keeps two processes from applying them twice.
func (c *sqliteConn) migrate(ctx context.Context) error {
	ms, err := loadMigrations(DialectSQLite)
	if err != nil {
		return err
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("apply migration %d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UTC().Format(sqliteTime)); err != nil {
			return fmt.Errorf("record migration %d_%s: %w", m.version, m.name, err)
		}
	}
	return tx.Commit()
}

func (s *sqliteDB) writeBatch(ctx context.Context, rows []row) (applied int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.use(ctx, func(c *sqliteConn) error {
		applied, err = c.writeBatch(ctx, rows)
		return err
	})
	return applied, err
}

func (c *sqliteConn) writeBatch(ctx context.Context, rows []row) (int64, error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var applied int64
	var args sqliteArgs
	txStmts := make([]*sql.Stmt, len(c.stmts))
	for len(rows) > 0 {
		i := 0
		for sqliteChunks[i] > len(rows) {
			i++
		}
		if txStmts[i] == nil {
			txStmts[i] = tx.StmtContext(ctx, c.stmts[i])
		}
		stmt, n := txStmts[i], sqliteChunks[i]
		res, err := stmt.ExecContext(ctx, args.of(rows[:n])...)
		if err != nil {
			return 0, err
		}
		if c, err := res.RowsAffected(); err == nil {
			applied += c
		}
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return applied, nil
}

func (s *sqliteDB) writeEach(ctx context.Context, rows []row) (errs []error, applied int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.use(ctx, func(c *sqliteConn) error {
		errs, applied, err = c.writeEach(ctx, rows)
		return err
	})
	return errs, applied, err
}

func (c *sqliteConn) writeEach(ctx context.Context, rows []row) ([]error, int64, error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	one := tx.StmtContext(ctx, c.one)
	var args sqliteArgs
	errs := make([]error, len(rows))
	var applied int64
	for i := range rows {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT row"); err != nil {
			return nil, 0, fmt.Errorf("savepoint: %w", err)
		}
		res, err := one.ExecContext(ctx, args.of(rows[i:i+1])...)
		switch {
		case err == nil:
			if c, err := res.RowsAffected(); err == nil {
				applied += c
			}
		case sqliteRejectsRow(err):
			errs[i] = err
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO row"); err != nil {
				return nil, 0, fmt.Errorf("rollback to savepoint: %w", err)
			}
		default:
			return nil, 0, err
		}
		if _, err := tx.ExecContext(ctx, "RELEASE row"); err != nil {
			return nil, 0, fmt.Errorf("release savepoint: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("commit: %w", err)
	}
	return errs, applied, nil
}

// rejectsRow: SQLITE_CONSTRAINT (a CHECK, NOT NULL or the primary key),
// SQLITE_MISMATCH (a value of the wrong type) and SQLITE_TOOBIG (a value over
// SQLite's length limit) are about a row's values. Everything else
// (SQLITE_BUSY once busy_timeout has passed, SQLITE_FULL, SQLITE_IOERR, a
// missing table, a cancelled context) is the database's state, which passes.
func (s *sqliteDB) rejectsRow(err error) bool { return sqliteRejectsRow(err) }

func sqliteRejectsRow(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return true
	}
	return false
}

func (s *sqliteDB) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.db.Close()
	s.conn = nil
	return err
}
