package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// The behavioural suite: every test runs against SQLite (a temporary file)
// and PostgreSQL (the real server of testenv.Postgres).

func forEachDialect(t *testing.T, test func(t *testing.T, dsn string)) {
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) { test(t, d.dsn(t)) })
	}
}

func handle(t testing.TB, s *Store, evs ...schemas.CallEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.HandleBatch(ctx, deliveries(evs...)); err != nil {
		t.Fatalf("HandleBatch(%d events): %v", len(evs), err)
	}
}

func TestUpsertKeepsHighestRevision(t *testing.T) {
	tieLow, tieHigh := callEvent("call-t", 2), callEvent("call-t", 2)
	tieLow.EventID, tieHigh.EventID = "00000000-0000-5000-8000-000000000001", "ffffffff-0000-5000-8000-000000000001"
	tieLow.EndReason, tieHigh.EndReason = "low", "high"
	tests := []struct {
		name    string
		batches [][]schemas.CallEvent
		want    schemas.CallEvent
	}{
		{"in order, one batch each", [][]schemas.CallEvent{{callEvent("call-a", 1)}, {callEvent("call-a", 2)}, {callEvent("call-a", 3)}}, callEvent("call-a", 3)},
		{"reversed, one batch each", [][]schemas.CallEvent{{callEvent("call-a", 3)}, {callEvent("call-a", 2)}, {callEvent("call-a", 1)}}, callEvent("call-a", 3)},
		{"shuffled in one batch", [][]schemas.CallEvent{{callEvent("call-a", 2), callEvent("call-a", 4), callEvent("call-a", 1), callEvent("call-a", 3)}}, callEvent("call-a", 4)},
		{"older batch after newer", [][]schemas.CallEvent{{callEvent("call-a", 5), callEvent("call-a", 4)}, {callEvent("call-a", 1), callEvent("call-a", 2)}}, callEvent("call-a", 5)},
		{"same revision twice", [][]schemas.CallEvent{{callEvent("call-a", 2)}, {callEvent("call-a", 2)}}, callEvent("call-a", 2)},
		{"equal revisions, greater event id wins", [][]schemas.CallEvent{{tieHigh}, {tieLow}}, tieHigh},
		{"equal revisions, greater event id wins, other order", [][]schemas.CallEvent{{tieLow}, {tieHigh}}, tieHigh},
		{"equal revisions in one batch", [][]schemas.CallEvent{{tieHigh, tieLow}}, tieHigh},
	}
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// A key per case, so the cases share one database.
				key := fmt.Sprintf("%s-%d", tc.want.CallKey, i)
				want := tc.want
				want.CallKey = key
				for _, b := range tc.batches {
					for j := range b {
						b[j].CallKey = key
					}
					handle(t, s, b...)
				}
				got, ok := readAll(t, s)[key]
				if !ok {
					t.Fatalf("no row for %s", key)
				}
				if got.Revision != want.Revision || got.EventID != want.EventID || got.EndReason != want.EndReason {
					t.Errorf("row holds revision %d event %s (%s), want revision %d event %s (%s)",
						got.Revision, got.EventID, got.EndReason, want.Revision, want.EventID, want.EndReason)
				}
			})
		}
	})
}

// TestReplayShuffled is evidence 2: the same 10,000 events delivered twice,
// each time in a random order, leave exactly one row per call at its highest
// revision, holding that revision's content.
func TestReplayShuffled(t *testing.T) {
	const events = 10_000
	rng := rand.New(rand.NewPCG(1, 2))
	var all []schemas.CallEvent
	latest := map[string]schemas.CallEvent{}
	for c := 0; len(all) < events; c++ {
		key := fmt.Sprintf("replay-%05d", c)
		revs := 1 + rng.IntN(4)
		for r := 1; r <= revs && len(all) < events; r++ {
			ev := callEvent(key, r)
			all = append(all, ev)
			latest[key] = ev
		}
	}
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		for pass := range 2 {
			evs := append([]schemas.CallEvent(nil), all...)
			rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			for len(evs) > 0 {
				n := min(len(evs), 1+rng.IntN(700))
				handle(t, s, evs[:n]...)
				evs = evs[n:]
			}
			rows := readAll(t, s)
			if len(rows) != len(latest) {
				t.Fatalf("pass %d: %d rows, want one per call: %d", pass+1, len(rows), len(latest))
			}
			for key, want := range latest {
				got := rows[key]
				if got.Revision != want.Revision || got.EventID != want.EventID || got.CallStatus != want.CallStatus ||
					got.CallDurationSeconds != want.CallDurationSeconds || !sameJSON(t, got.Raw, want.Raw) {
					t.Fatalf("pass %d: %s holds revision %d (%s, %ds), want %d (%s, %ds)", pass+1, key,
						got.Revision, got.CallStatus, got.CallDurationSeconds, want.Revision, want.CallStatus, want.CallDurationSeconds)
				}
			}
		}
	})
}

