package sqlitebus

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// ackScanInterval is how long an ack that is not the oldest outstanding
// one may go unnoticed (it frees its in-flight slot then). The oldest
// message is watched directly, so in-order acks, and every ack with
// MaxInFlight 1, are seen at once.
const ackScanInterval = 5 * time.Millisecond

// maxFetch bounds the rows one fetch query reads ahead.
const maxFetch = 1024

// subscription is one Subscribe or SubscribeBatches call. Three goroutines,
// whatever the number of messages in flight:
//   - the deliverer reads the topic in offset order and hands out messages
//     (singly or in batches), each taking a slot of the MaxInFlight budget;
//   - the acker watches the outstanding messages for their Ack or Nack (or
//     their batch's Settle): it frees the slot of an acked message and tells
//     the tracker, and puts a nacked one back for redelivery after
//     NackResendSleep (it keeps its slot meanwhile);
//   - the committer (with a consumer group) writes the acked prefix's
//     offset whenever it grows, one commit at a time: everything acked while
//     a commit is being written rides on the next.
type subscription struct {
	s     *Subscriber
	b     *Bus
	tp    *topic
	group string

	maxMessages int
	linger      time.Duration
	fetchSize   int
	out         chan *message.Message // Subscribe
	outBatches  chan *delivery.Batch  // SubscribeBatches

	slots   chan struct{} // one token per delivered, unacked message
	tracker *tracker      // nil without a group
	next    int64         // next offset to fetch; -1 until known (deliverer only)
	buf     []*record     // fetched, not yet delivered (deliverer only)
	poll    *time.Ticker

	consumed, committed, nacked prometheus.Counter

	ctx      context.Context // canceled when the subscription stops
	cancel   context.CancelFunc
	valueCtx context.Context // the Subscribe context, for message context values

	mu       sync.Mutex
	inflight []*entry // delivered, no verdict seen yet, in delivery order
	ready    []*entry // nacked and due for redelivery

	added      chan struct{} // deliverer -> acker: inflight grew
	settled    chan struct{} // a batch's Settle -> acker: verdicts came
	redeliver  chan struct{} // acker -> deliverer: ready grew
	commitKick chan struct{} // acker -> committer: the acked prefix grew

	ackerDone, committerDone, done chan struct{}
}

// entry is one delivery of a record: as a message (Subscribe), or as a
// record of a batch, whose verdict Settle stores (SubscribeBatches).
type entry struct {
	rec   *record
	msg   *message.Message  // nil in a batch
	ctx   *delivery.Context // nil in a batch
	v     atomic.Int32      // a batch record's verdict, as verdict returns it
	dueAt time.Time         // when a nacked entry is delivered again
}

func newSubscription(s *Subscriber, subscribeCtx context.Context, tp *topic, start int64, batches bool, maxMessages int, linger time.Duration) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	group := s.cfg.ConsumerGroup
	sub := &subscription{
		s:             s,
		b:             s.b,
		tp:            tp,
		group:         group,
		maxMessages:   maxMessages,
		linger:        linger,
		fetchSize:     min(max(s.cfg.MaxInFlight, maxMessages, 64), maxFetch),
		slots:         make(chan struct{}, s.cfg.MaxInFlight),
		next:          start,
		consumed:      s.b.metrics.consumed.WithLabelValues(tp.name, group),
		committed:     s.b.metrics.committed.WithLabelValues(tp.name, group),
		nacked:        s.b.metrics.nacked.WithLabelValues(tp.name, group),
		ctx:           ctx,
		cancel:        cancel,
		valueCtx:      subscribeCtx,
		added:         make(chan struct{}, 1),
		settled:       make(chan struct{}, 1),
		redeliver:     make(chan struct{}, 1),
		commitKick:    make(chan struct{}, 1),
		ackerDone:     make(chan struct{}),
		committerDone: make(chan struct{}),
		done:          make(chan struct{}),
	}
	if !batches {
		sub.out = make(chan *message.Message)
	} else {
		sub.outBatches = make(chan *delivery.Batch)
	}
	if group != "" {
		sub.tracker = &tracker{}
	}
	return sub
}

