package producer

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// kafkaDeps wires a producer to the real broker under a fresh prefix.
func kafkaDeps(t testing.TB, src Source, logger *slog.Logger) (Deps, kafkabus.Config) {
	t.Helper()
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	topic := schemas.TopicName(prefix, schemas.CallsTopic)
	dlq := schemas.TopicName(prefix, schemas.DLQTopic)
	ctx := context.Background()
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: dlq, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	kv, err := kafkabus.NewKV(ctx, kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	store := NewKVStore(kv)
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config = kcfg
	pub, err := kafkabus.NewPublisher(pcfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return Deps{Source: src, Publisher: pub, Topic: topic, DLQTopic: dlq, Store: store, EventLog: kafkabus.NewTopicLog(kcfg, topic), Logger: logger}, kcfg
}

// TestLateAndChangedRecords steps a simulated clock shared by the simulator
// and the producer through two and a half hours of traffic with late
// records, updates and page shifts, polling at every step, and checks that
// late records are published, changes become revision 2, and the topic
// ends up equal to the simulator's ground truth.
//
// It runs twice: at the defaults, where the recent re-read of every poll
// holds the whole last 30 minutes in one page and serves rung 0 and the
// young rungs, and with pages of 50 records, where that page is only a
// head start and every rung reads its own windows.
func TestLateAndChangedRecords(t *testing.T) {
	t.Parallel()
	def := DefaultConfig()
	for _, tc := range []struct {
		name     string
		pageSize int
		ages     []time.Duration
		run      time.Duration
	}{
		{name: "defaults", pageSize: def.PageSize, ages: def.RescanAges, run: 180 * time.Minute},
		{name: "pages of 50", pageSize: 50, ages: []time.Duration{0, 5 * time.Minute, 30 * time.Minute, 90 * time.Minute}, run: 150 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lateAndChanged(t, tc.pageSize, tc.ages, tc.run)
		})
	}
}

func lateAndChanged(t *testing.T, pageSize int, ages []time.Duration, run time.Duration) {
	t0 := time.Now().UTC().Truncate(time.Minute)
	clock := &fakeClock{now: t0}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = []string{"acme"}, "tok", nil, false
	sc.Start, sc.CallsPerMinute = t0.Add(-20*time.Minute), 20
	sc.LateRecords, sc.LateDelayMax = 0.3, 10*time.Minute
	sc.Updates, sc.UpdateDelayMax = 0.3, 10*time.Minute
	sc.PageShifts, sc.ShiftSpread = 0.1, 5*time.Minute
	sc.Clock = clock.Now
	sim, url := startSim(t, sc)

	deps, kcfg := kafkaDeps(t, newClient(t, url, "tok"), nil)
	deps.Now = clock.Now
	cfg := DefaultConfig()
	cfg.Orgs, cfg.Lookback, cfg.PageSize = []string{"acme"}, 20*time.Minute, pageSize
	cfg.RescanAges = ages
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	end := t0.Add(run)
	for clock.Now().Before(end) {
		if err := p.pollOrg(ctx, "acme"); err != nil {
			t.Fatalf("poll at %s: %v", clock.Now(), err)
		}
		clock.Add(cfg.PollInterval)
	}
	latest := checkStream(t, readTopic(t, kcfg, deps.Topic))

	// Every call created before cut has been read by the top rung.
	cut := p.checkpoint("acme").Low()
	if cut.Before(t0.Add(30 * time.Minute)) {
		t.Fatalf("top rung only reached %s", cut)
	}
	truth := sim.GroundTruthWindow("acme", sc.Start, cut, clock.Now())
	checkTruth(t, "acme", truth, latest, sc.Start, cut)

	late, changed := 0, 0
	for _, e := range latest {
		if e.Revision == 1 && e.ObservedAt.Sub(e.CreationTime) >= 10*time.Minute {
			// Prove it was not visible earlier: absent from the API ten
			// minutes after creation.
			visible := false
			for _, r := range sim.GroundTruthWindow("acme", e.CreationTime, e.CreationTime.Add(time.Nanosecond), e.CreationTime.Add(10*time.Minute)) {
				if Identify("acme", &r).CallKey == e.CallKey {
					visible = true
				}
			}
			if !visible {
				late++
			}
		}
		if e.Revision >= 2 && e.Type() == schemas.TypeCallUpdated {
			changed++
		}
	}
	revs := map[string]schemas.CallEvent{}
	statusChanges := 0
	for _, e := range readTopic(t, kcfg, deps.Topic) {
		k := e.CallKey
		if e.Revision == 1 {
			revs[k] = e.CallEvent
		} else if e.Revision == 2 && revs[k].CallStatus != e.CallStatus && e.Headers[schemas.HeaderType] == schemas.TypeCallUpdated {
			statusChanges++
		}
	}
	t.Logf("%d calls, %d published late (>= 10 min after creation), %d updated, %d status changes as revision 2; stats %+v",
		len(truth), late, changed, statusChanges, p.Stats())
	if late == 0 {
		t.Error("no record that appeared 10 minutes or more after its creation time was published")
	}
	if statusChanges == 0 {
		t.Error("no status change was published as an updated event with revision 2")
	}
	if p.Stats().Duplicates == 0 {
		t.Error("rescans dropped no duplicate: the gate or the ladder does not work")
	}
}

// TestBadInput polls a simulator that serves undecodable records and
// malformed pages, for three orgs of which the token may see only one:
// each problem is logged clearly, and every good record is published.
func TestBadInput(t *testing.T) {
	t.Parallel()
	origin := time.Now().UTC()
	clock := NewSimClock(60, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = []string{"acme", "globex"}, "admin", nil, false
	sc.Tokens = map[string][]string{"limited": {"acme"}}
	sc.Start, sc.CallsPerMinute = origin.Add(-10*time.Minute), 30
	sc.LateRecords, sc.Updates, sc.PageShifts = 0, 0, 0
	sc.InvalidRecords = 0.05
	sc.Faults.Malformed = 0.15
	sc.Clock = clock.Now
	sim, url := startSim(t, sc)

	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := newClient(t, url, "limited")
	deps, kcfg := kafkaDeps(t, client, logger)
	cfg := DefaultConfig()
	cfg.SimClock = clock.String()
	cfg.Orgs, cfg.Lookback, cfg.PageSize = []string{"acme", "globex", "nosuch"}, 15*time.Minute, 100 // more than the history: startup takes simulated time
	cfg.SettleLag, cfg.RescanAges = 30*time.Second, []time.Duration{0, 2 * time.Minute}
	cfg.OrgBackoff, cfg.OrgBackoffMax = time.Minute, 5*time.Minute
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	// Run until acme has read a few simulated minutes past the start, in
	// wall time however long a loaded machine takes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for p.checkpoint("acme").Rungs[0].Frontier.Before(origin.Add(3*time.Minute)) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	defer func() {
		if t.Failed() {
			t.Log(out)
		}
	}()
	for _, want := range []string{
		`"msg":"organization paused: the API refused its requests; fix the token, Org-Handle or base URL","org":"globex"`,
		`"msg":"organization paused: the API refused its requests; fix the token, Org-Handle or base URL","org":"nosuch"`,
		`403`, `404`,
		`"msg":"API record dead-lettered; further records of this kind are counted in callstream_producer_dead_lettered_total, not logged","org":"acme","kind":"undecodable"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if strings.Contains(out, "limited") {
		t.Error("the token appears in the log")
	}
	cut := p.checkpoint("acme").Rungs[0].Frontier
	if cut.Before(origin) {
		t.Fatalf("acme only reached %s: the failing orgs held it up", cut)
	}
	latest := checkStream(t, readTopic(t, kcfg, deps.Topic))
	truth := sim.GroundTruthWindow("acme", sc.Start, cut, clock.Now())
	checkTruth(t, "acme", truth, latest, sc.Start, cut)
	invalid := sim.InvalidCount("acme", sc.Start, cut, clock.Now())
	if st := p.Stats(); st.Invalid < int64(invalid) || invalid == 0 {
		t.Errorf("counted %d invalid records, the simulator served %d", st.Invalid, invalid)
	}
	// Every undecodable record is on the real DLQ topic, once.
	dlq := map[string]int{}
	if err := kafkabus.ReadRange(context.Background(), kcfg, deps.DLQTopic, nil, func(m kafka.Message) error {
		dlq[string(m.Value)]++
		if string(m.Key) != "acme" {
			t.Errorf("DLQ record key %q, want the org", m.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for raw, n := range dlq {
		if n != 1 {
			t.Errorf("dead-lettered %d times: %s", n, raw)
		}
	}
	if len(dlq) != invalid {
		t.Errorf("%d distinct records on the DLQ, the simulator served %d undecodable ones before the cut", len(dlq), invalid)
	}
	t.Logf("acme: %d good calls published, %d invalid served; stats %+v", len(truth), invalid, p.Stats())
}