func TestFieldsRoundTrip(t *testing.T) {
	noNulls := callEvent("rt-full", 1)
	nulls := callEvent("rt-null", 1)
	nulls.CallID, nulls.StartTime, nulls.EndTime = nil, nil, nil
	zoned := callEvent("rt-zone", 1)
	berlin := time.FixedZone("CET", 3600)
	zoned.CreationTime = zoned.CreationTime.In(berlin)
	emptyID := callEvent("rt-empty", 1)
	emptyID.CallID = new(string)
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		handle(t, s, noNulls, nulls, zoned, emptyID)
		rows := readAll(t, s)
		for _, want := range []schemas.CallEvent{noNulls, nulls, zoned, emptyID} {
			got := rows[want.CallKey]
			if !equalPtr(got.CallID, want.CallID) {
				t.Errorf("%s: call_id %v, want %v", want.CallKey, show(got.CallID), show(want.CallID))
			}
			if !equalTime(got.StartTime, want.StartTime) || !equalTime(got.EndTime, want.EndTime) {
				t.Errorf("%s: start/end %v/%v, want %v/%v", want.CallKey, show(got.StartTime), show(got.EndTime), show(want.StartTime), show(want.EndTime))
			}
			if !got.CreationTime.Equal(want.CreationTime) || !got.ObservedAt.Equal(want.ObservedAt) {
				t.Errorf("%s: creation/observed %v/%v, want %v/%v", want.CallKey, got.CreationTime, got.ObservedAt, want.CreationTime, want.ObservedAt)
			}
			if got.Org != want.Org || got.SourceNumber != want.SourceNumber || got.DestinationNumber != want.DestinationNumber ||
				got.CallType != want.CallType || got.CallStatus != want.CallStatus || got.EndReason != want.EndReason ||
				got.CallDurationSeconds != want.CallDurationSeconds {
				t.Errorf("%s: row %+v does not match event %+v", want.CallKey, got, want)
			}
		}
	})
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func show[T any](p *T) string {
	if p == nil {
		return "NULL"
	}
	return fmt.Sprint(*p)
}

// TestExtremeValuesRoundTrip: times far from now (before 1970, before
// 2000, PostgreSQL's epoch, and at the ends of the range the API can
// express), the largest revision and duration, and an absent raw record
// come back as written: PostgreSQL keeps microseconds (the rest is cut, as
// pgx does), SQLite every nanosecond.
func TestExtremeValuesRoundTrip(t *testing.T) {
	times := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 2, 28, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 123_456_789, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999_999_000, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 1_000, time.UTC),
		time.Date(2026, 11, 27, 9, 0, 0, 123_456_789, time.FixedZone("x", -7*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
	}
	var evs []schemas.CallEvent
	for i, tm := range times {
		ev := callEvent(fmt.Sprintf("extreme-%d", i), 1)
		ev.CreationTime, ev.ObservedAt = tm, tm
		start := tm.Add(-time.Hour)
		ev.StartTime, ev.EndTime = &start, nil
		evs = append(evs, ev)
	}
	big := callEvent("extreme-big", 1<<31-1)
	big.CallDurationSeconds = 1 << 40
	big.Raw = nil
	evs = append(evs, big)
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		handle(t, s, evs...)
		rows := readAll(t, s)
		precision := time.Nanosecond
		if s.Dialect() == DialectPostgres {
			precision = time.Microsecond
		}
		for _, want := range evs {
			got := rows[want.CallKey]
			for _, c := range []struct {
				name      string
				got, want *time.Time
			}{
				{"creation_time", &got.CreationTime, &want.CreationTime},
				{"observed_at", &got.ObservedAt, &want.ObservedAt},
				{"start_time", got.StartTime, want.StartTime},
				{"end_time", got.EndTime, want.EndTime},
			} {
				if c.want == nil {
					if c.got != nil {
						t.Errorf("%s: %s %v, want NULL", want.CallKey, c.name, *c.got)
					}
					continue
				}
				if w := c.want.Truncate(precision); c.got == nil || !c.got.Equal(w) {
					t.Errorf("%s: %s %v, want %v", want.CallKey, c.name, show(c.got), w)
				}
			}
			if got.Revision != want.Revision || got.CallDurationSeconds != want.CallDurationSeconds {
				t.Errorf("%s: revision %d duration %d, want %d and %d", want.CallKey, got.Revision, got.CallDurationSeconds, want.Revision, want.CallDurationSeconds)
			}
		}
		if raw := rows["extreme-big"].Raw; string(raw) != "null" {
			t.Errorf("an absent raw record is stored as %s, want JSON null", raw)
		}
	})
}

