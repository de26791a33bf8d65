package kafkabus_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/schemas"
)

// TestPipelinedCommitPrefix: with MaxInFlight=N at most N messages are
// outstanding, acks out of order commit only the contiguous acked prefix,
// and after Close+restart the unacked message is delivered again.
func TestPipelinedCommitPrefix(t *testing.T) {
	const inFlight = 8
	f := newFixture(t, 1)
	f.publishN(f.publisher(), 30, nil)
	s1 := f.subscriber(inFlight)
	ch := f.subscribe(s1)

	batch := make([]*message.Message, inFlight)
	for i := range batch {
		batch[i] = receive(t, ch, 20*time.Second)
		if got := offsetOf(t, batch[i]); got != int64(i) {
			t.Fatalf("delivery %d at offset %d", i, got)
		}
	}
	expectNone(t, ch, 300*time.Millisecond)

	// Ack everything but offset 3, newest first.
	for i := inFlight - 1; i >= 0; i-- {
		if i != 3 {
			batch[i].Ack()
		}
	}
	// The freed slots let exactly inFlight-1 later messages through.
	next := make([]*message.Message, inFlight-1)
	for i := range next {
		next[i] = receive(t, ch, 10*time.Second)
		if got := offsetOf(t, next[i]); got != int64(inFlight+i) {
			t.Fatalf("next delivery at offset %d, want %d", got, inFlight+i)
		}
	}
	expectNone(t, ch, 300*time.Millisecond)
	for _, m := range next {
		m.Ack()
	}
	for o := 2*inFlight - 1; o < 30; o++ {
		m := receive(t, ch, 10*time.Second)
		if got := offsetOf(t, m); got != int64(o) {
			t.Fatalf("delivery at offset %d, want %d", got, o)
		}
		m.Ack()
	}
	// Offset 3 holds the commit at 3 however much after it is acked.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := f.committed(1)[0]
		if c > 3 {
			t.Fatalf("committed %d past unacked offset 3", c)
		}
		if c == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offset stuck at %d, want 3", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if c := f.committed(1)[0]; c != 3 {
		t.Fatalf("committed after Close = %d, want 3", c)
	}

	ch2 := f.subscribe(f.subscriber(inFlight))
	seen := map[int64]bool{}
	for len(seen) < 30-3 {
		m := receive(t, ch2, 20*time.Second)
		o := offsetOf(t, m)
		if o < 3 {
			t.Fatalf("offset %d delivered again though it was committed", o)
		}
		seen[o] = true
		m.Ack()
	}
}

// TestPipelinedRandomAcksNeverCommitPastUnacked runs handlers that ack in
// random order after random delays, watches the committed offsets all along,
// and leaves a few messages unacked at Close: no commit may ever pass an
// unacked offset, and a restarted member must get every unacked message.
func TestPipelinedRandomAcksNeverCommitPastUnacked(t *testing.T) {
	const partitions, total, inFlight = 2, 400, 32
	f := newFixture(t, partitions)
	f.publishN(f.publisher(), total, func(i int) string { return strconv.Itoa(i % 7) })

	var mu sync.Mutex
	acked := map[[2]int64]bool{}
	neverAck := map[[2]int64]bool{}
	checkCommitted := func() {
		c := f.committed(partitions)
		mu.Lock()
		defer mu.Unlock()
		for p, off := range c {
			for o := int64(0); o < off; o++ {
				if !acked[[2]int64{int64(p), o}] {
					t.Errorf("partition %d committed at %d but offset %d was not acked", p, off, o)
					return
				}
			}
		}
	}

	s1 := f.subscriber(inFlight)
	ch := f.subscribe(s1)
	rng := rand.New(rand.NewPCG(7, 11))
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
				checkCommitted()
			}
		}
	}()
	var handlers sync.WaitGroup
	for got := 0; got < total; got++ {
		m := receive(t, ch, 20*time.Second)
		p, _ := strconv.ParseInt(m.Metadata.Get(schemas.PartitionMetadata), 10, 64)
		id := [2]int64{p, offsetOf(t, m)}
		// Leave a few messages near the end unacked.
		if got > total-40 && rng.IntN(8) == 0 {
			mu.Lock()
			neverAck[id] = true
			mu.Unlock()
			continue
		}
		delay := time.Duration(rng.IntN(20)) * time.Millisecond
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			time.Sleep(delay)
			mu.Lock()
			acked[id] = true // recorded before Ack so the watcher never sees a commit first
			mu.Unlock()
			m.Ack()
		}()
	}
	handlers.Wait()
	if len(neverAck) == 0 {
		t.Fatal("test setup: no message was left unacked")
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	close(stopWatch)
	<-watchDone
	checkCommitted()

	ch2 := f.subscribe(f.subscriber(inFlight))
	missing := map[[2]int64]bool{}
	for id := range neverAck {
		missing[id] = true
	}
	for len(missing) > 0 {
		m := receive(t, ch2, 20*time.Second)
		p, _ := strconv.ParseInt(m.Metadata.Get(schemas.PartitionMetadata), 10, 64)
		delete(missing, [2]int64{p, offsetOf(t, m)})
		m.Ack()
	}
}

