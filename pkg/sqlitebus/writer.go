package sqlitebus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// lazyLinger is how long the writer holds a lazy write (an offset commit)
// for company: the next Publish usually comes within it, and one
// transaction (one fsync) then carries both, and every other group's
// commit. A commit-only transaction costs nearly as much as a Publish of
// a thousand messages: the fsync is most of either.
const lazyLinger = 10 * time.Millisecond

// maxOpsPerTx bounds how many queued writes share one transaction, so one
// transaction (and the write lock) stays short.
const maxOpsPerTx = 64

// writer is the one path by which this process writes the file: a single
// goroutine on a single connection. Concurrent writes (Publish calls,
// commits of every group, retention) queue up while a transaction is being
// committed and then share the next one, so one fsync covers all of them
// (group commit) and they never fight each other for SQLite's write lock.
type writer struct {
	b   *Bus
	ops chan *writeOp

	mu      sync.Mutex
	closed  bool
	pending sync.WaitGroup // do calls under way
	done    chan struct{}
}

type writeOp struct {
	fn   func(*txn) error
	lazy bool // may wait lazyLinger for company
	err  chan error
}

func newWriter(b *Bus) *writer {
	w := &writer{b: b, ops: make(chan *writeOp, maxOpsPerTx), done: make(chan struct{})}
	go w.run()
	return w
}

// do runs fn in a write transaction and returns once that transaction is
// committed (or failed). fn may run more than once (after a busy file or
// beside an op that failed), always in a new transaction, so it must only
// touch the database and tx.
func (w *writer) do(fn func(*txn) error) error { return w.submit(fn, false) }

// doLazy is do for writes that need not be quick (offset commits,
// retention): they may wait lazyLinger to share a transaction.
func (w *writer) doLazy(fn func(*txn) error) error { return w.submit(fn, true) }

func (w *writer) submit(fn func(*txn) error, lazy bool) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.pending.Add(1)
	w.mu.Unlock()
	defer w.pending.Done()
	op := &writeOp{fn: fn, lazy: lazy, err: make(chan error, 1)}
	w.ops <- op
	return <-op.err
}

// close waits for the writes under way, then stops the writer.
func (w *writer) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	w.pending.Wait()
	close(w.ops)
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxOpsPerTx)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for op := range w.ops {
		batch = append(batch[:0], op)
		lazy := op.lazy
	drain:
		for len(batch) < maxOpsPerTx {
			select {
			case op, ok := <-w.ops:
				if !ok {
					break drain
				}
				batch = append(batch, op)
				lazy = lazy && op.lazy
				continue
			default:
			}
			if !lazy {
				break
			}
			// Only lazy writes so far: wait a little for company.
			linger.Reset(lazyLinger)
			select {
			case op, ok := <-w.ops:
				linger.Stop()
				if !ok {
					break drain
				}
				batch = append(batch, op)
				lazy = op.lazy
			case <-linger.C:
				break drain
			}
		}
		err := w.runRetrying(batch)
		if err != nil && len(batch) > 1 && !isBusy(err) {
			// One op failed the shared transaction: run each alone, so the
			// others do not fail with it.
			for _, op := range batch {
				op.err <- w.runRetrying([]*writeOp{op})
			}
			continue
		}
		for _, op := range batch {
			op.err <- err
		}
	}
}

// runRetrying runs ops in one transaction, retrying with backoff while the
// file is locked by another process, for up to LockTimeout.
func (w *writer) runRetrying(ops []*writeOp) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 20 * time.Millisecond
	bo.MaxInterval = time.Second
	bo.MaxElapsedTime = w.b.cfg.LockTimeout
	attempt := 0
	began := time.Now()
	err := backoff.Retry(func() error {
		attempt++
		err := w.runOnce(ops)
		switch {
		case err == nil:
			return nil
		case isBusy(err):
			w.b.metrics.errors.WithLabelValues("busy").Inc()
			if attempt == 1 {
				w.b.log.Warn("sqlitebus: file locked by another connection, retrying", "err", err)
			}
			return err
		default:
			return backoff.Permanent(err)
		}
	}, bo)
	if isBusy(err) {
		return fmt.Errorf("%s is locked by another connection; gave up after %s (LockTimeout %s): %w",
			w.b.cfg.Path, time.Since(began).Round(time.Millisecond), w.b.cfg.LockTimeout, err)
	}
	return err
}

