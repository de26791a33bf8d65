package consumers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// batchFunc is a plug-in's batch handling: HandleBatch, or Handle called
// for each delivery in turn (oneByOne).
type batchFunc func(ctx context.Context, batch []Delivery) error

// lane is one plug-in's path through the runtime: its subscription to the
// calls topic and its retry topic, the batches taken from them, and the
// goroutines handling those batches (Tuning.Concurrency of them at most).
//
// Its contexts end in the order of the runtime's phases: intake when
// shutdown begins (no new batch is taken, retries give up), work when the
// drain timed out (what the plug-in still does is abandoned), bus last,
// when the subscription commits and closes.
type lane struct {
	rt     *Runtime
	name   string
	plugin Plugin
	handle batchFunc
	tuning Tuning
	state  StateStore
	log    *slog.Logger
	m      laneMetrics

	subs       []message.Subscriber // of the calls topic, then of the retry topic
	in         chan *delivery.Batch // batches from every source, in arrival order per source
	bus        context.Context
	cancelBus  context.CancelFunc
	intake     context.Context
	stopIntake context.CancelFunc
	work       context.Context
	abandon    context.CancelFunc

	sem      chan struct{} // one token per batch being handled
	loopDone chan struct{}
	inFlight sync.WaitGroup
	sources  sync.WaitGroup

	pauseMu sync.Mutex
	paused  error // the transient failure the lane is waiting out, or nil

	undeliverableMu sync.Mutex // serialises the record of undeliverable messages
}

// newLane prepares a plug-in's lane; open subscribes it.
func (r *Runtime) newLane(e *entry) *lane {
	l := &lane{
		rt: r, name: e.name, plugin: e.plugin, handle: e.handle, tuning: e.tuning, state: e.state,
		log: r.logger.With("plugin", e.name), m: r.metrics.lane(e.name),
		in: make(chan *delivery.Batch), sem: make(chan struct{}, e.tuning.Concurrency), loopDone: make(chan struct{}),
	}
	l.bus, l.cancelBus = context.WithCancel(context.Background())
	l.intake, l.stopIntake = context.WithCancel(context.Background())
	l.work, l.abandon = context.WithCancel(context.Background())
	return l
}

// openLane subscribes a plug-in to the calls topic, in its consumer group,
// and to its retry topic, in a group of its own (Config.RetryGroupID): the
// retry topic is idle nearly always, and a member that joins or leaves for
// it must not make the calls topic's group rebalance.
func (r *Runtime) openLane(e *entry) (*lane, error) {
	l := r.newLane(e)
	for _, s := range []struct{ topic, group string }{
		{r.deps.Topics.Calls, r.cfg.GroupID(e.name)},
		{r.deps.Topics.Retry(e.name), r.cfg.RetryGroupID(e.name)},
	} {
		sub, err := r.deps.Subscribe(s.group, e.tuning.MaxInFlight)
		if err != nil {
			_ = l.close()
			return nil, fmt.Errorf("consumers: subscriber for %s in group %s: %w", e.name, s.group, err)
		}
		l.subs = append(l.subs, sub)
		ch, err := l.batches(sub, s.topic)
		if err != nil {
			_ = l.close()
			return nil, fmt.Errorf("consumers: subscribe %s to %s: %w", e.name, s.topic, err)
		}
		l.sources.Add(1)
		go l.forward(ch)
	}
	return l, nil
}

// batches subscribes to topic in batches: natively when the bus can,
// else by gathering single messages. A topic is initialised first when the
// subscriber can (kafkabus creates it when missing), as watermill's Router
// does: a plug-in's retry topic is made on its first run.
func (l *lane) batches(sub message.Subscriber, topic string) (<-chan *delivery.Batch, error) {
	if si, ok := sub.(message.SubscribeInitializer); ok {
		if err := si.SubscribeInitialize(topic); err != nil {
			return nil, err
		}
	}
	if bs, ok := sub.(BatchSubscriber); ok {
		return bs.SubscribeBatches(l.bus, topic, l.tuning.BatchSize, l.tuning.BatchWait)
	}
	ch, err := sub.Subscribe(l.bus, topic)
	if err != nil {
		return nil, err
	}
	return gather(l.bus, ch, l.tuning.BatchSize, l.tuning.BatchWait), nil
}