// TestPipelinedRebalanceLosesNothing: pipelined members with slow, randomly
// ordered acks; a second member joins midway and the first one leaves with
// messages still unacked. Every message must reach a handler, and at no
// time may a committed offset pass an offset no member acked.
func TestPipelinedRebalanceLosesNothing(t *testing.T) {
	const partitions, total, inFlight = 4, 600, 16
	f := newFixture(t, partitions)
	f.publishN(f.publisher(), total, func(i int) string { return strconv.Itoa(i % 13) })

	type id = [2]int64
	var mu sync.Mutex
	acked := map[id]bool{}
	seen := map[id]bool{}
	violation := ""
	watch := func() {
		c := f.committed(partitions)
		mu.Lock()
		defer mu.Unlock()
		for p, off := range c {
			for o := int64(0); o < off; o++ {
				if !acked[id{int64(p), o}] && violation == "" {
					violation = fmt.Sprintf("partition %d committed at %d but offset %d was never acked", p, off, o)
				}
			}
		}
	}
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
				watch()
			}
		}
	}()

	// consume hands every delivery to a handler goroutine that acks after a
	// random delay; it stops handing out when quit closes, leaving the
	// messages it then holds unacked.
	rng := rand.New(rand.NewPCG(3, 5))
	var rngMu sync.Mutex
	consume := func(ch <-chan *message.Message, quit <-chan struct{}) {
		for {
			var m *message.Message
			var ok bool
			select {
			case m, ok = <-ch:
				if !ok {
					return
				}
			case <-quit:
				return
			}
			p, _ := strconv.ParseInt(m.Metadata.Get(schemas.PartitionMetadata), 10, 64)
			o, _ := strconv.ParseInt(m.Metadata.Get(schemas.OffsetMetadata), 10, 64)
			rngMu.Lock()
			delay := time.Duration(rng.IntN(6)) * time.Millisecond
			rngMu.Unlock()
			go func() {
				time.Sleep(delay)
				select {
				case <-quit:
					return // the member is leaving: this one stays unacked
				default:
				}
				mu.Lock()
				acked[id{p, o}] = true
				seen[id{p, o}] = true
				mu.Unlock()
				m.Ack()
			}()
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	waitFor := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("handled %d of %d messages", count(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	s1 := f.subscriber(inFlight)
	quit1 := make(chan struct{})
	go consume(f.subscribe(s1), quit1)
	waitFor(total / 4)
	quit2 := make(chan struct{})
	defer close(quit2)
	go consume(f.subscribe(f.subscriber(inFlight)), quit2)
	waitFor(total * 2 / 3)
	close(quit1)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(total)
	close(stop)
	<-watched
	watch()
	if violation != "" {
		t.Fatal(violation)
	}
}
