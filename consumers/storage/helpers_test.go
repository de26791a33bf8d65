package storage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// dialectCase opens a fresh, empty database of one dialect.
type dialectCase struct {
	name string
	// dsn returns a DSN of an empty database that lives as long as the test.
	dsn func(t testing.TB) string
}

func dialects() []dialectCase {
	return []dialectCase{
		{name: DialectSQLite, dsn: sqliteDSN},
		{name: DialectPostgres, dsn: postgresDSN},
	}
}

func sqliteDSN(t testing.TB) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "calls.db")
}

// postgresDSN returns a DSN of a schema of this test's own on the test
// server (dropped at the end).
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn, _ := testenv.PostgresSchema(t, "test_storage")
	return dsn
}

func testConfig(dsn string) Config {
	cfg := DefaultConfig()
	cfg.DSN = dsn
	cfg.ConnectTimeout = 20 * time.Second
	return cfg
}

func openStore(t testing.TB, dsn string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, testConfig(dsn), consumers.Deps{})
	if err != nil {
		t.Fatalf("Open(%s): %v", dsn, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var testNamespace = uuid.MustParse("6f1c2a52-8a0e-4b0a-9d7e-1f3f6a1b2c3d")

// callEvent builds revision rev of call key; the content depends on both,
// so a test can tell which revision a row holds.
func callEvent(key string, rev int) schemas.CallEvent {
	base := time.Date(2026, 11, 27, 9, 0, 0, 123456000, time.UTC)
	id := key
	start := base.Add(time.Duration(rev) * time.Second)
	end := start.Add(time.Duration(rev*10) * time.Second)
	status := []string{schemas.StatusMissed, schemas.StatusFailed, schemas.StatusCompleted}[rev%3]
	raw, _ := json.Marshal(map[string]any{"id": key, "rev": rev, "status": status, "nested": map[string]any{"a": []int{1, 2, rev}}})
	return schemas.CallEvent{
		EventID:             uuid.NewSHA1(testNamespace, []byte(fmt.Sprintf("%s/%d", key, rev))).String(),
		Org:                 "org-" + string(key[len(key)-1]),
		CallKey:             key,
		Revision:            rev,
		CallID:              &id,
		SourceNumber:        "+4915100000001",
		DestinationNumber:   "+4915100000002",
		CallType:            schemas.CallOutbound,
		CallStatus:          status,
		CreationTime:        base,
		StartTime:           &start,
		EndTime:             &end,
		CallDurationSeconds: int64(rev * 10),
		EndReason:           fmt.Sprintf("reason-%d", rev),
		ObservedAt:          base.Add(time.Duration(rev) * time.Minute),
		Raw:                 raw,
	}
}

func deliveries(evs ...schemas.CallEvent) []consumers.Delivery {
	out := make([]consumers.Delivery, len(evs))
	for i, ev := range evs {
		out[i] = consumers.Delivery{Event: ev}
	}
	return out
}

// stored is a call_logs row read back, in Go types.
type stored struct {
	EventID, Org, SourceNumber, DestinationNumber, CallType, CallStatus, EndReason string
	Revision                                                                       int
	CallID                                                                         *string
	CreationTime, ObservedAt                                                       time.Time
	StartTime, EndTime                                                             *time.Time
	CallDurationSeconds                                                            int64
	Raw                                                                            []byte
}

// readAll reads the whole call_logs table by call_key, for tests whose calls
// all have distinct call_keys; a call_key stored for two orgs fails it.
func readAll(t testing.TB, s *Store) map[string]stored {
	t.Helper()
	out := map[string]stored{}
	for ref, r := range readRows(t, s) {
		if prev, dup := out[ref.key]; dup {
			t.Fatalf("call_key %q is stored for orgs %q and %q", ref.key, prev.Org, r.Org)
		}
		out[ref.key] = r
	}
	return out
}

// readRows reads the whole call_logs table by (org, call_key).
func readRows(t testing.TB, s *Store) map[callRef]stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const q = `SELECT call_key, event_id, org, revision, call_id, source_number, destination_number,
		call_type, call_status, creation_time, start_time, end_time, call_duration_seconds,
		end_reason, observed_at, raw FROM call_logs`
	out := map[callRef]stored{}
	switch db := s.db.(type) {
	case *sqliteDB:
		rows, err := sqliteOf(t, db).QueryContext(ctx, q)
		if err != nil {
			t.Fatalf("read call_logs: %v", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r stored
			var key, creation, observed, raw string
			var start, end, callID sql.NullString
			if err := rows.Scan(&key, &r.EventID, &r.Org, &r.Revision, &callID, &r.SourceNumber, &r.DestinationNumber,
				&r.CallType, &r.CallStatus, &creation, &start, &end, &r.CallDurationSeconds, &r.EndReason, &observed, &raw); err != nil {
				t.Fatalf("scan call_logs: %v", err)
			}
			r.CreationTime, r.ObservedAt = parseSQLiteTime(t, creation), parseSQLiteTime(t, observed)
			if start.Valid {
				v := parseSQLiteTime(t, start.String)
				r.StartTime = &v
			}
			if end.Valid {
				v := parseSQLiteTime(t, end.String)
				r.EndTime = &v
			}
			if callID.Valid {
				r.CallID = &callID.String
			}
			r.Raw = []byte(raw)
			out[callRef{r.Org, key}] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read call_logs: %v", err)
		}
	case *postgresDB:
		rows, err := db.pool.Query(ctx, q)
		if err != nil {
			t.Fatalf("read call_logs: %v", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r stored
			var key string
			if err := rows.Scan(&key, &r.EventID, &r.Org, &r.Revision, &r.CallID, &r.SourceNumber, &r.DestinationNumber,
				&r.CallType, &r.CallStatus, &r.CreationTime, &r.StartTime, &r.EndTime, &r.CallDurationSeconds,
				&r.EndReason, &r.ObservedAt, &r.Raw); err != nil {
				t.Fatalf("scan call_logs: %v", err)
			}
			out[callRef{r.Org, key}] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read call_logs: %v", err)
		}
	default:
		t.Fatalf("unknown backend %T", s.db)
	}
	return out
}

func parseSQLiteTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("stored time %q is not RFC 3339: %v", s, err)
	}
	return v
}

// sqliteOf returns the store's open SQLite database or, when a failure
// closed it, another connection to the same file (the store opens its own
// again at its next write, which may need what the test is about to fix).
func sqliteOf(t testing.TB, db *sqliteDB) *sql.DB {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.conn != nil {
		return db.conn.db
	}
	other, err := sql.Open("sqlite", db.dsn)
	if err != nil {
		t.Fatalf("open SQLite %s: %v", db.path, err)
	}
	other.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = other.Close() })
	return other
}

// execSQL runs a statement on the store's own database.
func execSQL(t testing.TB, s *Store, q string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	switch db := s.db.(type) {
	case *sqliteDB:
		_, err = sqliteOf(t, db).ExecContext(ctx, q)
	case *postgresDB:
		_, err = db.pool.Exec(ctx, q)
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// sameJSON reports whether two JSON texts hold the same value (PostgreSQL's
// jsonb keeps values, not spelling: key order and spaces change).
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	// Numbers are compared as written, so a precision loss shows.
	decode := func(data []byte) string {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("unmarshal %s: %v", data, err)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	return decode(a) == decode(b)
}
