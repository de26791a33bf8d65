package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
)

// TestOpenWaitsForALockedFile: a SQLite file another connection holds
// locked (a backup, a long transaction) when the consumer starts is waited
// for, well past busy_timeout, instead of failing the process.
func TestOpenWaitsForALockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.db")
	dsn := "sqlite://" + path
	openStore(t, dsn).Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(1500*time.Millisecond, func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") })
	cfg := testConfig(dsn)
	cfg.BusyTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, cfg, consumers.Deps{})
	if err != nil {
		t.Fatalf("Open while the file was locked for 1.5 s: %v", err)
	}
	defer s.Close()
	if el := time.Since(start); el < time.Second {
		t.Fatalf("Open returned after %s: the lock was not in its way, the test proves nothing", el)
	}
}

// TestMaxConns: max_conns sizes the PostgreSQL pool; 0 leaves pgx's
// default.
func TestMaxConns(t *testing.T) {
	dsn := postgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ set, want int32 }{{3, 3}, {1, 1}} {
		cfg := testConfig(dsn)
		cfg.MaxConns = int(tc.set)
		s, err := Open(ctx, cfg, consumers.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.db.(*postgresDB).pool.Config().MaxConns; got != tc.want {
			t.Errorf("max_conns %d: pool of %d", tc.set, got)
		}
		_ = s.Close()
	}
	cfg := testConfig(dsn)
	cfg.MaxConns = 0
	s, err := Open(ctx, cfg, consumers.Deps{}) // a pool of 0 would wait for a connection until ctx ends
	if err != nil {
		t.Fatalf("max_conns 0: %v", err)
	}
	defer s.Close()
	if got := s.db.(*postgresDB).pool.Config().MaxConns; got < 1 {
		t.Errorf("max_conns 0: pool of %d, want pgx's default", got)
	}
}

// TestBusyTimeout: busy_timeout reaches SQLite's connection; 0 takes the
// 5 s default rather than failing at once on a lock another process holds.
func TestBusyTimeout(t *testing.T) {
	for _, tc := range []struct {
		set  time.Duration
		want int
	}{{0, 5000}, {1500 * time.Millisecond, 1500}} {
		cfg := testConfig(sqliteDSN(t))
		cfg.BusyTimeout = tc.set
		s, err := Open(context.Background(), cfg, consumers.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		var ms int
		if err := sqliteOf(t, s.db.(*sqliteDB)).QueryRow(`PRAGMA busy_timeout`).Scan(&ms); err != nil {
			t.Fatal(err)
		}
		if ms != tc.want {
			t.Errorf("busy_timeout %s: SQLite waits %d ms, want %d", tc.set, ms, tc.want)
		}
		_ = s.Close()
	}
}
