package sqlitebus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// ErrClosed is returned by every operation on a closed Bus, Publisher or
// Subscriber.
var ErrClosed = errors.New("sqlitebus: closed")

// schemaVersion is stored in PRAGMA user_version.
const schemaVersion = 1

// schema creates the tables shared by all topics. Each topic's messages
// live in a table of their own (see topicTable), whose INTEGER PRIMARY KEY
// is the offset: appends go to the end of one B-tree and retention deletes
// a range at its start.
const schema = `
CREATE TABLE IF NOT EXISTS sqlitebus_topics (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL UNIQUE,
	next_offset INTEGER NOT NULL DEFAULT 0, -- the end offset: the next message's offset
	last_ts     INTEGER NOT NULL DEFAULT 0  -- newest timestamp (Unix ns): timestamps never go back
);
CREATE TABLE IF NOT EXISTS sqlitebus_groups (
	grp        TEXT    NOT NULL,
	topic_id   INTEGER NOT NULL REFERENCES sqlitebus_topics (id),
	committed  INTEGER NOT NULL, -- the next offset the group reads
	updated_at INTEGER NOT NULL, -- last subscribe or commit (Unix ns)
	PRIMARY KEY (grp, topic_id)
);`

// topicTable names the message table of topic id; names come from the id,
// never from the topic name, so any topic name is safe.
func topicTable(id int64) string { return fmt.Sprintf("sqlitebus_log_%d", id) }

func topicTableDDL(id int64) string {
	return `CREATE TABLE IF NOT EXISTS ` + topicTable(id) + ` (
	off      INTEGER PRIMARY KEY,
	ts       INTEGER NOT NULL,
	uuid     TEXT    NOT NULL,
	key      TEXT,
	metadata BLOB,
	payload  BLOB    NOT NULL
)`
}

// Bus is a durable, replayable message log on one SQLite file, with
// consumer groups. It is safe for concurrent use; Publisher and Subscriber
// give its watermill faces.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	wdb     *sql.DB // one connection: every write goes through w
	rdb     *sql.DB // read connections
	w       *writer
	metrics *metrics

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	loops  sync.WaitGroup // the retention loop

	mu      sync.Mutex
	closed  bool
	topics  map[string]*topic
	members map[memberKey]chan struct{} // one token per (group, topic): the member delivering
	active  map[memberKey]int           // subscriptions per (group, topic) in this process
	subs    map[*Subscriber]struct{}
	pubs    map[*Publisher]struct{}
}

type memberKey struct {
	group   string
	topicID int64
}

// topic is what the Bus knows of one topic. Once cached, id is final.
type topic struct {
	name  string
	id    int64
	table string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when this Bus appends to the topic
	read    *sql.Stmt     // the fetch query, prepared on rdb
	inserts map[int]*sql.Stmt

	cacheMu  sync.Mutex
	tail     []*record // the newest records this Bus wrote: offsets tailFrom, tailFrom+1, ...
	tailFrom int64
	tailSize int
}

// watch returns a channel closed at the next append to t through this Bus.
// Take it before reading, so an append after the read is never missed.
func (t *topic) watch() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func (t *topic) notify() {
	t.mu.Lock()
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

// Open opens (or creates) the bus file and starts its writer and its
// retention loop.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("sqlitebus: create directory of %s: %w", cfg.Path, err)
		}
	}
	busy := cfg.BusyTimeout.Milliseconds()
	// The writer: WAL so readers never wait for it, synchronous=FULL so a
	// commit survives a power cut (the producer saves its checkpoint right
	// after Publish returns), _txlock=immediate so BEGIN takes the write
	// lock and a lock held by another process is waited for (busy_timeout)
	// at BEGIN rather than failing at the first write.
	wdsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"+
		"&_pragma=journal_size_limit(67108864)&_pragma=cache_size(-32768)&_txlock=immediate", cfg.Path, busy)
	wdb, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: open %s: %w", cfg.Path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb, cfg); err != nil {
		_ = wdb.Close()
		return nil, err
	}
	rdsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=query_only(1)&_pragma=cache_size(-16384)", cfg.Path, busy)
	rdb, err := sql.Open("sqlite", rdsn)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlitebus: open %s for reading: %w", cfg.Path, err)
	}
	rdb.SetMaxOpenConns(cfg.ReadConns)
	rdb.SetMaxIdleConns(cfg.ReadConns)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		_ = rdb.Close()
		_ = wdb.Close()
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		cfg:     cfg,
		log:     cfg.Logger.With("bus", cfg.Path),
		wdb:     wdb,
		rdb:     rdb,
		metrics: m,
		ctx:     bctx,
		cancel:  cancel,
		topics:  map[string]*topic{},
		members: map[memberKey]chan struct{}{},
		active:  map[memberKey]int{},
		subs:    map[*Subscriber]struct{}{},
		pubs:    map[*Publisher]struct{}{},
	}
	b.w = newWriter(b)
	if cfg.RetentionInterval > 0 {
		b.loops.Add(1)
		go b.retentionLoop()
	}
	return b, nil
}

