package storage

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstream/callstream/schemas"
)

// oldDatabase is a database as this package left it before migration 0002:
// only 0001 applied, recorded in schema_migrations as the code of that time
// did, rows keyed by call_key alone.
type oldDatabase interface {
	exec(t testing.TB, q string, args ...any)
	insert(t testing.TB, ev schemas.CallEvent)
	queryInt(t testing.TB, q string) int
	close()
}

type oldSQLite struct{ db *sql.DB }

func (o oldSQLite) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := o.db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (o oldSQLite) insert(t testing.TB, ev schemas.CallEvent) {
	t.Helper()
	var start, end, callID any
	if ev.StartTime != nil {
		start = formatSQLiteTime(*ev.StartTime)
	}
	if ev.EndTime != nil {
		end = formatSQLiteTime(*ev.EndTime)
	}
	if ev.CallID != nil {
		callID = *ev.CallID
	}
	o.exec(t, `INSERT INTO call_logs (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.CallKey, ev.EventID, ev.Org, ev.Revision, callID, ev.SourceNumber, ev.DestinationNumber,
		ev.CallType, ev.CallStatus, formatSQLiteTime(ev.CreationTime), start, end,
		ev.CallDurationSeconds, ev.EndReason, formatSQLiteTime(ev.ObservedAt), string(ev.Raw))
}

func (o oldSQLite) queryInt(t testing.TB, q string) (n int) {
	t.Helper()
	if err := o.db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (o oldSQLite) close() { _ = o.db.Close() }

type oldPostgres struct{ conn *pgx.Conn }

func (o oldPostgres) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := o.conn.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (o oldPostgres) insert(t testing.TB, ev schemas.CallEvent) {
	t.Helper()
	o.exec(t, `INSERT INTO call_logs (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb)`,
		ev.CallKey, ev.EventID, ev.Org, ev.Revision, ev.CallID, ev.SourceNumber, ev.DestinationNumber,
		ev.CallType, ev.CallStatus, ev.CreationTime, ev.StartTime, ev.EndTime,
		ev.CallDurationSeconds, ev.EndReason, ev.ObservedAt, string(ev.Raw))
}

func (o oldPostgres) queryInt(t testing.TB, q string) (n int) {
	t.Helper()
	if err := o.conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (o oldPostgres) close() { _ = o.conn.Close(context.Background()) }

// createVersion1 creates the database of dsn at schema version 1.
func createVersion1(t testing.TB, dsn string) oldDatabase {
	t.Helper()
	tgt, err := parseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(tgt.dialect)
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].version != 1 {
		t.Fatalf("first migration is %d_%s, want 0001", ms[0].version, ms[0].name)
	}
	var db oldDatabase
	switch tgt.dialect {
	case DialectSQLite:
		sdb, err := sql.Open("sqlite", "file:"+tgt.path)
		if err != nil {
			t.Fatal(err)
		}
		sdb.SetMaxOpenConns(1)
		db = oldSQLite{sdb}
		db.exec(t, `CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`)
		db.exec(t, ms[0].sql)
		db.exec(t, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			1, ms[0].name, time.Now().UTC().Format(sqliteTime))
	default:
		conn, err := pgx.Connect(context.Background(), tgt.conn)
		if err != nil {
			t.Fatal(err)
		}
		db = oldPostgres{conn}
		db.exec(t, `CREATE TABLE schema_migrations (version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
		db.exec(t, ms[0].sql)
		db.exec(t, `INSERT INTO schema_migrations (version, name) VALUES (1, $1)`, ms[0].name)
	}
	return db
}

// TestMigrationKeysByOrg: a database created by the schema before 0002
// (keyed by call_key alone), with rows and a view on the table, is migrated
// when the store opens it: every row is kept as it was, the view still
// reads the table, the API's index is there, and from then on two orgs'
// calls with the same call_key are two rows, each following the upsert rule
// on its own.
func TestMigrationKeysByOrg(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		old := createVersion1(t, dsn)
		var kept []schemas.CallEvent
		for i := range 40 {
			ev := callEvent(fmt.Sprintf("old-%03d", i), 1+i%3)
			ev.Org = []string{"org-a", "org-b"}[i%2]
			kept = append(kept, ev)
			old.insert(t, ev)
		}
		// The collision the old key caused: org-a's call "shared" holds the row.
		sharedA := callEvent("shared", 2)
		sharedA.Org = "org-a"
		kept = append(kept, sharedA)
		old.insert(t, sharedA)
		old.exec(t, `CREATE VIEW calls_per_org AS SELECT org, count(*) AS calls FROM call_logs GROUP BY org`)
		old.close()

		s := openStore(t, dsn)
		rows := readRows(t, s)
		if len(rows) != len(kept) {
			t.Fatalf("%d rows after the migration, want the %d there were", len(rows), len(kept))
		}
		for _, want := range kept {
			got, ok := rows[callRef{want.Org, want.CallKey}]
			if !ok {
				t.Errorf("(%s, %s) lost by the migration", want.Org, want.CallKey)
				continue
			}
			if got.Revision != want.Revision || got.EventID != want.EventID || got.CallStatus != want.CallStatus ||
				!got.CreationTime.Equal(want.CreationTime) || !equalTime(got.EndTime, want.EndTime) || !sameJSON(t, got.Raw, want.Raw) {
				t.Errorf("(%s, %s) changed by the migration: %+v, want %+v", want.Org, want.CallKey, got, want)
			}
		}
		var views, indexes int
		switch s.Dialect() {
		case DialectSQLite:
			views = queryCount(t, s, `SELECT count(*) FROM calls_per_org`)
			indexes = queryCount(t, s, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'call_logs_org_creation_time'`)
		default:
			views = queryCount(t, s, `SELECT count(*) FROM calls_per_org`)
			indexes = queryCount(t, s, `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'call_logs_org_creation_time'`)
		}
		if views != 2 {
			t.Errorf("the view counts %d orgs after the migration, want 2", views)
		}
		if indexes != 1 {
			t.Errorf("index call_logs_org_creation_time: %d after the migration, want 1", indexes)
		}

		// Same call_key, other orgs: rows of their own, in one batch and
		// across batches; an older revision of org-a's call changes nothing.
		sharedB, sharedC, staleA := callEvent("shared", 1), callEvent("shared", 5), callEvent("shared", 1)
		sharedB.Org, sharedC.Org, staleA.Org = "org-b", "org-c", "org-a"
		handle(t, s, sharedB, sharedC, staleA)
		newerB := callEvent("shared", 3)
		newerB.Org = "org-b"
		handle(t, s, newerB)
		rows = readRows(t, s)
		if len(rows) != len(kept)+2 {
			t.Errorf("%d rows, want %d: the old ones and two more orgs' \"shared\"", len(rows), len(kept)+2)
		}
		for _, want := range []schemas.CallEvent{sharedA, newerB, sharedC} {
			got := rows[callRef{want.Org, "shared"}]
			if got.Revision != want.Revision || got.EventID != want.EventID {
				t.Errorf("(%s, shared) holds revision %d (%s), want %d (%s)", want.Org, got.Revision, got.EventID, want.Revision, want.EventID)
			}
		}
	})
}

// queryCount runs a query returning one integer on the store's database.
func queryCount(t testing.TB, s *Store, q string) (n int) {
	t.Helper()
	var err error
	switch db := s.db.(type) {
	case *sqliteDB:
		err = sqliteOf(t, db).QueryRowContext(context.Background(), q).Scan(&n)
	case *postgresDB:
		err = db.pool.QueryRow(context.Background(), q).Scan(&n)
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