func TestRawJSONRoundTrip(t *testing.T) {
	raws := map[string]string{
		"raw-nested":  `{"id":"x1","call_status":"no-answer","meta":{"tags":["a","b"],"score":1.5,"ok":true,"none":null}}`,
		"raw-unicode": `{"name":"Zoë \u00e9 日本 \ud83d\ude00","quote":"a \"q\" \\ b"}`,
		"raw-bignum":  `{"n":12345678901234567890,"f":0.1}`,
		"raw-empty":   `{}`,
	}
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		var evs []schemas.CallEvent
		for key, raw := range raws {
			ev := callEvent(key, 1)
			ev.Raw = []byte(raw)
			evs = append(evs, ev)
		}
		handle(t, s, evs...)
		rows := readAll(t, s)
		for key, raw := range raws {
			got := rows[key].Raw
			if s.Dialect() == DialectSQLite && string(got) != raw {
				t.Errorf("%s: SQLite raw %s, want the bytes sent %s", key, got, raw)
			}
			if !sameJSON(t, got, []byte(raw)) {
				t.Errorf("%s: raw %s, want %s", key, got, raw)
			}
		}
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		first, err := Open(ctx, testConfig(dsn), consumers.Deps{})
		if err != nil {
			t.Fatalf("first Open: %v", err)
		}
		handle(t, first, callEvent("mig-1", 2))
		if err := first.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Two at once, as two consumers of a group starting together.
		var wg sync.WaitGroup
		stores := make([]*Store, 2)
		errs := make([]error, 2)
		for i := range stores {
			wg.Go(func() { stores[i], errs[i] = Open(ctx, testConfig(dsn), consumers.Deps{}) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Open again (%d): %v", i, err)
			}
			t.Cleanup(func() { _ = stores[i].Close() })
		}
		s := stores[0]
		if got := readAll(t, s)["mig-1"]; got.Revision != 2 {
			t.Errorf("after reopening, mig-1 holds revision %d, want 2", got.Revision)
		}
		ms, err := loadMigrations(s.Dialect())
		if err != nil {
			t.Fatal(err)
		}
		var n, maxV int
		switch db := s.db.(type) {
		case *sqliteDB:
			err = sqliteOf(t, db).QueryRowContext(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV)
		case *postgresDB:
			err = db.pool.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV)
		}
		if err != nil {
			t.Fatalf("read schema_migrations: %v", err)
		}
		if n != len(ms) || maxV != ms[len(ms)-1].version {
			t.Errorf("schema_migrations has %d rows up to version %d, want %d up to %d", n, maxV, len(ms), ms[len(ms)-1].version)
		}
	})
}

// TestDatabaseErrorFailsBatch: when the database itself fails (here the
// table is gone), the whole batch fails with a transient error, and a retry
// after the database is back stores it.
func TestDatabaseErrorFailsBatch(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		execSQL(t, s, `ALTER TABLE call_logs RENAME TO call_logs_away`)
		batch := deliveries(callEvent("dberr-1", 1), callEvent("dberr-2", 1))
		err := s.HandleBatch(context.Background(), batch)
		if err == nil {
			t.Fatal("HandleBatch without a table succeeded")
		}
		requireTransient(t, err)
		execSQL(t, s, `ALTER TABLE call_logs_away RENAME TO call_logs`)
		if err := s.HandleBatch(context.Background(), batch); err != nil {
			t.Fatalf("retry after the table is back: %v", err)
		}
		if rows := readAll(t, s); len(rows) != 2 {
			t.Errorf("%d rows after the retry, want 2", len(rows))
		}
	})
}

