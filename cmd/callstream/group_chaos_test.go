package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// TestProducerGroupChaos runs `callstream produce` as processes sharing 30
// organizations through the producers' consumer group on a private
// broker: three start, one is SIGKILLed, a fourth is added, one is
// SIGSTOPped for longer than the session timeout and then SIGCONTed, and
// the broker is restarted once. Afterwards every ground-truth call created
// before the cut is on the topic, each (org, call_key, revision) exactly
// once and in order, and the simulator's request log shows every org
// passed between producers only at a rebalance: never polled by two in
// turn, except for the page requests the stopped producer had in flight
// when it resumed, before its lease check refused.
//
// A batch the stopped producer held across its pause is refused by the
// broker (fenceStaleWrites; the count is logged). What the test still
// excuses, and logs, is the residual window of producer/doc.go: second
// copies of event ids written by the resumed producer within a second of
// SIGCONT (staleWrites).
func TestProducerGroupChaos(t *testing.T) {
	testenv.Kafka(t) // skips (or fails under CALLSTREAM_INTEGRATION=1) like every broker test
	began := time.Now()
	dir := t.TempDir()
	bin := filepath.Join(dir, "callstream")
	if err := e2eGoBuild(bin); err != nil {
		t.Fatal(err)
	}
	broker := e2eStartBroker(t)
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = []string{broker.Addr}
	prefix := testenv.Topic(t, "") + "."

	clock := producer.NewSimClock(e2eSpeed, time.Now().Add(15*time.Minute).UTC())
	orgs := make([]string, 30)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org%02d", i)
	}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.DailyShape, sc.CallsPerMinute, sc.Incidents = orgs, "group-token", false, 4, nil
	sc.Start = clock.Now().Add(-time.Hour)
	sc.LateRecords, sc.Updates, sc.PageShifts = 0.1, 0.1, 0.05
	sc.LateDelayMax, sc.UpdateDelayMax, sc.ShiftSpread = time.Minute, 2*time.Minute, 3*time.Minute
	sc.Clock, sc.RecordRequests = clock.Now, true
	sim, url := e2eStartSim(t, sc)
	yaml := fmt.Sprintf(`unpod: {base_url: %q, token: group-token, rate_limit: -1, initial_backoff: 50ms, max_backoff: 1s}
producer:
  sim_clock: %q
  poll_interval: 30s
  settle_lag: %s
  lookback: 3h
  rescan_ages: [%s]
  org_backoff: 30s
  org_backoff_max: 2m
  org_partitions: 12
  group_session_timeout: 6s
log: {format: text, level: info}
`, url, clock.String(), e2eSettle, e2eRescanAges)
	cfgFile := filepath.Join(dir, "callstream.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var procs []*e2eProc
	start := func(name string) *e2eProc {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KAFKA_BROKERS=") {
				env = append(env, kv)
			}
		}
		env = append(env, "KAFKA_BROKERS="+broker.Addr, "CALLSTREAM_TOPIC_PREFIX="+prefix, "UNPOD_CLIENT_ID="+name,
			"CALLSTREAM_HTTP_LISTEN="+freeAddr(t), "CALLSTREAM_STATE_DIR="+filepath.Join(dir, "state-"+name))
		p := newE2EProc(t, dir, name, bin, env, "produce", "--config", cfgFile)
		p.Start()
		procs = append(procs, p)
		return p
	}
	t.Cleanup(func() {
		if t.Failed() {
			keep := os.Getenv("CALLSTREAM_TEST_KEEP_LOGS") // a directory to copy the producers' logs to
			for _, p := range procs {
				t.Logf("%s log (last lines):\n%s", p.name, p.Tail(30))
				if data, err := os.ReadFile(p.log); err == nil && keep != "" {
					_ = os.WriteFile(filepath.Join(keep, p.name+".log"), data, 0o644)
				}
			}
		}
	})
	step := func(what string) { t.Logf("%5.1fs: %s", time.Since(began).Seconds(), what) }

	p1, p2, p3 := start("p1"), start("p2"), start("p3")
	step("3 producers started")
	time.Sleep(10 * time.Second)
	p1.Kill()
	step("p1 SIGKILLed")
	time.Sleep(3 * time.Second)
	p4 := start("p4")
	step("p4 started")
	time.Sleep(8 * time.Second)
	p2.mu.Lock()
	p2proc := p2.cmd.Process
	p2.mu.Unlock()
	if err := p2proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	step("p2 SIGSTOPped")
	time.Sleep(12 * time.Second) // twice the session timeout
	if err := p2proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	step("p2 SIGCONTed")
	time.Sleep(5 * time.Second)
	if err := broker.Down(); err != nil {
		t.Fatal(err)
	}
	step("broker stopped")
	time.Sleep(2 * time.Second)
	if err := broker.Up(); err != nil {
		t.Fatal(err)
	}
	step("broker restarted")
	cut := clock.Now()

	kv, err := kafkabus.NewKV(context.Background(), kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	store := producer.NewKVStore(kv)
	live := []*e2eProc{p2, p3, p4}
	if !e2eWaitFor(150*time.Second, time.Second, func() bool {
		for _, p := range live {
			if u := p.Unexpected(); len(u) > 0 {
				t.Fatalf("%s: %s", p.name, strings.Join(u, "; "))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := store.Load(ctx)
		if err != nil {
			return false
		}
		passed := len(st.Orgs) == len(orgs)
		for _, cp := range st.Orgs {
			passed = passed && !cp.Low().Before(cut)
		}
		return passed
	}) {
		t.Fatalf("the top rungs did not pass the cut %s within 150 s", cut)
	}
	step("every org's top rung passed the cut")
	for _, p := range live {
		if err := p.Stop(40 * time.Second); err != nil {
			t.Error(err)
		}
	}
	step("producers stopped")

	msgs, stale := staleWrites(e2eReadTopic(t, kcfg, schemas.TopicName(prefix, schemas.CallsTopic)), resumed)
	for _, m := range stale {
		t.Logf("the fencing window (producer/doc.go): event %s of %s written again at partition %d offset %d, timestamp %s (SIGSTOP %s, SIGCONT %s)",
			e2eHeader(m, schemas.HeaderID), e2eHeader(m, schemas.HeaderSource), m.Partition, m.Offset,
			m.Time.Format("15:04:05.000"), stopped.Format("15:04:05.000"), resumed.Format("15:04:05.000"))
	}
	if log, err := os.ReadFile(p2.log); err == nil {
		// Whether p2 had a batch in flight at SIGSTOP is chance: logged, not asserted.
		t.Logf("publishes of the resumed p2 the broker refused as late: %d", strings.Count(string(log), "arrived too late"))
	}
	logRepeats(t, msgs)
	_, latest := e2eCheckStream(t, msgs)
	truth := 0
	for _, org := range orgs {
		truth += e2eCheckTruth(t, sim, org, cut, clock.Now(), latest)
	}
	gens := maxGeneration(t, procs)
	handOvers, stragglers := checkOwnershipLog(t, sim.Requests(), gens, "p2", resumed, 2*time.Second)
	t.Logf("%d ground-truth calls of %d orgs checked; %d generations; %d hand-overs; %d requests of the resumed p2 in its first 2 s; %d events written twice through the fencing window",
		truth, len(orgs), gens, handOvers, stragglers, len(stale))
	if truth < 5000 {
		t.Errorf("only %d ground-truth calls checked; too few to mean much", truth)
	}
}

var generationRe = regexp.MustCompile(`lease="generation (\d+),`)

// maxGeneration is the highest generation any producer logged: the group
// is new, so generations ran from 1 to it.
func maxGeneration(t *testing.T, procs []*e2eProc) int {
	t.Helper()
	n := 0
	for _, p := range procs {
		data, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range generationRe.FindAllStringSubmatch(string(data), -1) {
			g, _ := strconv.Atoi(m[1])
			n = max(n, g)
		}
	}
	if n == 0 {
		t.Fatal("no producer logged an assignment")
	}
	return n
}

// checkOwnershipLog checks the simulator's request log: per org, the
// polling client may change only at a rebalance, so at most once per
// generation after the first. Requests of the stale client within grace
// of its resumption are left out (pages it had fetched ahead before its
// next lease check) and counted.
func checkOwnershipLog(t *testing.T, reqs []unpodsim.Request, generations int, stale string, resumed time.Time, grace time.Duration) (handOvers, stragglers int) {
	t.Helper()
	last := map[string]string{}
	switches := map[string]int{}
	seq := map[string][]string{}
	for _, r := range reqs {
		if r.Client == stale && !r.At.Before(resumed) && r.At.Before(resumed.Add(grace)) {
			stragglers++
			continue
		}
		if prev, ok := last[r.Org]; ok && prev != r.Client {
			switches[r.Org]++
			seq[r.Org] = append(seq[r.Org], r.Client+"@"+r.At.Format("15:04:05.000"))
		} else if !ok {
			seq[r.Org] = append(seq[r.Org], r.Client+"@"+r.At.Format("15:04:05.000"))
		}
		last[r.Org] = r.Client
	}
	for org, n := range switches {
		handOvers += n
		if n > generations-1 {
			t.Errorf("org %s changed hands %d times in %d generations: polled by two producers at once (%s)",
				org, n, generations, strings.Join(seq[org], " "))
		}
	}
	if len(reqs) == 0 {
		t.Error("the simulator logged no request")
	}
	return handOvers, stragglers
}

// staleWrites separates second copies of event ids (so at a higher offset,
// in the same partition) whose record timestamp, the moment the producer's
// lease was last confirmed, lies within a second after the SIGCONT: the
// residual window producer/doc.go describes, seen as the resumed producer
// publishing, within milliseconds of resuming, events the new owner had
// published during the pause. A copy stamped before the SIGSTOP is no
// longer excused: the broker refuses it (fenceStaleWrites). Every other
// repeated event stays in rest, where e2eCheckStream reports it.
func staleWrites(msgs []kafka.Message, resumed time.Time) (rest, stale []kafka.Message) {
	seen := map[string]bool{}
	// Record timestamps are whole milliseconds.
	resumed = resumed.Truncate(time.Millisecond)
	in := func(t, from, to time.Time) bool { return !t.Before(from) && !t.After(to) }
	for _, m := range msgs {
		id := e2eHeader(m, schemas.HeaderID)
		if seen[id] && in(m.Time, resumed, resumed.Add(time.Second)) {
			stale = append(stale, m)
			continue
		}
		seen[id] = true
		rest = append(rest, m)
	}
	return rest, stale
}

// logRepeats logs both copies of every event id on the topic twice, with
// their timestamps, so that a failure says when each was written.
func logRepeats(t *testing.T, msgs []kafka.Message) {
	t.Helper()
	first := map[string]kafka.Message{}
	for _, m := range msgs {
		id := e2eHeader(m, schemas.HeaderID)
		if f, ok := first[id]; ok {
			t.Logf("event %s of %s: partition %d offset %d written %s, again at offset %d written %s",
				id, e2eHeader(m, schemas.HeaderSource), f.Partition, f.Offset, f.Time.Format("15:04:05.000"), m.Offset, m.Time.Format("15:04:05.000"))
			continue
		}
		first[id] = m
	}
}