func (sub *subscription) start() { go sub.run() }

// stop ends the subscription and waits until its channel is closed.
func (sub *subscription) stop() {
	sub.cancel()
	<-sub.done
}

func (sub *subscription) run() {
	defer close(sub.done)
	defer sub.closeOut()
	if sub.group != "" {
		// One member of a group reads a topic at a time (as Kafka gives
		// one partition to one member): others wait, standing by.
		key := memberKey{sub.group, sub.tp.id}
		token := sub.b.member(key)
		defer sub.b.release(key)
		select {
		case <-token:
			defer func() { token <- struct{}{} }()
		case <-sub.ctx.Done():
			return
		}
		if !sub.loadCommitted() {
			return
		}
	}
	sub.poll = time.NewTicker(sub.b.cfg.PollInterval)
	defer sub.poll.Stop()
	go sub.acker()
	if sub.tracker != nil {
		go sub.committer()
	} else {
		close(sub.committerDone)
	}
	sub.deliver()
	<-sub.ackerDone
	<-sub.committerDone
	if sub.group != "" {
		sub.touch()
	}
}

// touch records that the group was subscribed until now: retention counts
// a group as gone only GroupRetention after its last sign of life.
func (sub *subscription) touch() {
	err := sub.b.w.doLazy(func(tx *txn) error {
		_, err := tx.tx.ExecContext(tx.ctx, "UPDATE sqlitebus_groups SET updated_at = ? WHERE grp = ? AND topic_id = ?", now(), sub.group, sub.tp.id)
		return err
	})
	if err != nil {
		sub.b.metrics.errors.WithLabelValues("commit").Inc()
		sub.b.log.Warn("sqlitebus: record the group's last subscription", "topic", sub.tp.name, "group", sub.group, "err", err)
	}
}

func (sub *subscription) closeOut() {
	if sub.out != nil {
		close(sub.out)
	} else {
		close(sub.outBatches)
	}
}

// loadCommitted sets next to the group's committed offset; false if the
// subscription stopped first.
func (sub *subscription) loadCommitted() bool {
	for {
		err := sub.b.rdb.QueryRowContext(sub.ctx, "SELECT committed FROM sqlitebus_groups WHERE grp = ? AND topic_id = ?",
			sub.group, sub.tp.id).Scan(&sub.next)
		if err == nil {
			return true
		}
		if sub.ctx.Err() != nil {
			return false
		}
		sub.b.metrics.errors.WithLabelValues("fetch").Inc()
		sub.b.log.Error("sqlitebus: read committed offset", "topic", sub.tp.name, "group", sub.group, "err", err)
		if !sleepCtx(sub.ctx, sub.b.cfg.PollInterval) {
			return false
		}
	}
}

// deliver hands out messages until the subscription stops.
func (sub *subscription) deliver() {
	for {
		batch := sub.gather()
		if len(batch) == 0 {
			return
		}
		if sub.out != nil {
			select {
			case sub.out <- batch[0].msg:
			case <-sub.ctx.Done():
				return
			}
			continue
		}
		select {
		case sub.outBatches <- sub.newBatch(batch):
		case <-sub.ctx.Done():
			return
		}
	}
}

// newBatch hands entries out as a batch: its records share the stored
// ones' payloads, and its Settle stores each entry's verdict for the acker.
func (sub *subscription) newBatch(entries []*entry) *delivery.Batch {
	records := make([]delivery.Record, len(entries))
	for i, e := range entries {
		records[i] = delivery.Record{Payload: e.rec.payload, HasPosition: true,
			Position: schemas.Position{Topic: sub.tp.name, Partition: 0, Offset: e.rec.off}}
	}
	return delivery.NewBatch(records, batchRecords{sub.tp.name, entries}, func(acked []bool) {
		for i, e := range entries {
			if acked[i] {
				e.v.Store(1)
			} else {
				e.v.Store(2)
			}
		}
		kick(sub.settled)
	})
}

