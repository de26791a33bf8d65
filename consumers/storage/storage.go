package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/cenkalti/backoff/v4"
)

// backend is one SQL dialect's way to write rows.
type backend interface {
	// writeBatch upserts rows (at most one per (org, call_key)) in one
	// transaction and returns how many rows it inserted or changed.
	writeBatch(ctx context.Context, rows []row) (int64, error)
	// writeEach upserts rows one by one inside one transaction, each in its
	// own savepoint, so a row the database rejects does not stop the
	// others. rowErrs[i] is rows[i]'s rejection; err fails all of them.
	writeEach(ctx context.Context, rows []row) (rowErrs []error, applied int64, err error)
	// rejectsRow reports whether err is the database refusing a row's
	// content (a constraint or a value it cannot hold), which retrying
	// cannot fix, rather than a failure of the database itself, which
	// passes. Everything it does not claim is treated as the latter.
	rejectsRow(err error) bool
	// count returns the rows of org with a creation_time in [start, end).
	count(ctx context.Context, org string, start, end time.Time) (int64, error)
	close() error
}

// Store is the storage consumer: it upserts call events into the call_logs
// table of a SQLite or PostgreSQL database, one transaction per batch. It
// implements consumers.Plugin, BatchHandler, Tuner and Closer.
type Store struct {
	cfg     Config
	target  target
	db      backend
	log     *slog.Logger
	metrics *metrics
}

// Factory returns the storage consumer's factory, named "storage".
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{
		Name: "storage",
		New: func(deps consumers.Deps) (consumers.Plugin, error) {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.connectTimeout())
			defer cancel()
			return Open(ctx, cfg, deps)
		},
	}
}

// Open connects to the database named by cfg.EffectiveDSN, runs the pending
// schema migrations and returns the consumer. Only deps.Logger and
// deps.Registerer are used; both may be nil.
func Open(ctx context.Context, cfg Config, deps consumers.Deps) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t, err := parseDSN(cfg.EffectiveDSN())
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	// A database that is starting, or a SQLite file another process holds
	// locked (a backup), is waited for up to connect_timeout (ctx), as the
	// runtime waits out a failing database later: the process must not
	// exit for it. A DSN that does not parse fails at once.
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(3*time.Second), backoff.WithMaxElapsedTime(0))
	var last error
	db, err := backoff.RetryNotifyWithData(func() (db backend, err error) {
		if t.dialect == DialectSQLite {
			db, err = openSQLite(ctx, t, cfg)
		} else {
			db, err = openPostgres(ctx, t, cfg)
		}
		last = err
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			last = perm.Err
		}
		return db, err
	}, backoff.WithContext(bo, ctx), func(err error, wait time.Duration) {
		log.Warn("storage: database not ready; retrying", "database", t.redacted, "err", err, "retry_in", wait.Round(time.Millisecond).String())
	})
	if err != nil {
		if last != nil {
			err = last // what the database said, not that the wait ran out
		}
		return nil, err
	}
	log.Info("storage: database ready", "dialect", t.dialect, "database", t.redacted)
	return &Store{cfg: cfg, target: t, db: db, log: log, metrics: m}, nil
}

// Name is "storage".
func (s *Store) Name() string { return "storage" }

// Dialect is DialectSQLite or DialectPostgres.
func (s *Store) Dialect() string { return s.target.dialect }

// Tuning asks for batches of cfg.BatchSize events or cfg.BatchWait.
func (s *Store) Tuning() consumers.Tuning {
	return consumers.Tuning{MaxInFlight: s.cfg.MaxInFlight, BatchSize: s.cfg.BatchSize, BatchWait: s.cfg.BatchWait}
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.close(); err != nil {
		return fmt.Errorf("storage: close %s: %w", s.target.redacted, err)
	}
	return nil
}

// HandleBatch upserts the batch in one transaction: for each (org,
// call_key) the stored row moves only to a higher revision. When it returns
// nil the batch is durable.
//
// Every error is classified for the runtime. When the database refuses some
// rows' content (a constraint, a value it cannot hold: see rejectsRow), the
// others are still committed and the refused ones come back as
// consumers.Permanent errors in a *consumers.ItemErrors: retrying cannot
// change them. Any other error is the database's (unreachable, shutting
// down, locked past busy_timeout, out of disk, a timeout) and is returned as
// consumers.Transient for the whole batch, so the runtime holds the batch
// and retries it for as long as the database takes to come back instead of
// dead-lettering events an outage merely delayed. The next attempt needs
// nothing from the last: pgxpool replaces connections it finds dead, and
// SQLite opens its connection again (see sqliteDB).
func (s *Store) HandleBatch(ctx context.Context, batch []consumers.Delivery) error {
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	rows := latestPerKey(batch)
	applied, err := s.db.writeBatch(ctx, rows)
	if err == nil {
		s.metrics.observe(start, "ok", len(batch), applied, 0)
		return nil
	}
	if !s.db.rejectsRow(err) {
		s.metrics.observe(start, "error", len(batch), 0, 0)
		return consumers.Transient(fmt.Errorf("storage: write batch of %d events to %s: %w", len(batch), s.target.redacted, err))
	}
	// Some row is refused: write them one by one to find which.
	s.log.Warn("storage: batch refused, writing its events one by one", "events", len(batch), "err", err)
	all := allRows(batch)
	rowErrs, applied, err := s.db.writeEach(ctx, all)
	if err != nil {
		s.metrics.observe(start, "error", len(batch), 0, 0)
		return consumers.Transient(fmt.Errorf("storage: write %d events one by one to %s: %w", len(batch), s.target.redacted, err))
	}
	failed := consumers.ItemErrors{}
	for i, rerr := range rowErrs {
		if rerr == nil {
			continue
		}
		ev := all[i].ev
		failed[all[i].idx] = consumers.Permanent(fmt.Errorf("storage: %s refused event %s (org %q, call_key %q, revision %d): %w",
			s.target.dialect, ev.EventID, ev.Org, ev.CallKey, ev.Revision, rerr))
	}
	if len(failed) == 0 {
		s.metrics.observe(start, "ok", len(batch), applied, 0)
		return nil
	}
	s.metrics.observe(start, "partial", len(batch), applied, len(failed))
	return &failed
}

func (c Config) connectTimeout() time.Duration {
	if c.ConnectTimeout <= 0 {
		return 30 * time.Second
	}
	return c.ConnectTimeout
}

// Validate reports what Open would refuse without connecting: the batch
// settings and the DSN.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	_, err := parseDSN(c.EffectiveDSN())
	return err
}

func (c Config) validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("storage: batch_size %d is negative", c.BatchSize))
	}
	if c.MaxInFlight != 0 && c.BatchSize > 0 && c.MaxInFlight < c.BatchSize {
		errs = append(errs, fmt.Errorf("storage: max_in_flight %d is below batch_size %d: batches could never fill", c.MaxInFlight, c.BatchSize))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("storage: max_conns %d is negative", c.MaxConns))
	}
	return errors.Join(errs...)
}