func (w *writer) runOnce(ops []*writeOp) error {
	began := time.Now()
	ctx := context.Background()
	tx, err := w.b.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	t := &txn{ctx: ctx, tx: tx, b: w.b}
	for _, op := range ops {
		if err := op.fn(t); err != nil {
			_ = tx.Rollback()
			t.closeTemp()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		t.closeTemp()
		return fmt.Errorf("commit write transaction: %w", err)
	}
	t.closeTemp()
	w.b.metrics.writeSeconds.Observe(time.Since(began).Seconds())
	for _, nt := range t.created {
		w.b.installTopic(nt)
	}
	for _, tr := range t.trimmed {
		tr.t.cacheTrim(tr.upto)
	}
	for _, a := range t.appended {
		tp := w.b.cachedTopic(a.t.name)
		tp.cacheAppend(a.recs)
		tp.notify()
	}
	// Statements not prepared yet are prepared now that the connection is
	// free, for the next transactions.
	for _, need := range t.prepare {
		w.prepareInsert(w.b.cachedTopic(need.t.name), need.n)
	}
	return nil
}

func (w *writer) prepareInsert(t *topic, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inserts[n] != nil {
		return
	}
	st, err := w.b.wdb.Prepare(insertSQL(t.table, n))
	if err != nil {
		w.b.log.Warn("sqlitebus: prepare insert", "topic", t.name, "err", err)
		return
	}
	t.inserts[n] = st
}

// isBusy reports whether err means the file is locked by another
// connection (SQLITE_BUSY or SQLITE_LOCKED, with any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// txn is one write transaction, as the writer's ops see it.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
	b   *Bus

	created  []*topic   // topics created here, cached once committed
	appended []appended // records appended, cached and notified once committed
	trimmed  []trimmed  // retention deletes, dropped from the tail cache once committed
	prepare  []prepareNeed
	temp     []*sql.Stmt // statements prepared on tx, closed with it
}

type appended struct {
	t    *topic
	recs []*record
}

type trimmed struct {
	t    *topic
	upto int64
}

type prepareNeed struct {
	t *topic
	n int
}

func (t *txn) closeTemp() {
	for _, s := range t.temp {
		_ = s.Close()
	}
	t.temp = nil
}

// topic returns the topic, creating its row and table if needed.
func (t *txn) topic(name string) (*topic, error) {
	if tp := t.b.cachedTopic(name); tp != nil {
		return tp, nil
	}
	for _, tp := range t.created {
		if tp.name == name {
			return tp, nil
		}
	}
	if _, err := t.tx.ExecContext(t.ctx, "INSERT INTO sqlitebus_topics (name) VALUES (?) ON CONFLICT (name) DO NOTHING", name); err != nil {
		return nil, err
	}
	var id int64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT id FROM sqlitebus_topics WHERE name = ?", name).Scan(&id); err != nil {
		return nil, err
	}
	if _, err := t.tx.ExecContext(t.ctx, topicTableDDL(id)); err != nil {
		return nil, err
	}
	// Not cached until committed: a rolled-back id could be reused.
	tp := newTopic(name, id)
	t.created = append(t.created, tp)
	return tp, nil
}

// insertChunks are the row counts of the multi-row INSERTs, largest first:
// fewer statements per Publish is what makes SQLite fast here.
var insertChunks = []int{128, 32, 8, 1}

const insertColumns = 6

func insertSQL(table string, n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (off, ts, uuid, key, metadata, payload) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?)")
	}
	return b.String()
}

// insertStmt returns the n-row insert of tp for this transaction.
func (t *txn) insertStmt(tp *topic, n int) (*sql.Stmt, error) {
	tp.mu.Lock()
	st := tp.inserts[n]
	tp.mu.Unlock()
	if st != nil {
		return t.tx.StmtContext(t.ctx, st), nil
	}
	st, err := t.tx.PrepareContext(t.ctx, insertSQL(tp.table, n))
	if err != nil {
		return nil, err
	}
	t.temp = append(t.temp, st)
	t.prepare = append(t.prepare, prepareNeed{tp, n})
	return st, nil
}

// appendRows gives rows the topic's next offsets and a timestamp (now, but
// never before the topic's newest, so offsets and timestamps grow
// together), and inserts them.
func (t *txn) appendRows(tp *topic, rows []row) error {
	var next, lastTS int64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT next_offset, last_ts FROM sqlitebus_topics WHERE id = ?", tp.id).Scan(&next, &lastTS); err != nil {
		return err
	}
	ts := max(now(), lastTS)
	args := make([]any, 0, insertChunks[0]*insertColumns)
	for i := 0; i < len(rows); {
		n := 1
		for _, c := range insertChunks {
			if len(rows)-i >= c {
				n = c
				break
			}
		}
		st, err := t.insertStmt(tp, n)
		if err != nil {
			return err
		}
		args = args[:0]
		for j := range n {
			r := &rows[i+j]
			var key any
			if r.hasKey {
				key = r.key
			}
			args = append(args, next+int64(i+j), ts, r.uuid, key, r.metadata, r.payload)
		}
		if _, err := st.ExecContext(t.ctx, args...); err != nil {
			return err
		}
		i += n
	}
	if _, err := t.tx.ExecContext(t.ctx, "UPDATE sqlitebus_topics SET next_offset = ?, last_ts = ? WHERE id = ?", next+int64(len(rows)), ts, tp.id); err != nil {
		return err
	}
	// The rows' metadata maps become the records' (encoded already, and
	// the Publish call that owns them is waiting for this transaction).
	recs := make([]*record, len(rows))
	tsText := formatTS(ts)
	for i := range rows {
		r := &rows[i]
		recs[i] = newRecord(next+int64(i), tsText, r.uuid, sql.NullString{String: r.key, Valid: r.hasKey}, r.md, r.payload)
	}
	t.appended = append(t.appended, appended{tp, recs})
	return nil
}

// commitGroup stores a group's committed offset.
func (t *txn) commitGroup(tp *topic, group string, offset int64) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO sqlitebus_groups (grp, topic_id, committed, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (grp, topic_id) DO UPDATE SET committed = excluded.committed, updated_at = excluded.updated_at`,
		group, tp.id, offset, now())
	return err
}