// batchRecords reads the stored records of a batch.
type batchRecords struct {
	topic   string
	entries []*entry
}

func (b batchRecords) Message(i int) *message.Message { return b.entries[i].rec.message(b.topic) }

func (b batchRecords) Metadata(i int, key string) string {
	r := b.entries[i].rec
	switch key {
	case schemas.TopicMetadata:
		return b.topic
	case schemas.PartitionMetadata:
		return "0"
	case schemas.OffsetMetadata:
		return strconv.FormatInt(r.off, 10)
	}
	return r.md[key]
}

// gather returns the next batch: at least one entry (blocking for it),
// then whatever more is available, waiting up to linger of the first;
// nil when the subscription stopped.
func (sub *subscription) gather() []*entry {
	first := sub.nextEntry(nil, true)
	if first == nil {
		return nil
	}
	batch := []*entry{first}
	var deadline <-chan time.Time
	if sub.linger > 0 && sub.maxMessages > 1 {
		t := time.NewTimer(sub.linger)
		defer t.Stop()
		deadline = t.C
	}
	sorted := true
	for len(batch) < sub.maxMessages {
		e := sub.nextEntry(deadline, deadline != nil)
		if e == nil {
			break
		}
		sorted = sorted && e.rec.off > batch[len(batch)-1].rec.off
		batch = append(batch, e)
	}
	if !sorted { // a redelivery joined newer messages
		slices.SortFunc(batch, func(a, b *entry) int { return cmp.Compare(a.rec.off, b.rec.off) })
	}
	return batch
}

// nextEntry returns the next message to deliver, with its slot taken: a
// nacked message due again first, else the next record. block false takes
// only what is available at once; block true waits until deadline (nil:
// forever). nil when nothing came or the subscription stopped.
func (sub *subscription) nextEntry(deadline <-chan time.Time, block bool) *entry {
	fetched := false
	for {
		if e := sub.takeReady(); e != nil {
			return e
		}
		var changed <-chan struct{}
		if len(sub.buf) == 0 && (block || !fetched) {
			changed = sub.tp.watch() // before reading, so no append is missed
			sub.fetch()
			fetched = true
		}
		if len(sub.buf) > 0 {
			if !block {
				select {
				case sub.slots <- struct{}{}:
					return sub.newEntry()
				default:
					return nil
				}
			}
			select {
			case sub.slots <- struct{}{}:
				return sub.newEntry()
			case <-sub.redeliver:
				continue
			case <-deadline:
				return nil
			case <-sub.ctx.Done():
				return nil
			}
		}
		if !block {
			return nil
		}
		select {
		case <-changed: // this Bus appended
		case <-sub.poll.C: // another process may have
		case <-sub.redeliver:
		case <-deadline:
			return nil
		case <-sub.ctx.Done():
			return nil
		}
	}
}

// fetch reads the next records into buf: from the tail cache if it has
// them, else from the file.
func (sub *subscription) fetch() {
	if recs := sub.tp.cacheRead(sub.next, sub.fetchSize); len(recs) > 0 {
		sub.buf = append(sub.buf, recs...)
		sub.next = recs[len(recs)-1].off + 1
		return
	}
	st, err := sub.tp.readStmt(sub.b)
	if err == nil {
		err = sub.fetchWith(st)
	}
	if err != nil && sub.ctx.Err() == nil {
		sub.b.metrics.errors.WithLabelValues("fetch").Inc()
		sub.b.log.Error("sqlitebus: read messages", "topic", sub.tp.name, "group", sub.group, "offset", sub.next, "err", err)
	}
}

