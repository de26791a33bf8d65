package producer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// groupTest is a cluster of in-process producers sharing organizations
// through a consumer group on the real broker, under one prefix.
type groupTest struct {
	t      *testing.T
	kcfg   kafkabus.Config
	prefix string
	url    string
	token  string
	cfg    Config
	logger *slog.Logger

	mu   sync.Mutex
	gens map[int64]bool // every generation a producer held
}

// member is one running producer.
type member struct {
	id   string
	p    *Producer
	stop context.CancelFunc
	done chan error
}

// leaseCounter is producer.Ownership over kafkabus.GroupOwner that notes
// every generation: what cmd/callstream does, plus the bookkeeping.
type leaseCounter struct {
	g  *kafkabus.GroupOwner
	gt *groupTest
}

func (o leaseCounter) Run(ctx context.Context, hold func(context.Context, Lease)) error {
	return o.g.Run(ctx, func(c context.Context, l *kafkabus.Lease) {
		o.gt.mu.Lock()
		o.gt.gens[l.Generation()] = true
		o.gt.mu.Unlock()
		hold(c, l)
	})
}

func (g *groupTest) start(id string) *member {
	t := g.t
	ctx := context.Background()
	topic := schemas.TopicName(g.prefix, schemas.CallsTopic)
	kv, err := kafkabus.NewKV(ctx, g.kcfg, schemas.TopicName(g.prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config = g.kcfg
	pub, err := kafkabus.NewPublisher(pcfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	owner, err := kafkabus.NewGroupOwner(ctx, g.kcfg, kafkabus.OwnerConfig{
		Group: g.prefix + "producers", Topic: schemas.TopicName(g.prefix, schemas.ProducerOrgsTopic),
		Partitions: g.cfg.OrgPartitions, SessionTimeout: g.cfg.GroupSessionTimeout, RebalanceTimeout: 20 * time.Second,
		Logger: g.logger.With("producer", id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	client, err := unpod.New(unpod.Config{
		BaseURL: g.url, Token: g.token, RateLimit: -1, InitialBackoff: 20 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, MaxRetryTime: 30 * time.Second, Timeout: 10 * time.Second, ClientID: id,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(g.cfg, Deps{
		Source: client, Publisher: pub, Topic: topic, DLQTopic: schemas.TopicName(g.prefix, schemas.DLQTopic),
		Store: NewKVStore(kv), EventLog: kafkabus.NewTopicLog(g.kcfg, topic), Logger: g.logger.With("producer", id),
		Ownership: leaseCounter{owner, g},
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	m := &member{id: id, p: p, stop: stop, done: make(chan error, 1)}
	go func() { m.done <- p.Run(rctx) }()
	t.Cleanup(func() { stop(); <-m.done })
	return m
}

// halt stops a member as SIGTERM would and waits for it.
func (m *member) halt(t *testing.T) {
	t.Helper()
	m.stop()
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("producer %s: %v", m.id, err)
		}
		m.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("producer %s did not stop within 30s", m.id)
	}
}

// waitShared waits until the members own every org between them, each
// org once, every member at least one, and checks at every look that no
// org is owned twice.
func (g *groupTest) waitShared(orgs []string, ms ...*member) {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		owner := map[string]string{}
		complete := true
		for _, m := range ms {
			owned := m.p.Owned()
			complete = complete && len(owned) > 0
			for _, org := range owned {
				if o, ok := owner[org]; ok {
					t.Fatalf("org %s owned by %s and %s at once", org, o, m.id)
				}
				owner[org] = m.id
			}
		}
		if complete && len(owner) == len(orgs) {
			t.Logf("%d producers share %d orgs: %v", len(ms), len(orgs), owner)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orgs were not shared by %d producers within 60s: %v", len(ms), owner)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGroupOwnership runs producers in one process against the simulator
// and the real broker: two share twelve orgs, a third joins, one stops,
// the others take its orgs over; then the topic must hold the ground truth
// of every org, each (call_key, revision) once and in order, and the
// simulator's request log must show each org passed from producer to
// producer no more often than there were generations: never polled by two
// producers in turn.
func TestGroupOwnership(t *testing.T) {
	t.Parallel()
	const speed = 300
	origin := time.Now().UTC()
	clock := NewSimClock(speed, origin)
	orgs := make([]string, 12)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org%02d", i)
	}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = orgs, "group-token", nil, false
	sc.Start, sc.CallsPerMinute = origin.Add(-20*time.Minute), 10
	sc.LateRecords, sc.Updates, sc.PageShifts = 0.2, 0.2, 0.1
	sc.Clock, sc.RecordRequests = clock.Now, true
	sim, url := startSim(t, sc)

	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	ctx := context.Background()
	for _, tp := range []struct {
		name string
		n    int
	}{{schemas.CallsTopic, 3}, {schemas.DLQTopic, 1}} {
		if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: schemas.TopicName(prefix, tp.name), Partitions: tp.n}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.SimClock = clock.String()
	cfg.PollInterval, cfg.IdlePollInterval = 30*time.Second, 30*time.Second
	cfg.Lookback, cfg.PageSize = 30*time.Minute, 100
	// The top age outlasts the longest call (about 50 minutes), so the
	// final content of every call before the cut is read.
	cfg.RescanAges = []time.Duration{0, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, 65 * time.Minute}
	cfg.OrgPartitions, cfg.GroupSessionTimeout = 6, 6*time.Second
	cfg.SaveInterval = 200 * time.Millisecond
	logs := &syncBuffer{}
	g := &groupTest{t: t, kcfg: kcfg, prefix: prefix, url: url, token: sc.Token, cfg: cfg, gens: map[int64]bool{},
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	defer func() {
		if t.Failed() {
			t.Logf("producer logs:\n%s", logs.String())
		}
	}()

	a, b := g.start("p-a"), g.start("p-b")
	g.waitShared(orgs, a, b)
	time.Sleep(2 * time.Second)
	c := g.start("p-c")
	g.waitShared(orgs, a, b, c)
	time.Sleep(2 * time.Second)
	b.halt(t)
	g.waitShared(orgs, a, c)
	cut := clock.Now()

	// Run until every org's top rung passed the cut in the saved state.
	kv, err := kafkabus.NewKV(ctx, kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	store := NewKVStore(kv)
	deadline := time.Now().Add(90 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		st, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		passed := len(st.Orgs) == len(orgs)
		for _, cp := range st.Orgs {
			passed = passed && !cp.Low().Before(cut)
		}
		if passed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the top rungs did not pass the cut %s within 90s", cut)
		}
	}
	a.halt(t)
	c.halt(t)

	latest := checkStream(t, readTopic(t, kcfg, schemas.TopicName(prefix, schemas.CallsTopic)))
	total := 0
	for _, org := range orgs {
		truth := sim.GroundTruthWindow(org, sim.Start(), cut, clock.Now())
		total += len(truth)
		checkTruth(t, org, truth, latest, sim.Start(), cut)
	}
	if total < 500 {
		t.Errorf("only %d calls checked; too few to mean much", total)
	}
	g.mu.Lock()
	gens := len(g.gens)
	g.mu.Unlock()
	handOvers := checkHandOvers(t, sim.Requests(), gens)
	t.Logf("%d calls checked, %d generations, %d hand-overs of an org between producers", total, gens, handOvers)
}

// checkHandOvers checks the simulator's request log: per org, the client
// may change only at a rebalance, so at most once per generation after
// the first; two producers polling one org would alternate at every poll.
// It returns the number of hand-overs seen.
func checkHandOvers(t *testing.T, reqs []unpodsim.Request, generations int) int {
	t.Helper()
	last := map[string]string{}
	switches := map[string]int{}
	clients := map[string][]string{}
	for _, r := range reqs {
		if prev, ok := last[r.Org]; ok && prev != r.Client {
			switches[r.Org]++
		}
		last[r.Org] = r.Client
		if !slices.Contains(clients[r.Org], r.Client) {
			clients[r.Org] = append(clients[r.Org], r.Client)
		}
	}
	total := 0
	for org, n := range switches {
		total += n
		if n > generations-1 {
			t.Errorf("org %s changed hands %d times in %d generations (clients %v): polled by two producers at once", org, n, generations, clients[org])
		}
	}
	if len(reqs) == 0 {
		t.Error("the simulator logged no request")
	}
	return total
}

// TestDiscoveryFollowsOrgs adds an organization to the simulator while a
// producer runs without org_handles, and removes another: the new one's
// calls must be on the topic within discovery_interval plus one poll (and
// the time its restore and first batch take, at most restoreGrace), and the
// removed one must no longer be polled after the same time.
func TestDiscoveryFollowsOrgs(t *testing.T) {
	t.Parallel()
	const speed = 100
	const restoreGrace = 3 * time.Second // join, state load, first sample saved, first batch acknowledged
	origin := time.Now().UTC()
	clock := NewSimClock(speed, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = []string{"alpha", "beta"}, "disc-token", nil, false
	sc.Start, sc.CallsPerMinute = origin.Add(-20*time.Minute), 10
	sc.Clock, sc.RecordRequests = clock.Now, true
	sim, url := startSim(t, sc)

	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	ctx := context.Background()
	for _, name := range []string{schemas.CallsTopic, schemas.DLQTopic} {
		if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: schemas.TopicName(prefix, name), Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.SimClock = clock.String()
	cfg.Lookback = 15 * time.Minute
	cfg.RescanAges = []time.Duration{0, 2 * time.Minute}
	cfg.OrgPartitions, cfg.GroupSessionTimeout = 4, 6*time.Second
	cfg.DiscoveryInterval = 2 * time.Second * speed
	wait := clock.Wall(cfg.DiscoveryInterval) + clock.Wall(cfg.PollInterval) + restoreGrace
	logs := &syncBuffer{}
	g := &groupTest{t: t, kcfg: kcfg, prefix: prefix, url: url, token: sc.Token, cfg: cfg, gens: map[int64]bool{},
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	defer func() {
		if t.Failed() {
			t.Logf("producer logs:\n%s", logs.String())
		}
	}()
	m := g.start("p-disc")
	g.waitShared([]string{"alpha", "beta"}, m)
	topic := schemas.TopicName(prefix, schemas.CallsTopic)
	for _, e := range readTopic(t, kcfg, topic) {
		if e.Org == "gamma" {
			t.Fatal("gamma published before it existed")
		}
	}

	sim.AddOrg("gamma")
	sim.RemoveOrg("beta")
	changed := time.Now()
	var firstGamma time.Duration
	for firstGamma == 0 {
		for _, e := range readTopic(t, kcfg, topic) {
			if e.Org == "gamma" {
				firstGamma = time.Since(changed)
				break
			}
		}
		if firstGamma == 0 && time.Since(changed) > wait {
			t.Fatalf("no call of the added org on the topic %s after it appeared (discovery_interval %s + poll %s + %s)",
				time.Since(changed).Round(time.Millisecond), clock.Wall(cfg.DiscoveryInterval), clock.Wall(cfg.PollInterval), restoreGrace)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Until(changed.Add(wait)))
	if owned := m.p.Owned(); !slices.Equal(owned, []string{"alpha", "gamma"}) {
		t.Errorf("owned %v after the change, want [alpha gamma]", owned)
	}
	var lastBeta time.Time
	for _, r := range sim.Requests() {
		if r.Org == "beta" {
			lastBeta = r.At
		}
	}
	time.Sleep(time.Second) // one more second in which beta must not be polled
	for _, r := range sim.Requests() {
		if r.Org == "beta" && r.At.After(lastBeta) {
			t.Errorf("beta polled at %s, %s after it vanished", r.At.Format(time.RFC3339Nano), r.At.Sub(changed))
			break
		}
	}
	m.halt(t)
	checkStream(t, readTopic(t, kcfg, topic))
	t.Logf("the added org's first call was on the topic %s after it appeared (bound %s); beta last polled %s after it vanished",
		firstGamma.Round(time.Millisecond), wait, lastBeta.Sub(changed).Round(time.Millisecond))
}
