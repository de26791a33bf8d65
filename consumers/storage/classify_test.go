package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// transientType is the type consumers.Transient wraps an error in; it is
// unexported, so errors.As is given a target of that type made by
// reflection. This is deliberately stricter than consumers.IsTransient (on
// main since), which also takes unmarked network errors: the tests check
// that the plug-in marks every outage itself, as most of them (SQLITE_BUSY,
// a lock timeout, 57P01) are not network errors.
var transientType = reflect.TypeOf(consumers.Transient(errors.New("probe")))

// isTransient reports whether err was marked by consumers.Transient.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	return errors.As(err, reflect.New(transientType).Interface())
}

// requireTransient fails unless err fails the whole batch as transient:
// marked Transient, neither permanent nor an *consumers.ItemErrors.
func requireTransient(t testing.TB, err error) {
	t.Helper()
	var items *consumers.ItemErrors
	switch {
	case err == nil:
		t.Fatal("HandleBatch succeeded, want a transient error")
	case errors.As(err, &items):
		t.Fatalf("HandleBatch failed single items (%v), want the whole batch transient", err)
	case consumers.IsPermanent(err):
		t.Fatalf("HandleBatch error is permanent (%v), want transient", err)
	case !isTransient(err):
		t.Fatalf("HandleBatch error %T is not marked consumers.Transient: %v", err, err)
	}
}

// refusal is a row a test expects refused: what is wrong with it, and a
// check that the error says so.
type refusal struct {
	what  string
	cause func(error) bool
}

// requireRefused fails unless err names exactly the items of want as
// permanent (and none transient), each refused for what want says.
func requireRefused(t testing.TB, err error, want map[int]refusal) {
	t.Helper()
	var items *consumers.ItemErrors
	if !errors.As(err, &items) {
		t.Fatalf("HandleBatch: %v, want *consumers.ItemErrors", err)
	}
	if isTransient(err) {
		t.Errorf("a refused row is marked transient: %v", err)
	}
	for i, w := range want {
		ierr, ok := (*items)[i]
		if !ok {
			t.Errorf("item %d (%s) was not refused", i, w.what)
			continue
		}
		if !consumers.IsPermanent(ierr) || isTransient(ierr) {
			t.Errorf("item %d (%s): %v is not permanent", i, w.what, ierr)
		}
		if !w.cause(ierr) {
			t.Errorf("item %d (%s) refused for another reason: %v", i, w.what, ierr)
		}
	}
	for i, ierr := range *items {
		if _, ok := want[i]; !ok {
			t.Errorf("item %d refused (%v), but it is valid", i, ierr)
		}
	}
}

// Causes, so that each case shows it produced the failure it is named for.

func sqlState(code string) func(error) bool {
	return func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == code
	}
}