func (sub *subscription) fetchWith(st *sql.Stmt) error {
	rows, err := st.QueryContext(sub.ctx, sub.next, sub.fetchSize)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			off, ts     int64
			id          string
			key         sql.NullString
			md, payload []byte
		)
		if err := rows.Scan(&off, &ts, &id, &key, &md, &payload); err != nil {
			return err
		}
		m, ok := decodeMetadata(off, md)
		if !ok {
			sub.b.metrics.errors.WithLabelValues("unmarshal").Inc()
		}
		sub.buf = append(sub.buf, newRecord(off, formatTS(ts), id, key, m, payload))
		sub.next = off + 1
	}
	return rows.Err()
}

// readStmt returns the fetch query of t, prepared on the read pool.
func (t *topic) readStmt(b *Bus) (*sql.Stmt, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.read != nil {
		return t.read, nil
	}
	st, err := b.rdb.Prepare("SELECT off, ts, uuid, key, metadata, payload FROM " + t.table + " WHERE off >= ? ORDER BY off LIMIT ?")
	if err != nil {
		return nil, err
	}
	t.read = st
	return st, nil
}

// newEntry delivers the next buffered record for the first time.
func (sub *subscription) newEntry() *entry {
	r := sub.buf[0]
	sub.buf[0] = nil
	sub.buf = sub.buf[1:]
	if sub.tracker != nil {
		sub.tracker.add(r.off)
	}
	sub.consumed.Inc()
	return sub.track(r)
}

// takeReady returns a nacked record due again, as a new delivery.
func (sub *subscription) takeReady() *entry {
	sub.mu.Lock()
	if len(sub.ready) == 0 {
		sub.mu.Unlock()
		return nil
	}
	e := sub.ready[0]
	sub.ready[0] = nil
	sub.ready = sub.ready[1:]
	sub.mu.Unlock()
	return sub.track(e.rec)
}

// track makes a delivery of r and hands it to the acker; a single message
// when the subscription hands out messages.
func (sub *subscription) track(r *record) *entry {
	e := &entry{rec: r}
	if sub.out != nil {
		e.msg = r.message(sub.tp.name)
		e.ctx = delivery.NewContext(sub.valueCtx)
		e.msg.SetContext(e.ctx)
	}
	sub.mu.Lock()
	sub.inflight = append(sub.inflight, e)
	n := len(sub.inflight)
	sub.mu.Unlock()
	if n <= 2 { // the acker's view changes only here: a head to watch, a scan to arm
		kick(sub.added)
	}
	return e
}

// verdict of a delivery: 0 none yet, 1 acked, 2 nacked.
func (e *entry) verdict() int {
	if e.msg == nil {
		return int(e.v.Load())
	}
	select {
	case <-e.msg.Acked():
		return 1
	default:
	}
	select {
	case <-e.msg.Nacked():
		return 2
	default:
		return 0
	}
}

// acker watches the outstanding messages until the subscription stops.
func (sub *subscription) acker() {
	defer close(sub.ackerDone)
	scan := time.NewTimer(time.Hour)
	scan.Stop()
	nackTimer := time.NewTimer(time.Hour)
	nackTimer.Stop()
	scanArmed, nackArmed := false, false
	var due []*entry // nacked, waiting out NackResendSleep, by due time
	for {
		sub.mu.Lock()
		var head *entry
		if len(sub.inflight) > 0 {
			head = sub.inflight[0]
		}
		multi := len(sub.inflight) > 1
		sub.mu.Unlock()
		if multi && !scanArmed {
			scan.Reset(ackScanInterval)
			scanArmed = true
		}
		if len(due) > 0 && !nackArmed {
			nackTimer.Reset(time.Until(due[0].dueAt))
			nackArmed = true
		}
		var acked, nacked <-chan struct{}
		if head != nil && head.msg != nil {
			acked, nacked = head.msg.Acked(), head.msg.Nacked()
		}
		var scanC, nackC <-chan time.Time
		if scanArmed {
			scanC = scan.C
		}
		if nackArmed {
			nackC = nackTimer.C
		}
		select {
		case <-acked:
			due = sub.settle(false, due)
		case <-nacked:
			due = sub.settle(false, due)
		case <-sub.added:
		case <-sub.settled:
			due = sub.settle(true, due)
		case <-scanC:
			scanArmed = false
			due = sub.settle(true, due)
		case <-nackC:
			nackArmed = false
			due = sub.release(due)
		case <-sub.ctx.Done():
			// Count what was acked before the stop, so it is committed.
			sub.settle(true, nil)
			sub.mu.Lock()
			for _, e := range sub.inflight {
				e.cancel()
			}
			sub.mu.Unlock()
			return
		}
	}
}

