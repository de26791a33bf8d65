package consumers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// batcher turns the Router's concurrent per-message handler calls into
// batches for a BatchHandler. Each caller blocks until the batch holding its
// delivery was handled and gets that delivery's own result, so a message is
// acknowledged only after its batch is durable.
type batcher struct {
	h       BatchHandler
	size    int
	wait    time.Duration
	in      chan *batchItem
	observe func(n int)
}

type batchItem struct {
	d   Delivery
	res chan error
}

func newBatcher(h BatchHandler, size int, wait time.Duration, observe func(int)) *batcher {
	if observe == nil {
		observe = func(int) {}
	}
	return &batcher{h: h, size: max(size, 1), wait: wait, in: make(chan *batchItem), observe: observe}
}

// Do adds d to the next batch and returns d's result. It returns ctx's error
// if ctx ends first; the delivery then counts as failed, and is delivered
// again, even if its batch later succeeds.
func (b *batcher) Do(ctx context.Context, d Delivery) error {
	it := &batchItem{d: d, res: make(chan error, 1)}
	select {
	case b.in <- it:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-it.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run gathers and handles batches, one at a time, until loop is done.
// HandleBatch gets work as its context.
func (b *batcher) run(loop, work context.Context) {
	for {
		var first *batchItem
		select {
		case first = <-b.in:
		case <-loop.Done():
			return
		}
		batch := []*batchItem{first}
		timer := time.NewTimer(b.wait)
	collect:
		for len(batch) < b.size {
			select {
			case it := <-b.in:
				batch = append(batch, it)
			case <-timer.C:
				break collect
			case <-loop.Done():
				break collect
			}
		}
		timer.Stop()
		b.flush(work, batch)
	}
}

// flush hands one batch to the plug-in and answers every caller.
func (b *batcher) flush(ctx context.Context, batch []*batchItem) {
	sortByOffset(batch)
	ds := make([]Delivery, len(batch))
	for i, it := range batch {
		ds[i] = it.d
	}
	b.observe(len(ds))
	err := b.call(ctx, ds)
	var items *ItemErrors
	switch {
	case err == nil:
		for _, it := range batch {
			it.res <- nil
		}
	case errors.As(err, &items):
		for i, it := range batch {
			it.res <- (*items)[i]
		}
	default:
		for _, it := range batch {
			it.res <- err
		}
	}
}

// call runs HandleBatch, turning a panic into an error for every item.
func (b *batcher) call(ctx context.Context, ds []Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("batch handler panicked: %v", r)
		}
	}()
	return b.h.HandleBatch(ctx, ds)
}

// sortByOffset puts a batch in partition and offset order when the
// messages came from Kafka: the Router calls the handler concurrently, so
// arrival order within a batch is arbitrary, and sinks that keep the
// latest revision are simpler when a partition's records come in order.
func sortByOffset(batch []*batchItem) {
	pos := func(it *batchItem) (int32, int64, bool) {
		return it.d.Position.Partition, it.d.Position.Offset, it.d.HasPosition
	}
	sort.SliceStable(batch, func(i, j int) bool {
		pi, oi, oki := pos(batch[i])
		pj, oj, okj := pos(batch[j])
		if !oki || !okj {
			return false
		}
		if pi != pj {
			return pi < pj
		}
		return oi < oj
	})
}