func sqliteCode(code int) func(error) bool {
	return func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && e.Code()&0xff == code
	}
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// TestErrorClassification: every kind of failure, produced for real by the
// real databases, reaches the runtime in the class that decides its fate. A
// failure of the database (locked, full, unreachable, shut down, timed out)
// is transient for the whole batch, so it is retried as long as it takes and
// never dead-lettered; a row the database refuses (a constraint, a value it
// cannot hold) is permanent for that row alone.
func TestErrorClassification(t *testing.T) {
	ctx := context.Background()
	batch := func(keys ...string) []consumers.Delivery {
		evs := make([]schemas.CallEvent, len(keys))
		for i, k := range keys {
			evs[i] = callEvent(k, 1)
		}
		return deliveries(evs...)
	}
	transient := []struct {
		name    string
		provoke func(t *testing.T) error
		cause   func(error) bool
	}{
		{"sqlite/locked past busy_timeout (SQLITE_BUSY)", func(t *testing.T) error {
			s := openSQLiteStore(t, 200*time.Millisecond)
			unlock := lockSQLite(t, s)
			defer unlock()
			return s.HandleBatch(ctx, batch("busy-1"))
		}, sqliteCode(sqlite3.SQLITE_BUSY)},
		{"sqlite/locked until the context ends", func(t *testing.T) error {
			s := openSQLiteStore(t, 10*time.Second)
			unlock := lockSQLite(t, s)
			defer unlock()
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return s.HandleBatch(cctx, batch("ctx-1"))
		}, func(err error) bool {
			return errors.Is(err, context.DeadlineExceeded) || sqliteCode(sqlite3.SQLITE_INTERRUPT)(err)
		}},
		{"sqlite/database full (SQLITE_FULL)", func(t *testing.T) error {
			s := openSQLiteStore(t, time.Second)
			// The file may not grow: the cap goes down to its current size.
			execSQL(t, s, `PRAGMA max_page_count = 1`)
			keys := make([]string, 500)
			for i := range keys {
				keys[i] = fmt.Sprintf("full-%03d", i)
			}
			return s.HandleBatch(ctx, batch(keys...))
		}, sqliteCode(sqlite3.SQLITE_FULL)},
		{"sqlite/table missing", func(t *testing.T) error {
			s := openSQLiteStore(t, time.Second)
			execSQL(t, s, `ALTER TABLE call_logs RENAME TO call_logs_away`)
			return s.HandleBatch(ctx, batch("gone-1"))
		}, func(err error) bool { return strings.Contains(err.Error(), "no such table") }},
		{"postgres/lock timeout (55P03)", func(t *testing.T) error {
			dsn := postgresDSN(t)
			s := openStore(t, dsn+"&lock_timeout=200")
			unlock := lockPostgres(t, dsn)
			defer unlock()
			return s.HandleBatch(ctx, batch("lock-1"))
		}, sqlState("55P03")},
		{"postgres/statement timeout (57014)", func(t *testing.T) error {
			dsn := postgresDSN(t)
			s := openStore(t, dsn+"&statement_timeout=200")
			unlock := lockPostgres(t, dsn)
			defer unlock()
			return s.HandleBatch(ctx, batch("stmt-1"))
		}, sqlState("57014")},
		{"postgres/context deadline", func(t *testing.T) error {
			dsn := postgresDSN(t)
			s := openStore(t, dsn)
			unlock := lockPostgres(t, dsn)
			defer unlock()
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return s.HandleBatch(cctx, batch("ctx-1"))
		}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) }},
		{"postgres/connection terminated mid-statement (57P01)", func(t *testing.T) error {
			return whileWaitingForLock(t, postgresDSN(t), func(pid uint32) {
				admin, err := pgx.Connect(ctx, testenv.Postgres(t))
				if err != nil {
					t.Fatal(err)
				}
				defer admin.Close(ctx)
				if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
					t.Fatal(err)
				}
			})
		}, sqlState("57P01")},
		{"postgres/table missing (42P01)", func(t *testing.T) error {
			s := openStore(t, postgresDSN(t))
			execSQL(t, s, `ALTER TABLE call_logs RENAME TO call_logs_away`)
			return s.HandleBatch(ctx, batch("gone-1"))
		}, sqlState("42P01")},
		{"postgres/server shut down mid-statement (57P01)", func(t *testing.T) error {
			// The statement sleeps in a trigger rather than waiting for a
			// lock: a fast shutdown terminates sessions one by one, and a
			// lock holder terminated first would let the waiting upsert commit.
			pg := startPrivatePostgres(t)
			return whileSleepingInStatement(t, pg.dsn, pg.stop)
		}, func(err error) bool {
			// The session's FATAL, or the socket closing before it is read.
			return sqlState("57P01")(err) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF")
		}},
		{"postgres/connection refused", func(t *testing.T) error {
			pg := startPrivatePostgres(t)
			s := openStore(t, pg.dsn)
			pg.stop()
			_ = s.HandleBatch(ctx, batch("refused-0")) // meets the closed session
			return s.HandleBatch(ctx, batch("refused-1"))
		}, is(syscall.ECONNREFUSED)},
	}
	for _, tc := range transient {
		t.Run("transient/"+tc.name, func(t *testing.T) {
			err := tc.provoke(t)
			t.Logf("HandleBatch: %v", err)
			requireTransient(t, err)
			if !tc.cause(err) {
				t.Errorf("the case did not produce the failure it is named for: %v", err)
			}
		})
	}

	// Rows the database refuses: each is permanent for itself alone; the
	// valid rows around them are stored.
	constraint := sqliteCode(sqlite3.SQLITE_CONSTRAINT)
	type refusedCase struct {
		name   string
		mutate func(*schemas.CallEvent)
		// What refuses the row in each dialect; nil: the dialect takes it.
		sqliteCause, pgCause func(error) bool
	}
	rows := []refusedCase{
		{"revision 0 (CHECK)", func(ev *schemas.CallEvent) { ev.Revision = 0 }, constraint, sqlState("23514")},
		{"negative duration (CHECK)", func(ev *schemas.CallEvent) { ev.CallDurationSeconds = -5 }, constraint, sqlState("23514")},
		{"raw not JSON", func(ev *schemas.CallEvent) { ev.Raw = []byte(`{"not json`) }, constraint, sqlState("22P02")},
		{"empty call_key (CHECK)", func(ev *schemas.CallEvent) { ev.CallKey = "" }, constraint, sqlState("23514")},
		{"revision beyond a PostgreSQL integer", func(ev *schemas.CallEvent) { ev.Revision = 1 << 40 }, nil, is(errRevisionRange)},
		{"NUL in text (22021)", func(ev *schemas.CallEvent) { ev.EndReason = "a\x00b" }, nil, sqlState("22021")},
		// Issue 14.7: bad encoding costs the row alone, and is never mistaken
		// for an outage (which would retry the batch forever).
		{"invalid UTF-8 in text (22021)", func(ev *schemas.CallEvent) { ev.SourceNumber = "+49\xff\xfe" }, nil, sqlState("22021")},
		{"invalid UTF-8 in call_key (22021)", func(ev *schemas.CallEvent) { ev.CallKey += "\xc3\x28" }, nil, sqlState("22021")},
		{"invalid UTF-8 in raw (22021)", func(ev *schemas.CallEvent) { ev.Raw = []byte("{\"id\":\"x\",\"name\":\"Zo\xeb\"}") }, nil, sqlState("22021")},
		{`\u0000 in raw (22P05)`, func(ev *schemas.CallEvent) { ev.Raw = []byte(`{"id":"x","note":"a\u0000b"}`) }, nil, sqlState("22P05")},
		{"call_key too long for the key's index (54000)", func(ev *schemas.CallEvent) { ev.CallKey = incompressible(9000) }, nil, sqlState("54000")},
	}
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		var evs []schemas.CallEvent
		want := map[int]refusal{}
		for i, tc := range rows {
			evs = append(evs, callEvent(fmt.Sprintf("good-%02d", i), 1))
			bad := callEvent(fmt.Sprintf("bad-%02d", i), 1)
			tc.mutate(&bad)
			cause := tc.pgCause
			if s.Dialect() == DialectSQLite {
				cause = tc.sqliteCause
			}
			if cause != nil {
				want[len(evs)] = refusal{tc.name, cause}
			}
			evs = append(evs, bad)
		}
		err := s.HandleBatch(ctx, deliveries(evs...))
		requireRefused(t, err, want)
		// What SQLite accepts (it checks no encoding, and has no integer
		// or index size limits that low) is stored with the valid rows.
		if got, wantRows := len(readRows(t, s)), len(evs)-len(want); got != wantRows {
			t.Errorf("%d rows stored, want the %d not refused", got, wantRows)
		}
	})
}