// forward passes a source's batches to the lane until intake stops; a batch
// taken from the bus but not handed over is nacked, so the bus may go on
// with the messages after it.
func (l *lane) forward(ch <-chan *delivery.Batch) {
	defer l.sources.Done()
	for {
		select {
		case <-l.intake.Done():
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			select {
			case l.in <- b:
			case <-l.intake.Done():
				b.Nack()
				return
			}
		}
	}
}

// start hands batches to the plug-in until intake stops.
func (l *lane) start(stop context.Context) {
	go func() {
		<-stop.Done()
		l.stopIntake()
	}()
	go func() {
		defer close(l.loopDone)
		for {
			var b *delivery.Batch
			select {
			case <-l.intake.Done():
				return
			case b = <-l.in:
			}
			select {
			case l.sem <- struct{}{}:
			case <-l.intake.Done():
				b.Nack()
				return
			}
			l.inFlight.Add(1)
			go func() {
				defer l.inFlight.Done()
				defer func() { <-l.sem }()
				l.process(b)
			}()
		}
	}()
}

// wait returns once the lane took its last batch and every batch in flight
// is done.
func (l *lane) wait() {
	<-l.loopDone
	l.sources.Wait()
	l.inFlight.Wait()
}

// close ends the subscriptions: the bus commits what was acknowledged.
func (l *lane) close() error {
	l.stopIntake()
	l.abandon()
	l.cancelBus()
	var errs []error
	for _, s := range l.subs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// process handles one batch from the bus and gives every message its
// verdict, in batch order: acknowledged once handled or dead-lettered,
// nacked when abandoned at shutdown.
func (l *lane) process(b *delivery.Batch) {
	start := time.Now()
	n := b.Len()
	l.m.batchSize.Observe(float64(n))
	outcomes := make([]outcome, n)
	ds := make([]Delivery, 0, n)
	idx := make([]int, 0, n) // ds[i] is record idx[i] of b
	for i := range n {
		d, err := l.rt.decode(b, i)
		if err != nil {
			outcomes[i] = outcome{kind: poisoned, reason: err}
			continue
		}
		ds = append(ds, d)
		idx = append(idx, i)
	}
	sortByPosition(ds, idx)
	settled := l.settle(ds)
	l.m.fresh(time.Now(), ds, settled)
	for i, o := range settled {
		outcomes[idx[i]] = o
	}
	l.deadLetter(b, outcomes)
	var kinds [3]int // by outcomeKind
	acked := make([]bool, n)
	for i, o := range outcomes {
		acked[i] = o.kind != abandoned
		kinds[o.kind]++
	}
	b.Settle(acked)
	l.m.count(kinds[handled], kinds[poisoned], kinds[abandoned], time.Since(start))
}

// sortByPosition puts a batch in topic, partition and offset order when
// every delivery has a position, keeping idx aligned: sinks that keep the
// latest revision are simplest when a partition's records come in order.
//
// A batch from Kafka interleaves a few partitions, each in offset order
// (only redeliveries after a nack break that), so the usual case is a
// merge by partition, placed in one pass; anything else is sorted. Either
// way the permutation is worked out first and each delivery (a few hundred
// bytes) moved once.
func sortByPosition(ds []Delivery, idx []int) {
	for i := range ds {
		if !ds[i].HasPosition {
			return
		}
	}
	perm := partitionOrder(ds)
	if perm == nil {
		return // in order already
	}
	// Follow each cycle of the permutation, marking the places filled.
	for start := range perm {
		if perm[start] == start {
			continue
		}
		d, x := ds[start], idx[start]
		at := start
		for {
			from := perm[at]
			perm[at] = at
			if from == start {
				ds[at], idx[at] = d, x
				break
			}
			ds[at], idx[at] = ds[from], idx[from]
			at = from
		}
	}
}

// partitionOrder returns the permutation that puts ds in position order
// (ds[perm[i]] goes to place i), stable, or nil when ds is in order.
func partitionOrder(ds []Delivery) []int {
	type group struct {
		topic string
		part  int32
		last  int64
		n     int // deliveries
		next  int // the next place for one of them
	}
	var groups []group
	of := make([]int, len(ds)) // the group of each delivery
	sorted, ascending := true, true
	for i := range ds {
		p := ds[i].Position
		if i > 0 && sorted && comparePositions(ds[i-1].Position, p) > 0 {
			sorted = false
		}
		g := slices.IndexFunc(groups, func(g group) bool { return g.part == p.Partition && g.topic == p.Topic })
		if g < 0 {
			g = len(groups)
			groups = append(groups, group{topic: p.Topic, part: p.Partition, last: p.Offset})
		} else if p.Offset < groups[g].last {
			ascending = false
		}
		groups[g].last = p.Offset
		groups[g].n++
		of[i] = g
	}
	if sorted {
		return nil
	}
	perm := make([]int, len(ds))
	if !ascending {
		for i := range perm {
			perm[i] = i
		}
		slices.SortStableFunc(perm, func(a, b int) int { return comparePositions(ds[a].Position, ds[b].Position) })
		return perm
	}
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return comparePositions(schemas.Position{Topic: groups[a].topic, Partition: groups[a].part},
			schemas.Position{Topic: groups[b].topic, Partition: groups[b].part})
	})
	place := 0
	for _, g := range order {
		groups[g].next = place
		place += groups[g].n
	}
	for i, g := range of {
		perm[groups[g].next] = i
		groups[g].next++
	}
	return perm
}

