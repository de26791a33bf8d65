package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// outageEvents returns n events over fewer calls in two orgs (some calls
// with several revisions, delivered in order) and the latest of each call.
func outageEvents(n int) ([]schemas.CallEvent, map[callRef]schemas.CallEvent) {
	var evs []schemas.CallEvent
	latest := map[callRef]schemas.CallEvent{}
	for c := 0; len(evs) < n; c++ {
		for r := 1; r <= 1+c%3 && len(evs) < n; r++ {
			ev := callEvent(fmt.Sprintf("outage-%05d", c), r)
			ev.Org = []string{"org-a", "org-b"}[c%2]
			evs = append(evs, ev)
			latest[callRef{ev.Org, ev.CallKey}] = ev
		}
	}
	return evs, latest
}

// attempt is one HandleBatch call of the retry loop.
type attempt struct {
	at  time.Time
	err error
}

// retryLoop hands batches to s as the runtime does with transient errors:
// each batch again and again, with backoff, until it is stored. Before
// batch pauseAt it waits for resume, so that the outage begins there.
func retryLoop(ctx context.Context, s *Store, batches [][]consumers.Delivery, pauseAt int, resume <-chan struct{}, attempts chan<- attempt) {
	defer close(attempts)
	for i, b := range batches {
		if i == pauseAt {
			select {
			case <-resume:
			case <-ctx.Done():
				return
			}
		}
		backoff := 50 * time.Millisecond
		for {
			err := s.HandleBatch(ctx, b)
			attempts <- attempt{time.Now(), err}
			if err == nil || !isTransient(err) || ctx.Err() != nil {
				break // a non-transient error fails the test; no point retrying
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
		}
	}
}

// TestOutageIsTransient is issue 14's outage at the plug-in: while the
// database is down (a private PostgreSQL stopped for 60 s; the SQLite file
// locked by another process for a while), every HandleBatch call returns an
// error of the transient class, so the runtime keeps the events and retries
// instead of dead-lettering them; no row is ever reported permanent; once the
// database is back the plug-in recovers by itself (no reopen by anyone) and
// every call is stored at its latest revision.
func TestOutageIsTransient(t *testing.T) {
	type outage struct {
		name   string
		open   func(t *testing.T) (s *Store, begin, end func())
		length time.Duration
	}
	outages := []outage{
		{"postgres/server stopped", func(t *testing.T) (*Store, func(), func()) {
			pg := startPrivatePostgres(t)
			return openStore(t, pg.dsn), pg.stop, pg.start
		}, 60 * time.Second},
		{"sqlite/file locked by another process", func(t *testing.T) (*Store, func(), func()) {
			s := openSQLiteStore(t, 200*time.Millisecond)
			var unlock func()
			return s, func() { unlock = lockSQLite(t, s) }, func() { unlock() }
		}, 5 * time.Second},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			s, begin, end := o.open(t)
			evs, latest := outageEvents(3000)
			var batches [][]consumers.Delivery
			for len(evs) > 0 {
				n := min(len(evs), 100)
				batches = append(batches, deliveries(evs[:n]...))
				evs = evs[n:]
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.length+3*time.Minute)
			defer cancel()
			const pauseAt = 5
			resume := make(chan struct{})
			attempts := make(chan attempt, 1024)
			go retryLoop(ctx, s, batches, pauseAt, resume, attempts)

			var all []attempt
			for range pauseAt {
				a := <-attempts
				if a.err != nil {
					t.Fatalf("before the outage: %v", a.err)
				}
				all = append(all, a)
			}
			begin()
			down := time.Now()
			close(resume)
			var up time.Time
			timer := time.NewTimer(o.length)
		collect:
			for {
				select {
				case a, ok := <-attempts:
					if !ok {
						break collect
					}
					all = append(all, a)
				case <-timer.C:
					end()
					up = time.Now()
				}
			}
			if up.IsZero() {
				t.Fatalf("the loop ended during the outage")
			}
			if ctx.Err() != nil {
				t.Fatalf("the batches were not all stored within %v of the outage's end", time.Since(up).Round(time.Second))
			}

			var during, failed int
			var recovered time.Time
			for _, a := range all {
				if a.err == nil {
					if a.at.After(up) && recovered.IsZero() {
						recovered = a.at
					}
					continue
				}
				failed++
				if a.at.After(down) && a.at.Before(up) {
					during++
				}
				var items *consumers.ItemErrors
				if !isTransient(a.err) || consumers.IsPermanent(a.err) || errors.As(a.err, &items) {
					t.Errorf("at %v into the outage: %v (%T) is not a transient batch error", a.at.Sub(down).Round(time.Millisecond), a.err, a.err)
				}
			}
			t.Logf("%d attempts, %d failed (%d while the database was down), first success %v after it was back",
				len(all), failed, during, recovered.Sub(up).Round(time.Millisecond))
			if during < 3 {
				t.Errorf("only %d attempts failed during the outage: the test did not see it", during)
			}
			if recovered.IsZero() {
				t.Fatal("no batch was stored after the outage")
			}
			// The loop retries at least every second; the rest is the
			// database starting and the plug-in reconnecting.
			if d := recovered.Sub(up); d > 30*time.Second {
				t.Errorf("the first batch after the outage was stored %v after the database was back", d)
			}
			rows := readRows(t, s)
			if len(rows) != len(latest) {
				t.Errorf("%d rows after the outage, want one per call: %d", len(rows), len(latest))
			}
			for ref, want := range latest {
				if got, ok := rows[ref]; !ok || got.Revision != want.Revision || got.EventID != want.EventID {
					t.Errorf("(%s, %s) holds revision %d (present %v), want %d", ref.org, ref.key, got.Revision, ok, want.Revision)
				}
			}
		})
	}
}

// TestSQLiteReopensAfterFailure: a failure may leave SQLite's connection in
// a state no retry on it gets out of, as a COMMIT refused with SQLITE_BUSY
// leaves its transaction open (here one is begun on the store's connection
// by hand). The failed batch is transient, and the next attempt runs on a
// fresh connection and stores it.
func TestSQLiteReopensAfterFailure(t *testing.T) {
	s := openSQLiteStore(t, time.Second)
	execSQL(t, s, `BEGIN`)
	batch := deliveries(callEvent("reopen-1", 1), callEvent("reopen-2", 1))
	err := s.HandleBatch(context.Background(), batch)
	t.Logf("HandleBatch on the stuck connection: %v", err)
	requireTransient(t, err)
	if err := s.HandleBatch(context.Background(), batch); err != nil {
		t.Fatalf("the retry after the failure: %v", err)
	}
	if rows := readAll(t, s); len(rows) != 2 {
		t.Errorf("%d rows, want 2", len(rows))
	}
}