// TestRefusedRowFailsOnlyItself: rows that break a constraint come back as
// permanent item errors; the rest of the batch is stored.
func TestRefusedRowFailsOnlyItself(t *testing.T) {
	good := func(k string) schemas.CallEvent { return callEvent(k, 1) }
	badRevision := callEvent("bad-rev", 1)
	badRevision.Revision = 0
	badRaw := callEvent("bad-raw", 1)
	badRaw.Raw = []byte(`{"not json`)
	negDuration := callEvent("bad-dur", 1)
	negDuration.CallDurationSeconds = -5
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		batch := deliveries(good("ok-0"), good("ok-1"), badRevision, good("ok-3"), badRaw, negDuration, good("ok-6"))
		err := s.HandleBatch(context.Background(), batch)
		var items *consumers.ItemErrors
		if !errors.As(err, &items) {
			t.Fatalf("HandleBatch: %v, want *consumers.ItemErrors", err)
		}
		want := map[int]bool{2: true, 4: true, 5: true}
		if len(*items) != len(want) {
			t.Errorf("failed items %v, want %v", err, want)
		}
		for i, ierr := range *items {
			if !want[i] {
				t.Errorf("item %d failed (%v), but it is valid", i, ierr)
			}
			if !consumers.IsPermanent(ierr) {
				t.Errorf("item %d: %v is not permanent", i, ierr)
			}
		}
		rows := readAll(t, s)
		for _, k := range []string{"ok-0", "ok-1", "ok-3", "ok-6"} {
			if _, ok := rows[k]; !ok {
				t.Errorf("valid event %s of the batch was not stored", k)
			}
		}
		if len(rows) != 4 {
			t.Errorf("%d rows, want the 4 valid ones", len(rows))
		}
	})
}

// TestConcurrentBatches: batches handed in at once with overlapping keys in
// different orders (as a runtime with several batches in flight may) neither
// deadlock nor lose the highest revision.
func TestConcurrentBatches(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		const workers, keys, revs = 4, 300, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				var evs []schemas.CallEvent
				for k := range keys {
					evs = append(evs, callEvent(fmt.Sprintf("conc-%04d", k), 1+rng.IntN(revs)))
				}
				rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
				for len(evs) > 0 {
					n := min(len(evs), 50)
					if err := s.HandleBatch(context.Background(), deliveries(evs[:n]...)); err != nil {
						errs <- err
						return
					}
					evs = evs[n:]
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent HandleBatch: %v", err)
		}
		// Now every key gets its top revision; none may be refused or lost.
		var top []schemas.CallEvent
		for k := range keys {
			top = append(top, callEvent(fmt.Sprintf("conc-%04d", k), revs+1))
		}
		handle(t, s, top...)
		rows := readAll(t, s)
		if len(rows) != keys {
			t.Fatalf("%d rows, want %d", len(rows), keys)
		}
		for k, r := range rows {
			if r.Revision != revs+1 {
				t.Errorf("%s at revision %d, want %d", k, r.Revision, revs+1)
			}
		}
	})
}

// TestDatabaseOutage: dialect-specific failures of the database itself (a
// lock held past busy_timeout, the server dropping the connection) fail
// the batch as transient; the next attempt succeeds.
func TestDatabaseOutage(t *testing.T) {
	t.Run("sqlite lock held by another process", func(t *testing.T) {
		dsn := sqliteDSN(t)
		cfg := testConfig(dsn)
		cfg.BusyTimeout = 200 * time.Millisecond
		s, err := Open(context.Background(), cfg, consumers.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		tgt, _ := parseDSN(dsn)
		other, err := sql.Open("sqlite", "file:"+tgt.path)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		other.SetMaxOpenConns(1)
		ctx := context.Background()
		conn, err := other.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatalf("take the write lock: %v", err)
		}
		batch := deliveries(callEvent("lock-1", 1))
		requireTransient(t, s.HandleBatch(ctx, batch))
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		if err := s.HandleBatch(ctx, batch); err != nil {
			t.Fatalf("retry after the lock is released: %v", err)
		}
	})
	t.Run("postgres connection killed", func(t *testing.T) {
		app := fmt.Sprintf("storage-kill-%d", time.Now().UnixNano())
		s := openStore(t, postgresDSN(t)+"&application_name="+app)
		handle(t, s, callEvent("kill-0", 1))
		ctx := context.Background()
		killer, err := pgx.Connect(ctx, testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		defer killer.Close(ctx)
		var n int
		// Kill the pool's server processes; its connection is idle between batches.
		if err := killer.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE pid <> pg_backend_pid() AND application_name = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("no other connection of this pool found to kill")
		}
		batch := deliveries(callEvent("kill-1", 1))
		err = s.HandleBatch(ctx, batch)
		if err == nil {
			// The pool may have noticed the dead connection first; that is fine
			// too, as long as nothing is lost.
			t.Log("the pool replaced the killed connection before the batch")
		} else {
			requireTransient(t, err)
		}
		if err := s.HandleBatch(ctx, batch); err != nil {
			t.Fatalf("retry after the connection was killed: %v", err)
		}
		if rows := readAll(t, s); len(rows) != 2 {
			t.Errorf("%d rows, want 2", len(rows))
		}
	})
}

