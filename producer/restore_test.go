package producer

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// recordingLog is an EventLog holding fixed values and end offsets, which
// records where each ReadFrom started.
type recordingLog struct {
	values [][]byte
	end    map[int]int64
	froms  []map[int]int64
}

func (l *recordingLog) EndOffsets(context.Context) (map[int]int64, error) { return l.end, nil }

func (l *recordingLog) ReadFrom(_ context.Context, from map[int]int64, fn func([]byte) error) error {
	l.froms = append(l.froms, maps.Clone(from))
	for _, v := range l.values {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// TestRestoreReadsBackFromTheSamples: with Kafka, a restart, or the
// assignment of an organization another producer owned, rebuilds the
// dedup memory from the events topic, from the lowest offsets its saved
// samples and offsets name; a call read back is a duplicate, not
// published again.
func TestRestoreReadsBackFromTheSamples(t *testing.T) {
	t.Parallel()
	for _, assigned := range []bool{false, true} {
		t.Run(map[bool]string{false: "restart", true: "assignment"}[assigned], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			created := time.Date(2026, 2, 7, 6, 0, 0, 0, time.UTC)
			rec := unpod.Record{ID: "call-1", SourceNumber: "+1", DestinationNumber: "+2", CallType: "inbound", CallStatus: "completed", CreationTime: created}
			id := Identify("acme", &rec)
			e := NewEvent("acme", &rec, id, 1, created)
			log := &recordingLog{values: [][]byte{appendEvent(nil, &e)}, end: map[int]int64{0: 1}}

			store := NewFileStore(t.TempDir() + "/s")
			st := emptyState()
			st.Offsets = map[int]int64{0: 9, 1: 4}
			st.Orgs["acme"] = &Checkpoint{Org: "acme", Rungs: []Rung{{Age: 0, Frontier: created}},
				Samples: []Sample{{Frontier: created, Offsets: map[int]int64{0: 3, 2: 8}}}}
			if err := store.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.RescanAges, cfg.SettleLag, cfg.Lookback = []time.Duration{0}, time.Minute, time.Hour
			now := created.Add(24 * time.Hour)
			p, err := New(cfg, Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq", Store: store, EventLog: log,
				Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if assigned {
				// "fresh" has no saved state: it starts at the lookback.
				err = p.claim(ctx, []string{"acme", "fresh"}, &scriptLease{gen: 4, orgs: []string{"acme", "fresh"}})
				if want := now.Add(-time.Minute - time.Hour); err == nil && !p.checkpoint("fresh").Low().Equal(want) {
					t.Fatalf("a new organization starts at %s, want %s (settle lag and lookback before now)", p.checkpoint("fresh").Low(), want)
				}
			} else {
				err = p.restore(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := map[int]int64{0: 3, 1: 4, 2: 8}; len(log.froms) != 1 || !maps.Equal(log.froms[0], want) {
				t.Fatalf("read back from %v, want once from %v (the lowest of each partition)", log.froms, want)
			}
			if d := p.mem.check(keyOf("acme", id.CallKey), id.hash); d.Publish {
				t.Fatalf("the call read back is not remembered: %+v", d)
			}
			if owner := p.checkpoint("acme").Owner; assigned && owner != 4 {
				t.Fatalf("checkpoint owner %d after an assignment of generation 4", owner)
			}
		})
	}
}

// TestMinOffsets: the lower offset of each partition, either side nil.
func TestMinOffsets(t *testing.T) {
	for _, tc := range []struct{ a, b, want map[int]int64 }{
		{nil, nil, nil},
		{nil, map[int]int64{0: 3}, map[int]int64{0: 3}},
		{map[int]int64{0: 3}, nil, map[int]int64{0: 3}},
		{map[int]int64{0: 5, 1: 9}, map[int]int64{0: 3, 1: 10, 2: 1}, map[int]int64{0: 3, 1: 9, 2: 1}},
	} {
		if got := minOffsets(tc.a, tc.b); !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("minOffsets(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// failingStore refuses every save.
type failingStore struct{ StateStore }

func (failingStore) Save(context.Context, *State) error { return errors.New("disk full") }

// TestFailedSaveIsAnError: a save that fails is an error (the first sample
// of an org must not be taken as durable) and the state stays dirty, so
// the next save tries again.
func TestFailedSaveIsAnError(t *testing.T) {
	t.Parallel()
	p, err := New(DefaultConfig(), Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq",
		Store: failingStore{NewFileStore(t.TempDir() + "/s")}, EventLog: &recordingLog{end: map[int]int64{0: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	err = p.sampleIfDue(context.Background(), "acme", p.checkpoint("acme"))
	if !errors.Is(err, errPublish) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("first sample with a failing store: %v, want the save's error", err)
	}
	p.mu.Lock()
	dirty := p.dirty
	p.mu.Unlock()
	if !dirty {
		t.Fatal("the state is clean after a failed save")
	}
}

// TestEvictKeepsWhatRungsReRead: evict forgets the calls created before
// every organization's lowest frontier (less a minute of margin), and keeps
// those a rung still re-reads: forgetting one would publish it again.
func TestEvictKeepsWhatRungsReRead(t *testing.T) {
	t.Parallel()
	p, err := New(DefaultConfig(), Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq",
		Store: NewFileStore(t.TempDir() + "/s")})
	if err != nil {
		t.Fatal(err)
	}
	low := time.Date(2026, 2, 7, 6, 0, 0, 0, time.UTC)
	p.cps["acme"] = &Checkpoint{Org: "acme", Rungs: []Rung{{Age: 0, Frontier: low.Add(time.Hour)}, {Age: time.Hour, Frontier: low}}}
	p.cps["globex"] = &Checkpoint{Org: "globex", Rungs: []Rung{{Age: 0, Frontier: low.Add(2 * time.Hour)}}}
	ages := map[string]time.Duration{"old": -3 * time.Minute, "margin": -30 * time.Second, "at-low": 0, "after": 30 * time.Second}
	for key, d := range ages {
		p.mem.Commit("globex", key, "aa", 1, low.Add(d))
	}
	// Dead-letter marks go by each org's own lowest frontier, with the
	// same minute of margin: a mark whose window ended before it is never
	// read again.
	m := unixMinute(low)
	marks := []struct {
		org    string
		mark   uint64
		minute uint32
		kept   bool
	}{
		{"acme", 1, m - 2, false},
		{"acme", 2, m - 1, true},
		{"acme", 3, m, true},
		{"globex", 4, unixMinute(low.Add(time.Hour)), false}, // below globex's low, above acme's
		{"globex", 5, unixMinute(low.Add(2 * time.Hour)), true},
	}
	for _, mk := range marks {
		p.dead.add(mk.org, mk.mark, mk.minute)
	}
	p.evict()
	for key, d := range ages {
		kept := !p.mem.Check("globex", key, "aa").Publish
		if want := d >= -time.Minute; kept != want {
			t.Errorf("call created %s from the lowest frontier: kept %v, want %v", d, kept, want)
		}
	}
	for _, mk := range marks {
		if got := p.dead.seen(mk.org, mk.mark, 0); got != mk.kept {
			t.Errorf("dead-letter mark %d of %s at minute %d: kept %v, want %v", mk.mark, mk.org, mk.minute, got, mk.kept)
		}
	}
}
