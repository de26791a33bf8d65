package producer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpod"
)

func TestOrgListChanges(t *testing.T) {
	tests := []struct {
		name    string
		before  []string
		set     []string
		changed bool
		want    []string
	}{
		{"first list", nil, []string{"b", "a"}, true, []string{"a", "b"}},
		{"same in another order", []string{"a", "b"}, []string{"b", "a", "a"}, false, []string{"a", "b"}},
		{"one added", []string{"a", "b"}, []string{"a", "b", "c"}, true, []string{"a", "b", "c"}},
		{"one gone", []string{"a", "b"}, []string{"b"}, true, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l orgList
			l.set(tt.before)
			_, ch := l.get()
			if got := l.set(tt.set); got != tt.changed {
				t.Errorf("set reported changed=%v, want %v", got, tt.changed)
			}
			select {
			case <-ch:
				if !tt.changed {
					t.Error("the change channel closed without a change")
				}
			default:
				if tt.changed {
					t.Error("the change channel did not close")
				}
			}
			if got, _ := l.get(); !slices.Equal(got, tt.want) {
				t.Errorf("orgs %v, want %v", got, tt.want)
			}
		})
	}
	if got := minus([]string{"a", "b", "c"}, []string{"b"}); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("minus = %v", got)
	}
}

// scriptLease owns a fixed set and fails its Check once broken is set.
type scriptLease struct {
	gen    int64
	orgs   []string
	mu     sync.Mutex
	broken bool
	checks int
}

func (l *scriptLease) Generation() int64    { return l.gen }
func (l *scriptLease) Owns(org string) bool { return slices.Contains(l.orgs, org) }
func (l *scriptLease) String() string       { return "script lease" }
func (l *scriptLease) Check(context.Context) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks++
	if l.broken {
		return time.Time{}, errors.New("generation over")
	}
	return time.Now(), nil
}

// scriptOwnership hands out the leases one after the other, each until
// the test ends it.
type scriptOwnership struct {
	leases []*scriptLease
	next   chan struct{} // a receive ends the current lease
	held   chan *scriptLease
}

func (o *scriptOwnership) Run(ctx context.Context, hold func(context.Context, Lease)) error {
	for _, l := range o.leases {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); hold(lctx, l) }()
		o.held <- l
		select {
		case <-o.next:
		case <-ctx.Done():
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// leasedProducer is a producer of orgs a and b under own, polling a fake
// API that serves every org the same records.
type leasedProducer struct {
	*Producer
	api   *fakeAPI
	clock *fakeClock
	bus   *busPublisher
	store *FileStore
	reg   *prometheus.Registry
}

func newLeasedProducer(t *testing.T, own Ownership) *leasedProducer {
	t.Helper()
	lp := &leasedProducer{api: newFakeAPI(t), clock: &fakeClock{now: time.Now().UTC().Truncate(time.Minute)}, bus: &busPublisher{},
		store: NewFileStore(t.TempDir() + "/state.json"), reg: prometheus.NewRegistry()}
	client, err := unpod.New(unpod.Config{BaseURL: lp.api.srv.URL, Token: "tok", RateLimit: -1, MaxRetryTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Orgs, cfg.PollInterval, cfg.Lookback, cfg.SaveInterval = []string{"a", "b"}, 50*time.Millisecond, time.Hour, time.Hour
	lp.Producer, err = New(cfg, Deps{Source: client, Publisher: lp.bus, Topic: "calls", DLQTopic: "dlq", Store: lp.store,
		Ownership: own, Now: lp.clock.Now, Registerer: lp.reg})
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

// failingOwnership holds one lease of no organization until released,
// then fails, as a group whose coordinator cannot be reached does.
type failingOwnership struct{ held, release chan struct{} }

func (o *failingOwnership) Run(ctx context.Context, hold func(context.Context, Lease)) error {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); hold(lctx, &scriptLease{gen: 3}) }()
	close(o.held)
	<-o.release
	cancel()
	<-done
	return errors.New("coordinator unreachable")
}

// TestStandbyAndOwnershipFailure: a shared producer assigned no
// organization is a standby (ready, polling nothing), one that owns some
// is not, and a failing ownership ends Run with its error, so the process
// exits for a supervisor to restart it rather than idling unowned.
func TestStandbyAndOwnershipFailure(t *testing.T) {
	own := &failingOwnership{held: make(chan struct{}), release: make(chan struct{})}
	lp := newLeasedProducer(t, own)
	if lp.standby() {
		t.Fatal("standby before any assignment")
	}
	done := make(chan error, 1)
	go func() { done <- lp.Run(context.Background()) }()
	<-own.held
	for deadline := time.Now().Add(5 * time.Second); !lp.standby(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not a standby under a lease of no organization")
		}
	}
	lp.own.set("a", &scriptLease{gen: 3, orgs: []string{"a"}})
	if lp.standby() {
		t.Fatal("standby while owning org a")
	}
	lp.own.set("a", nil)
	close(own.release)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "coordinator unreachable") {
			t.Fatalf("Run = %v, want the ownership's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its ownership failed")
	}
}