// TestQueries runs the kind of queries doc.go shows: raw is queryable JSON
// (jsonb in PostgreSQL), times compare as times, the filters find rows.
func TestQueries(t *testing.T) {
	failed := callEvent("q-1", 1) // revision 1 is failed
	failed.Org = "acme"
	later := callEvent("q-2", 1) // failed, but two days later
	later.Org = "acme"
	later.CreationTime = failed.CreationTime.Add(48 * time.Hour)
	completed := callEvent("q-3", 2) // revision 2 is completed
	completed.Org = "acme"
	elsewhere := callEvent("q-4", 1) // failed, same day, another org
	queries := map[string]struct{ from, to, jsonID string }{
		DialectSQLite:   {"'2026-11-27T00:00:00.000000000Z'", "'2026-11-28T00:00:00.000000000Z'", "json_extract(raw, '$.id')"},
		DialectPostgres: {"'2026-11-27T00:00:00Z'", "'2026-11-28T00:00:00Z'", "raw->>'id'"},
	}
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		if failed.CallStatus != schemas.StatusFailed || completed.CallStatus == schemas.StatusFailed || elsewhere.Org == "acme" {
			t.Fatal("the test events do not have the statuses this test needs")
		}
		handle(t, s, failed, later, completed, elsewhere)
		q := queries[s.Dialect()]
		sqlText := `SELECT count(*) OVER (), call_key, ` + q.jsonID + ` FROM call_logs
			WHERE org = 'acme' AND creation_time >= ` + q.from + ` AND creation_time < ` + q.to + `
			AND call_status = 'failed' ORDER BY creation_time`
		var n int
		var key, id string
		var err error
		switch db := s.db.(type) {
		case *sqliteDB:
			err = sqliteOf(t, db).QueryRowContext(context.Background(), sqlText).Scan(&n, &key, &id)
		case *postgresDB:
			err = db.pool.QueryRow(context.Background(), sqlText).Scan(&n, &key, &id)
		}
		if err != nil {
			t.Fatalf("%s: %v", sqlText, err)
		}
		if n != 1 || key != "q-1" || id != "q-1" {
			t.Errorf("query found %d rows, first %s (raw id %s), want only q-1", n, key, id)
		}
	})
}

// TestEventOutcomeMetrics: each event of a written batch is counted once,
// as applied (a row inserted or moved to a newer revision), superseded
// (an equal or newer revision was stored or in the batch) or refused.
func TestEventOutcomeMetrics(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		handle(t, s, callEvent("m-a", 1), callEvent("m-a", 2), callEvent("m-b", 1)) // a@1 superseded in the batch
		handle(t, s, callEvent("m-a", 1))                                           // older than the stored row
		bad := callEvent("m-bad", 1)
		bad.Revision = 0
		if err := s.HandleBatch(context.Background(), deliveries(callEvent("m-c", 1), bad)); err == nil {
			t.Fatal("a batch with a refused row succeeded")
		}
		for outcome, want := range map[string]float64{"applied": 3, "superseded": 2, "refused": 1} {
			if got := testutil.ToFloat64(s.metrics.events.WithLabelValues(outcome)); got != want {
				t.Errorf("events{outcome=%s} = %v, want %v", outcome, got, want)
			}
		}
		for result, want := range map[string]float64{"ok": 2, "partial": 1, "error": 0} {
			if got := testutil.ToFloat64(s.metrics.batches.WithLabelValues(result)); got != want {
				t.Errorf("batches{result=%s} = %v, want %v", result, got, want)
			}
		}
	})
}

// TestValidBatchIsWrittenAtOnce: a batch the database accepts goes in one
// statement (PostgreSQL: one binary COPY and one upsert), never through the
// one-by-one fallback, which would hide a broken COPY encoding behind a
// slower path that still stores everything.
func TestValidBatchIsWrittenAtOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		var log bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := Open(ctx, testConfig(dsn), consumers.Deps{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		var evs []schemas.CallEvent
		for i := range 50 {
			e := callEvent(fmt.Sprintf("once-%d", i), 1+i%3)
			if i%5 == 0 {
				e.CallID, e.StartTime, e.EndTime, e.Raw = nil, nil, nil, nil
			}
			evs = append(evs, e)
		}
		handle(t, s, evs...)
		if strings.Contains(log.String(), "one by one") {
			t.Fatalf("a valid batch fell back to one-by-one writes:\n%s", log.String())
		}
		if n := len(readAll(t, s)); n != len(evs) {
			t.Fatalf("%d rows stored, want %d", n, len(evs))
		}
	})
}