// incompressible returns n pseudo-random letters: a long key PostgreSQL
// cannot compress into its index.
func incompressible(n int) string {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

// openSQLiteStore opens a store on a fresh SQLite file with busyTimeout.
func openSQLiteStore(t *testing.T, busyTimeout time.Duration) *Store {
	t.Helper()
	cfg := testConfig(sqliteDSN(t))
	cfg.BusyTimeout = busyTimeout
	s, err := Open(context.Background(), cfg, consumers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// lockSQLite takes the write lock of the store's file from another
// connection, as another process would, until unlock.
func lockSQLite(t testing.TB, s *Store) (unlock func()) {
	t.Helper()
	return lockSQLiteFile(t, s.target.path)
}

// lockSQLiteFile takes the write lock of the SQLite file at path until
// unlock.
func lockSQLiteFile(t testing.TB, path string) (unlock func()) {
	t.Helper()
	// busy_timeout: the store may be in a transaction; the lock is taken
	// between two.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		_ = conn.Close()
		_ = other.Close()
	}
}

// lockPostgres locks call_logs (of dsn's schema) against every access from
// another session until unlock.
func lockPostgres(t testing.TB, dsn string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE call_logs IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatalf("lock call_logs: %v", err)
	}
	return func() {
		_ = tx.Rollback(ctx)
		_ = conn.Close(ctx)
	}
}

// waitForLockWait waits until a session of application app on the server of
// dsn waits for a lock, and returns its process id.
func waitForLockWait(t testing.TB, dsn, app string) (pid uint32) {
	t.Helper()
	return waitForSession(t, dsn, app, "wait_event_type = 'Lock'")
}

// waitForSession waits until a session of application app on the server of
// dsn matches the pg_stat_activity condition where, and returns its process id.
func waitForSession(t testing.TB, dsn, app, where string) (pid uint32) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND `+where+` LIMIT 1`, app).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session of %s matched %q within 30s", app, where)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// whileWaitingForLock runs HandleBatch on a store of application app that
// waits for lockPostgres's lock, calls during once it waits, and returns
// HandleBatch's error.
func whileWaitingForLock(t *testing.T, dsn string, during func(pid uint32)) error {
	t.Helper()
	app := fmt.Sprintf("storage-wait-%d", time.Now().UnixNano())
	s := openStore(t, dsn+"&application_name="+app)
	unlock := lockPostgres(t, dsn)
	defer unlock()
	done := make(chan error, 1)
	go func() { done <- s.HandleBatch(context.Background(), deliveries(callEvent("wait-1", 1))) }()
	during(waitForLockWait(t, dsn, app))
	return <-done
}

// whileSleepingInStatement runs HandleBatch on a store of the server of dsn
// whose insert into call_logs sleeps in a trigger, calls during once the
// statement sleeps, and returns HandleBatch's error.
func whileSleepingInStatement(t *testing.T, dsn string, during func()) error {
	t.Helper()
	app := fmt.Sprintf("storage-sleep-%d", time.Now().UnixNano())
	s := openStore(t, dsn+"&application_name="+app)
	execSQL(t, s, `CREATE FUNCTION sleep_row() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(120); RETURN NEW; END $$`)
	execSQL(t, s, `CREATE TRIGGER sleep_row BEFORE INSERT ON call_logs
		FOR EACH ROW EXECUTE FUNCTION sleep_row()`)
	done := make(chan error, 1)
	go func() { done <- s.HandleBatch(context.Background(), deliveries(callEvent("sleep-1", 1))) }()
	waitForSession(t, dsn, app, "wait_event = 'PgSleep'")
	during()
	return <-done
}