func comparePositions(p, q schemas.Position) int {
	if p.Topic != q.Topic {
		return strings.Compare(p.Topic, q.Topic)
	}
	if p.Partition != q.Partition {
		return cmp.Compare(p.Partition, q.Partition)
	}
	return cmp.Compare(p.Offset, q.Offset)
}

// pause records the transient failure the lane is waiting out; nil resumes.
func (l *lane) pause(err error) {
	l.pauseMu.Lock()
	was := l.paused
	l.paused = err
	l.pauseMu.Unlock()
	switch {
	case err != nil && was == nil:
		l.m.paused.Set(1)
		l.log.Warn("consumer paused: a dependency is failing; retrying, nothing is dead-lettered", "err", err)
	case err == nil && was != nil:
		l.m.paused.Set(0)
		l.log.Info("consumer resumed")
	}
}

func (l *lane) pausedBy() error {
	l.pauseMu.Lock()
	defer l.pauseMu.Unlock()
	return l.paused
}

// Shared returns a RuntimeDeps.Subscribe function that gives every group
// the same subscriber, for an in-process bus that hands every message to
// every subscription; the runtime's Close of it does nothing.
func Shared(sub message.Subscriber) func(group string, maxInFlight int) (message.Subscriber, error) {
	return func(string, int) (message.Subscriber, error) { return sharedSubscriber{sub}, nil }
}

type sharedSubscriber struct{ message.Subscriber }

func (sharedSubscriber) Close() error { return nil }

// gather batches the messages of a plain subscriber: up to size of them,
// or what arrived within wait of the first. It needs a subscriber that
// hands out many messages before they are acknowledged.
func gather(ctx context.Context, in <-chan *message.Message, size int, wait time.Duration) <-chan *delivery.Batch {
	out := make(chan *delivery.Batch)
	go func() {
		defer close(out)
		for {
			var first *message.Message
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				first = m
			}
			batch := []*message.Message{first}
			timer := time.NewTimer(wait)
		fill:
			for len(batch) < size {
				select {
				case m, ok := <-in:
					if !ok {
						break fill
					}
					batch = append(batch, m)
				case <-timer.C:
					break fill
				case <-ctx.Done():
					break fill
				}
			}
			timer.Stop()
			b := delivery.FromMessages(batch)
			select {
			case out <- b:
			case <-ctx.Done():
				b.Nack()
				return
			}
		}
	}()
	return out
}

// oneByOne adapts a Handler to a batch: Handle for each delivery in order;
// a panic fails only its own delivery.
func oneByOne(h Handler) batchFunc {
	return func(ctx context.Context, batch []Delivery) error {
		var errs ItemErrors
		for i := range batch {
			if err := callHandle(ctx, h, batch[i]); err != nil {
				if errs == nil {
					errs = ItemErrors{}
				}
				errs[i] = err
			}
		}
		if errs != nil {
			return &errs
		}
		return nil
	}
}

func callHandle(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plug-in panicked: %v", r)
		}
	}()
	return h.Handle(ctx, d)
}
