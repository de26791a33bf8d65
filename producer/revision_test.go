package producer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// abaContents are three versions of one call whose content goes A, B, A.
var abaContents = []string{"completed", "failed", "completed"}

// readABA serves each version of the call in turn and reads its window
// after each, with p, from step from on; it returns the event ids
// published.
func readABA(t testing.TB, p *Producer, api *fakeAPI, from int, events func() []schemas.CallEvent) []schemas.CallEvent {
	t.Helper()
	at := edgeT0.Add(-10 * time.Minute)
	w := Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}
	for _, status := range abaContents[from:] {
		api.set(fakeRecord{at, callLog("call_aba", at, status, "")})
		if err := p.readWindow(context.Background(), "acme", w); err != nil {
			t.Fatal(err)
		}
	}
	return events()
}

// checkABA checks three revisions of one call with three distinct ids,
// each the UUIDv5 of its revision and content.
func checkABA(t testing.TB, events []schemas.CallEvent) {
	t.Helper()
	if len(events) != 3 {
		t.Fatalf("%d events, want revisions 1, 2 and 3", len(events))
	}
	ids := map[string]bool{}
	for i, e := range events {
		rec := unpod.Record{ID: "call_aba", SourceNumber: e.SourceNumber, DestinationNumber: e.DestinationNumber, CallType: e.CallType,
			CallStatus: e.CallStatus, CreationTime: e.CreationTime, EndReason: e.EndReason}
		want := EventID("acme", "call_aba", i+1, Identify("acme", &rec).ContentHash).String()
		if e.Revision != i+1 || e.CallStatus != abaContents[i] || e.EventID != want {
			t.Errorf("event %d: revision %d status %s id %s; want revision %d status %s id %s", i, e.Revision, e.CallStatus, e.EventID, i+1, abaContents[i], want)
		}
		if ids[e.EventID] {
			t.Errorf("revision %d repeats event id %s", e.Revision, e.EventID)
		}
		ids[e.EventID] = true
	}
}

// TestRevisionsABA: a call whose content goes A, B, A publishes three
// revisions with three event ids; reading the same history again after
// the state is rebuilt (here from the embedded state file, with Kafka in
// TestRevisionsABAAfterRebuildFromTopic) gives the same ids.
func TestRevisionsABA(t *testing.T) {
	api := newFakeAPI(t)
	client := newClient(t, api.srv.URL, "tok")
	state := filepath.Join(t.TempDir(), "s.json")
	bus := &busPublisher{}
	ep := newEdgeProducer(t, client, edgeConfig(), bus, &fakeClock{now: edgeT0}, state)
	all := readABA(t, ep.Producer, api, 0, func() []schemas.CallEvent { return bus.events(t, "calls") })
	checkABA(t, all)

	// A rebuild after A, B: the third read publishes the same revision 3.
	bus2 := &busPublisher{}
	first := newEdgeProducer(t, client, edgeConfig(), bus2, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s2.json"))
	api.set()
	for _, status := range abaContents[:2] {
		at := edgeT0.Add(-10 * time.Minute)
		api.set(fakeRecord{at, callLog("call_aba", at, status, "")})
		if err := first.readWindow(context.Background(), "acme", Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}); err != nil {
			t.Fatal(err)
		}
	}
	first.mu.Lock()
	first.dirty = true
	first.mu.Unlock()
	if err := first.save(context.Background()); err != nil {
		t.Fatal(err)
	}
	rebuilt := newEdgeProducer(t, client, edgeConfig(), bus2, &fakeClock{now: edgeT0}, first.state)
	// B again is the content remembered: dropped.
	if got := readABA(t, rebuilt.Producer, api, 1, func() []schemas.CallEvent { return bus2.events(t, "calls") })[2:]; len(got) != 1 {
		t.Fatalf("after the rebuild, B read again published %d events, want only A's revision 3", len(got))
	}
	got := bus2.events(t, "calls")
	checkABA(t, got)
	for i := range all {
		if got[i].EventID != all[i].EventID {
			t.Errorf("revision %d: id %s after the rebuild, %s without", i+1, got[i].EventID, all[i].EventID)
		}
	}
}

// TestRevisionsABAAfterRebuildFromTopic is TestRevisionsABA with the dedup
// memory rebuilt from the real events topic, so from the content hashes
// the restore recomputes from the events' values.
func TestRevisionsABAAfterRebuildFromTopic(t *testing.T) {
	api := newFakeAPI(t)
	client := newClient(t, api.srv.URL, "tok")
	deps, kcfg := kafkaDeps(t, client, nil)
	deps.Now = (&fakeClock{now: edgeT0}).Now
	first, err := New(edgeConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	topicEvents := func() []schemas.CallEvent {
		var out []schemas.CallEvent
		for _, e := range readTopic(t, kcfg, deps.Topic) {
			out = append(out, e.CallEvent)
		}
		return out
	}
	readABA(t, first, api, 0, func() []schemas.CallEvent { return nil })
	reference := topicEvents() // A, B, A from one memory
	checkABA(t, reference)

	// A second topic: A, B by one producer, then A by another that
	// rebuilt its memory from that topic.
	deps2, kcfg2 := kafkaDeps(t, client, nil)
	deps2.Now = deps.Now
	p1, err := New(edgeConfig(), deps2)
	if err != nil {
		t.Fatal(err)
	}
	w := Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}
	at := edgeT0.Add(-10 * time.Minute)
	for _, status := range abaContents[:2] {
		api.set(fakeRecord{at, callLog("call_aba", at, status, "")})
		if err := p1.readWindow(context.Background(), "acme", w); err != nil {
			t.Fatal(err)
		}
	}
	p2, err := New(edgeConfig(), deps2)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p2.readBack(context.Background(), map[int]int64{}, ""); err != nil || n != 2 {
		t.Fatalf("rebuilt from %d events, %v; want 2", n, err)
	}
	// B, then A: B is what the rebuilt memory holds (dropped), A is new.
	readABA(t, p2, api, 1, func() []schemas.CallEvent { return nil })
	var rebuilt []schemas.CallEvent
	for _, e := range readTopic(t, kcfg2, deps2.Topic) {
		rebuilt = append(rebuilt, e.CallEvent)
	}
	checkABA(t, rebuilt)
	for i := range reference {
		if rebuilt[i].EventID != reference[i].EventID {
			t.Errorf("revision %d: id %s after the rebuild, %s without", i+1, rebuilt[i].EventID, reference[i].EventID)
		}
	}
}