// migrate creates the schema, or checks that the file holds this version of it.
func migrate(ctx context.Context, db *sql.DB, cfg Config) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlitebus: open %s: %w", cfg.Path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("sqlitebus: open %s: journal mode is %q, want wal", cfg.Path, mode)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitebus: migrate %s: %w", cfg.Path, err)
	}
	defer func() { _ = tx.Rollback() }()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlitebus: migrate %s: %w", cfg.Path, err)
	}
	switch v {
	case schemaVersion:
		return nil
	case 0:
	default:
		return fmt.Errorf("sqlitebus: %s has schema version %d; this build knows %d", cfg.Path, v, schemaVersion)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("sqlitebus: create schema in %s: %w", cfg.Path, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("sqlitebus: create schema in %s: %w", cfg.Path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitebus: create schema in %s: %w", cfg.Path, err)
	}
	return nil
}

func validTopic(name string) error {
	if name == "" {
		return errors.New("sqlitebus: empty topic name")
	}
	if len(name) > 255 {
		return fmt.Errorf("sqlitebus: topic name %.40q... is longer than 255 bytes", name)
	}
	return nil
}

// cachedTopic returns the topic if this Bus knows it already.
func (b *Bus) cachedTopic(name string) *topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[name]
}

// cacheTopic installs a topic whose row is committed, and returns the one
// cached (the first wins).
func (b *Bus) cacheTopic(name string, id int64) *topic {
	return b.installTopic(newTopic(name, id))
}

// installTopic caches t unless a topic of its name is cached, and returns
// the cached one.
func (b *Bus) installTopic(t *topic) *topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.topics[t.name]; c != nil {
		return c
	}
	b.topics[t.name] = t
	return t
}

func newTopic(name string, id int64) *topic {
	return &topic{name: name, id: id, table: topicTable(id), changed: make(chan struct{}), inserts: map[int]*sql.Stmt{}}
}

// ensureTopic returns the topic, creating it (through the writer) if the
// file does not have it yet.
func (b *Bus) ensureTopic(ctx context.Context, name string) (*topic, error) {
	if err := validTopic(name); err != nil {
		return nil, err
	}
	if t := b.cachedTopic(name); t != nil {
		return t, nil
	}
	if t, err := b.lookupTopic(ctx, name); err != nil || t != nil {
		return t, err
	}
	err := b.w.do(func(tx *txn) error {
		_, err := tx.topic(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: create topic %s: %w", name, err)
	}
	return b.cachedTopic(name), nil
}

// lookupTopic finds a topic in the file (perhaps created by another
// process); nil if it does not exist.
func (b *Bus) lookupTopic(ctx context.Context, name string) (*topic, error) {
	if t := b.cachedTopic(name); t != nil {
		return t, nil
	}
	var id int64
	err := b.rdb.QueryRowContext(ctx, "SELECT id FROM sqlitebus_topics WHERE name = ?", name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: look up topic %s: %w", name, err)
	}
	return b.cacheTopic(name, id), nil
}

// member returns the membership token channel of (group, topic) and
// counts an active subscription; release undoes the count.
func (b *Bus) member(k memberKey) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.members[k]
	if ch == nil {
		ch = make(chan struct{}, 1)
		ch <- struct{}{}
		b.members[k] = ch
	}
	b.active[k]++
	return ch
}

func (b *Bus) release(k memberKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active[k]--; b.active[k] <= 0 {
		delete(b.active, k)
	}
}

// isActive reports whether a subscription of group on topic id runs in
// this process.
func (b *Bus) isActive(group string, topicID int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active[memberKey{group, topicID}] > 0
}

// Path is the bus file.
func (b *Bus) Path() string { return b.cfg.Path }

// Close stops every subscription (committing what was acked), waits for
// Publish calls under way, stops the writer and closes the file. It is
// safe to call more than once.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*Subscriber, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	pubs := make([]*Publisher, 0, len(b.pubs))
	for p := range b.pubs {
		pubs = append(pubs, p)
	}
	b.mu.Unlock()

	b.cancel()
	b.loops.Wait()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	for _, p := range pubs {
		errs = append(errs, p.Close())
	}
	b.w.close()
	b.mu.Lock()
	for _, t := range b.topics {
		t.closeStmts()
	}
	b.mu.Unlock()
	if err := b.rdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("sqlitebus: close %s: %w", b.cfg.Path, err))
	}
	if err := b.wdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("sqlitebus: close %s: %w", b.cfg.Path, err))
	}
	return errors.Join(errs...)
}

func (t *topic) closeStmts() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.read != nil {
		_ = t.read.Close()
	}
	for _, s := range t.inserts {
		_ = s.Close()
	}
}

// register adds a Publisher or Subscriber, unless the Bus is closed.
func (b *Bus) register(p *Publisher, s *Subscriber) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if p != nil {
		b.pubs[p] = struct{}{}
	}
	if s != nil {
		b.subs[s] = struct{}{}
	}
	return nil
}

func (b *Bus) unregister(p *Publisher, s *Subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pubs, p)
	delete(b.subs, s)
}

// now is the bus clock, in Unix nanoseconds.
func now() int64 { return time.Now().UnixNano() }
