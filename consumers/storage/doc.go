// Package storage is the storage consumer: it keeps the latest revision of
// every call in a table call_logs, in SQLite (the default, a file under the
// state directory) or PostgreSQL (CALLSTREAM_STORAGE_DSN=postgres://...).
//
// # The table
//
// One row per call, keyed by (org, call_key) as the producer and the lake
// key calls (a call_key is the API's id, unique only within its org), with
// the columns of the call event:
//
//	column                 PostgreSQL    SQLite
//	call_key (PK)          text          TEXT
//	event_id               text          TEXT     UUIDv5 of the revision stored
//	org (PK)               text          TEXT
//	revision               integer       INTEGER  >= 1
//	call_id                text NULL     TEXT NULL
//	source_number          text          TEXT
//	destination_number     text          TEXT
//	call_type              text          TEXT     inbound / outbound
//	call_status            text          TEXT     completed / missed / failed
//	creation_time          timestamptz   TEXT     see Times
//	start_time, end_time   timestamptz   TEXT     NULL when the API had none
//	call_duration_seconds  bigint        INTEGER  >= 0
//	end_reason             text          TEXT
//	observed_at            timestamptz   TEXT
//	raw                    jsonb         TEXT     CHECK (json_valid(raw))
//
// The primary key is (org, call_key) in that order, so it also serves
// lookups of an org's calls by key. One index, call_logs_org_creation_time
// on (org, creation_time, call_type,
// call_status), serves the API's filters: an org and a creation_time range,
// optionally narrowed by type or status, which are then checked on the index
// entries without reading rows. Separate indexes per filter were measured
// to cost about a sixth of the SQLite write throughput each, and type and
// status have two or three values, so they would seldom be used alone.
//
// # Dialect differences
//
// Times: PostgreSQL stores timestamptz (microsecond precision: nanoseconds
// are truncated). SQLite stores TEXT in a fixed-width RFC 3339 form in UTC
// with nine fractional digits, 2026-11-27T09:00:00.123456000Z, so that text
// order is time order (plain RFC3339Nano drops trailing zeros and would not
// sort) and SQLite's date functions and time.Parse(time.RFC3339Nano, ...)
// read it. Raw: PostgreSQL's jsonb keeps the value, not the spelling (key
// order and spaces change, duplicate keys collapse); SQLite keeps the bytes
// the API sent. PostgreSQL refuses text holding NUL characters, which SQLite
// accepts.
//
// SQLite runs in WAL mode (readers do not block the writer) through a single
// connection (SQLite has one writer at a time), with busy_timeout so another
// process's lock is waited for, and BEGIN IMMEDIATE. synchronous=FULL: the
// WAL is fsynced at every commit. NORMAL would only survive process crashes,
// not power loss, and because Kafka offsets are committed right after the
// transaction, a commit lost to a power cut would be an event lost for good.
// Batching makes that one fsync per batch.
//
// # The upsert rule
//
// Delivery is at least once and may be out of order (a replay, a rebalance,
// a retried batch), so a write never moves a row backwards:
//
//	INSERT INTO call_logs (...) VALUES (...)
//	ON CONFLICT (org, call_key) DO UPDATE SET ... = excluded....
//	WHERE excluded.revision > call_logs.revision
//	   OR (excluded.revision = call_logs.revision AND excluded.event_id > call_logs.event_id)
//
// A higher revision wins. Equal revisions normally carry the same event (the
// same event_id) and change nothing; should two differ (two producers on one
// org, which the design rules out), the greater event_id in byte order wins,
// so every delivery order ends in the same row. Within a batch only the
// winning event per (org, call_key) is written (a PostgreSQL statement
// cannot upsert one row twice), and rows are written in (org, call_key)
// order, so concurrent batches lock rows in one order and do not deadlock.
//
// # Batches
//
// HandleBatch writes a whole batch in one transaction; the runtime
// acknowledges (and the Kafka subscriber commits) the batch's offsets only
// after it returned nil.
//
// PostgreSQL: the batch is streamed with COPY ... FROM STDIN (FORMAT binary)
// into a temporary staging table (one per connection, created when the
// connection is; no WAL; ON COMMIT DELETE ROWS empties it), then one
// INSERT ... SELECT from it with the upsert rule. That is four round trips
// per batch whatever its size. The staging table lives in the session, so a
// connection pooler in front of PostgreSQL must pool sessions, not
// transactions (pgx's statement cache needs that too). The COPY stream is
// encoded by this package
// (pgcopy.go) into a reused buffer: pgx.CopyFrom takes every value as an
// interface, 16 allocations a row; this takes none.
//
// SQLite: up to 256 rows per INSERT statement (prepared statements of 256,
// 64, 16, 4 and 1 rows) in one transaction (BEGIN IMMEDIATE), one fsync at
// its commit. database/sql takes arguments as interfaces, so each string
// argument costs an allocation; the times and the raw record are formatted
// into one buffer per statement and passed as slices of one string.
//
// # Errors: permanent or transient
//
// Every error HandleBatch returns is classified for the runtime:
//
//   - The database refuses a row's content: SQLSTATE classes 22 (data
//     exception: bad JSON, a NUL or invalid UTF-8 in text (22021), \u0000
//     in jsonb or a character the database encoding lacks (22P05), a value
//     out of range) and 23 (a CHECK), 54000 (a call_key too long for the
//     key's index), a revision beyond PostgreSQL's integer; in SQLite
//     SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_TOOBIG. The batch is
//     written again row by row, each in a savepoint: the good rows are
//     committed, the refused ones come back as consumers.Permanent errors in
//     a *consumers.ItemErrors and go to the DLQ. Retrying cannot change a
//     row, and a refused row must not hold back the rest.
//   - Anything else is the database's state, not the event's: connection
//     refused or reset, the server shutting down (57P01), a lock or
//     statement timeout, SQLITE_BUSY after busy_timeout, SQLITE_FULL or a
//     full disk, the table missing, the context ending. It fails the whole
//     batch as consumers.Transient: the runtime keeps the events, pauses the
//     consumer and retries for as long as the database takes to come back,
//     and dead-letters nothing for it.
//
// Recovery needs nobody: pgxpool replaces connections it finds dead (and
// pings one idle for over a second before handing it out), and SQLite
// closes its connection after such a failure and opens it again at the next
// write, because what a failure leaves on a connection cannot be seen
// through database/sql (a COMMIT refused with SQLITE_BUSY leaves its
// transaction open, and every later BEGIN on it would fail).
//
// In SQLite, text is not checked for encoding: a value PostgreSQL refuses
// for invalid UTF-8 or a NUL is stored as sent.
//
// # Throughput
//
// CALLSTREAM_BENCH=1 go test -run TestBench -v ./consumers/storage prints
// events/s and CPU time per event for HandleBatch alone, beside plain
// inserts of the same rows without upsert (the ceiling) and, for
// PostgreSQL, the server's CPU per event and the paths measured against the
// staging table (pgx.CopyFrom, and one INSERT ... SELECT FROM unnest of an
// array per column, used before); and end to end from the broker. On the
// shared 2-core test machine wall-clock figures swing by 2x with its load;
// CPU per event is steadier. With batches of 2,000: PostgreSQL 37-85k
// events/s, 1.3 µs of client CPU and 10-11 µs of server CPU per event
// (plain COPY of the same rows without upsert: 3.6-3.8 µs and 9 µs; the
// unnest INSERT: 4.5-5.4 µs and 11-13 µs; the staged upsert filled by
// pgx.CopyFrom: 3.5-3.9 µs of client CPU); SQLite 44-90k events/s, 10-12
// µs of CPU per event against 9-12 for plain 256-row INSERTs. Where
// SQLite's time goes: the B-tree inserts of the table, its primary key and
// the one index, the VDBE, the WAL writes and checkpoints; a WITHOUT ROWID
// table was measured slower (rows are wide). End to end, the consumer runtime's
// per-message work costs several times what the writes do.
//
// # Migrations
//
// Migrations are SQL files embedded from migrations/<dialect>/, named
// <version>_<name>.sql. On start every pending one is applied, in version
// order, in one transaction that also records it in schema_migrations
// (version, name, applied_at). PostgreSQL takes a transaction-scoped
// advisory lock first and SQLite begins IMMEDIATE, so consumers starting
// together apply each migration once. Opening an up-to-date database
// changes nothing. To change the schema, add the next numbered file for
// both dialects; never edit an applied one. 0002 moved the primary key from
// call_key to (org, call_key); SQLite cannot alter a primary key, so there
// it rebuilds the table inside the migration's transaction (triggers on
// call_logs are dropped with the old table; views keep working).
//
// # Example queries
//
// Failed calls of an org in a day (PostgreSQL; in SQLite write the times as
// '2026-11-27T00:00:00.000000000Z'):
//
//	SELECT call_key, creation_time, end_reason, raw->>'call_status' AS api_status
//	FROM call_logs
//	WHERE org = 'acme' AND creation_time >= '2026-11-27' AND creation_time < '2026-11-28'
//	  AND call_status = 'failed'
//	ORDER BY creation_time;
//
// Missed-call ratio per hour (SQLite):
//
//	SELECT substr(creation_time, 1, 13) AS hour,
//	       avg(call_status = 'missed') AS missed_ratio, count(*) AS calls
//	FROM call_logs WHERE org = 'acme' GROUP BY hour ORDER BY hour;
//
// Applied migrations:
//
//	SELECT version, name, applied_at FROM schema_migrations ORDER BY version;
package storage