// TestHoldFollowsLeases runs a producer under scripted leases: it polls
// exactly the orgs of the current lease, saves an org when the lease that
// held it ends, records the generation in the checkpoint, and publishes
// nothing once the lease's Check fails.
func TestHoldFollowsLeases(t *testing.T) {
	own := &scriptOwnership{
		leases: []*scriptLease{{gen: 7, orgs: []string{"a"}}, {gen: 8, orgs: []string{"a", "b"}}, {gen: 9, orgs: []string{"b"}}},
		next:   make(chan struct{}), held: make(chan *scriptLease),
	}
	lp := newLeasedProducer(t, own)
	p, api, clock, bus, store, reg := lp.Producer, lp.api, lp.clock, lp.bus, lp.store, lp.reg
	now := clock.now
	t1, t2 := now.Add(-5*time.Minute), now.Add(15*time.Second)           // t2: read at the next poll once the clock moved
	api.set(fakeRecord{at: t1, raw: callLog("c1", t1, "completed", "")}) // the fake serves it to every org
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	published := func(org string) bool {
		for _, e := range bus.events(t, "calls") {
			if e.Org == org {
				return true
			}
		}
		return false
	}

	first := <-own.held
	waitFor("org a published under the first lease", func() bool { return published("a") })
	if owned := p.Owned(); !slices.Equal(owned, []string{"a"}) {
		t.Fatalf("owned %v under a lease of [a]", owned)
	}
	if published("b") {
		t.Fatal("org b published under a lease without it")
	}
	own.next <- struct{}{}
	second := <-own.held
	st, err := store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cp := st.Orgs["a"]; cp == nil || cp.Owner != first.gen {
		t.Fatalf("org a not saved with generation %d at revocation: %+v", first.gen, cp)
	}
	waitFor("org b published under the second lease", func() bool { return published("b") })
	if owned := p.Owned(); !slices.Equal(owned, []string{"a", "b"}) {
		t.Fatalf("owned %v under a lease of [a b]", owned)
	}

	// A lease the coordinator no longer confirms: nothing more is published.
	second.mu.Lock()
	second.broken = true
	second.mu.Unlock()
	n := len(bus.on("calls"))
	api.set(fakeRecord{at: t1, raw: callLog("c1", t1, "completed", "")}, fakeRecord{at: t2, raw: callLog("c2", t2, "completed", "")})
	clock.Add(2 * time.Minute)
	time.Sleep(300 * time.Millisecond) // several polls
	if got := len(bus.on("calls")); got != n {
		t.Fatalf("%d events published after the lease was lost", got-n)
	}
	second.mu.Lock()
	checks := second.checks
	second.mu.Unlock()
	if checks == 0 {
		t.Fatal("the lease was never checked")
	}

	// A lease without a: its gauges go with it, so that a frozen pause or
	// lag of an org another producer now polls alerts no one.
	gauges := []string{"callstream_producer_window_lag_seconds", "callstream_producer_org_paused", "callstream_producer_last_poll_timestamp_seconds"}
	if got := orgSeries(t, reg, "a", gauges); len(got) != len(gauges) {
		t.Fatalf("org a has series of %v while owned, want all of %v", got, gauges)
	}
	own.next <- struct{}{}
	<-own.held
	if got := orgSeries(t, reg, "a", gauges); len(got) > 0 {
		t.Fatalf("org a still has series of %v after it was revoked", got)
	}
}

// orgSeries returns the names among names that have a series of org in reg.
func orgSeries(t *testing.T, reg *prometheus.Registry, org string, names []string) []string {
	t.Helper()
	var out []string
	for _, name := range names {
		if _, ok := series(t, reg, name, "org")[org]; ok {
			out = append(out, name)
		}
	}
	return out
}
