package storage

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/testenv"
)

// TestOutageNothingDeadLettered is issue 14's outage end to end: the real
// consumer runtime and Kafka subscriber with the storage plug-in, while
// events keep arriving on the real broker, the database is away: a private
// PostgreSQL stopped for 60 s, or the SQLite file locked by another
// connection for 45 s (with a busy_timeout of 200 ms, far past the
// runtime's retries of an error not marked transient, which would
// dead-letter within some 15 s). Nothing goes to the DLQ (the plug-in reports the
// outage as transient, and the runtime holds the events and retries), and
// once the database is back every call is stored at its latest revision.
//
// It needs the batch runtime that retries consumers.Transient errors for as
// long as it takes (on main since consumers.IsTransient); the runtime before
// it dead-letters after its retries and fails this test.
func TestOutageNothingDeadLettered(t *testing.T) {
	brokers := testenv.Kafka(t)
	outages := []struct {
		name string
		// open returns the database's DSN and how to take it away and back.
		open   func(t *testing.T) (dsn string, begin, end func())
		length time.Duration
	}{
		{"postgres/server stopped", func(t *testing.T) (string, func(), func()) {
			pg := startPrivatePostgres(t)
			return pg.dsn, pg.stop, pg.start
		}, 60 * time.Second},
		{"sqlite/file locked", func(t *testing.T) (string, func(), func()) {
			dsn := sqliteDSN(t)
			tgt, err := parseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			var unlock func()
			return dsn, func() { unlock = lockSQLiteFile(t, tgt.path) }, func() { unlock() }
		}, 45 * time.Second},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			dsn, begin, end := o.open(t)
			prefix := testenv.Prefix(t)
			topics := createTopics(t, brokers, prefix, 4)
			evs, latest := crashEvents(20_000)
			var revisions int64
			for _, ev := range latest {
				revisions += int64(ev.Revision)
			}
			half := len(evs) / 2
			publish(t, brokers, topics.Calls, evs[:half])

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			go func() {
				done <- runConsumer(ctx, brokers, prefix, dsn, 500, logger, prometheus.NewRegistry(),
					func(c *Config) { c.BusyTimeout = 200 * time.Millisecond })
			}()
			waitFor(t, dsn, 2*time.Minute, "the first rows stored", func(rows, _ int64) bool { return rows > 0 })

			begin()
			down := time.Now()
			// Events keep coming while the database is away.
			publish(t, brokers, topics.Calls, evs[half:])
			time.Sleep(o.length - time.Since(down))
			if dlq := topicSize(t, brokers, topics.DLQ); dlq != 0 {
				t.Errorf("%d records in the DLQ during the outage, want none", dlq)
			}
			end()
			t.Logf("the database was away for %v", time.Since(down).Round(time.Second))

			waitFor(t, dsn, 3*time.Minute, "every call at its highest revision", func(rows, revs int64) bool {
				return rows == int64(len(latest)) && revs == revisions
			})
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer: %v", err)
			}
			if dlq := topicSize(t, brokers, topics.DLQ); dlq != 0 {
				t.Errorf("%d records in the DLQ, want none", dlq)
			}
			rows := readAll(t, openStore(t, dsn))
			for key, want := range latest {
				if got, ok := rows[key]; !ok || got.Revision != want.Revision || got.EventID != want.EventID {
					t.Errorf("%s holds revision %d (present %v), want %d", key, got.Revision, ok, want.Revision)
				}
			}
		})
	}
}