// settle takes the outstanding messages that have a verdict (only the
// prefix, or all) and acts on them; it returns due with the nacked ones
// added.
func (sub *subscription) settle(all bool, due []*entry) []*entry {
	var done []*entry
	sub.mu.Lock()
	if all {
		keep := sub.inflight[:0]
		for _, e := range sub.inflight {
			if e.verdict() != 0 {
				done = append(done, e)
			} else {
				keep = append(keep, e)
			}
		}
		clear(sub.inflight[len(keep):])
		sub.inflight = keep
	} else {
		n := 0
		for n < len(sub.inflight) && sub.inflight[n].verdict() != 0 {
			n++
		}
		done = append(done, sub.inflight[:n]...)
		clear(sub.inflight[:n])
		sub.inflight = sub.inflight[n:]
	}
	sub.mu.Unlock()
	committable := false
	for _, e := range done {
		e.cancel()
		if e.verdict() == 1 {
			<-sub.slots
			if sub.tracker != nil && sub.tracker.ack(e.rec.off) {
				committable = true
			}
			continue
		}
		sub.nacked.Inc()
		if due != nil || sub.ctx.Err() == nil {
			e.dueAt = time.Now().Add(sub.s.cfg.NackResendSleep)
			due = append(due, e)
		}
	}
	if committable {
		kick(sub.commitKick)
	}
	return due
}

// cancel ends a message's context; a batch record has none.
func (e *entry) cancel() {
	if e.ctx != nil {
		e.ctx.Cancel()
	}
}

// release moves the nacked messages whose time has come to ready.
func (sub *subscription) release(due []*entry) []*entry {
	n := 0
	t := time.Now()
	for n < len(due) && !due[n].dueAt.After(t) {
		n++
	}
	if n == 0 {
		return due
	}
	sub.mu.Lock()
	sub.ready = append(sub.ready, due[:n]...)
	sub.mu.Unlock()
	kick(sub.redeliver)
	return due[n:]
}

// committer commits the acked prefix, one commit at a time, until the
// acker stopped; then it commits what was acked last.
func (sub *subscription) committer() {
	defer close(sub.committerDone)
	for {
		select {
		case <-sub.commitKick:
			sub.commit(false)
		case <-sub.ackerDone:
			sub.commit(true)
			return
		}
	}
}

func (sub *subscription) commit(final bool) {
	off, n, ok := sub.tracker.take()
	if !ok {
		return
	}
	err := sub.b.w.doLazy(func(tx *txn) error { return tx.commitGroup(sub.tp, sub.group, off) })
	if err != nil {
		sub.b.metrics.errors.WithLabelValues("commit").Inc()
		sub.tracker.putBack(off, n)
		if final {
			sub.b.log.Error("sqlitebus: final commit failed; the next member gets these messages again",
				"topic", sub.tp.name, "group", sub.group, "offset", off, "err", err)
			return
		}
		sub.b.log.Error("sqlitebus: commit failed, will retry", "topic", sub.tp.name, "group", sub.group, "offset", off, "err", err)
		time.AfterFunc(200*time.Millisecond, func() { kick(sub.commitKick) })
		return
	}
	sub.committed.Add(float64(n))
}

// kick wakes the goroutine waiting on ch, if it is not awake already.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
