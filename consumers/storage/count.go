package storage

import (
	"context"
	"fmt"
	"os"
	"time"
)

// CountCalls returns how many calls of org call_logs holds with a
// creation_time in [start, end), for the completeness audit (`callstream
// audit`). call_logs has one row per (org, call_key), so that is the
// number of distinct calls stored; the call_logs_org_creation_time index
// answers it without reading rows.
func (s *Store) CountCalls(ctx context.Context, org string, start, end time.Time) (int64, error) {
	n, err := s.db.count(ctx, org, start, end)
	if err != nil {
		return 0, fmt.Errorf("storage: count calls of org %q in [%s, %s) in %s: %w", org,
			start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), s.target.redacted, err)
	}
	return n, nil
}

// ExistingSQLite reports, for a SQLite DSN, whether its file exists, so
// that a read-only command can tell "nothing stored" from "no database
// here" (Open would create the file). For a PostgreSQL DSN it reports true.
func (c Config) ExistingSQLite() (path string, exists bool, err error) {
	t, err := parseDSN(c.EffectiveDSN())
	if err != nil {
		return "", false, err
	}
	if t.dialect != DialectSQLite {
		return "", true, nil
	}
	_, err = os.Stat(t.path)
	return t.path, err == nil, nil
}

func (s *sqliteDB) count(ctx context.Context, org string, start, end time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	err := s.use(ctx, func(c *sqliteConn) error {
		// Times are fixed-width UTC text, so text order is time order.
		return c.db.QueryRowContext(ctx,
			`SELECT count(*) FROM call_logs WHERE org = ? AND creation_time >= ? AND creation_time < ?`,
			org, formatSQLiteTime(start), formatSQLiteTime(end)).Scan(&n)
	})
	return n, err
}

func (p *postgresDB) count(ctx context.Context, org string, start, end time.Time) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx,
		`SELECT count(*) FROM call_logs WHERE org = $1 AND creation_time >= $2 AND creation_time < $3`,
		org, start.UTC(), end.UTC()).Scan(&n)
	return n, err
}
