package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// TestBenchProducerFailover measures the fail-over of `callstream produce`
// processes sharing organizations: the owner of an org is SIGKILLed and the
// time until the first event of that org written by the new owner is
// taken from the broker's timestamps, over several rounds. The session
// timeout (6 s here) is printed beside it: the coordinator waits that long
// for a dead member, the rest is rebalance, restore and first poll.
func TestBenchProducerFailover(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the producer fail-over benchmark")
	}
	brokers := testenv.Kafka(t)
	const rounds = 4
	const session = 6 * time.Second
	dir := t.TempDir()
	bin := filepath.Join(dir, "callstream")
	if err := e2eGoBuild(bin); err != nil {
		t.Fatal(err)
	}
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	prefix := testenv.Prefix(t)
	clock := producer.NewSimClock(e2eSpeed, time.Now().UTC())
	orgs := []string{"fa", "fb", "fc", "fd", "fe", "ff"}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.DailyShape, sc.CallsPerMinute, sc.Incidents = orgs, "fo-token", false, 30, nil
	sc.Start, sc.Clock, sc.RecordRequests = clock.Now().Add(-30*time.Minute), clock.Now, true
	sim, url := e2eStartSim(t, sc)
	yaml := fmt.Sprintf(`unpod: {base_url: %q, token: fo-token, rate_limit: -1, initial_backoff: 50ms, max_backoff: 1s}
producer: {sim_clock: %q, poll_interval: 30s, settle_lag: 30s, lookback: 1h, rescan_ages: [0s, 2m, 10m], org_partitions: 12, group_session_timeout: %s}
log: {format: text, level: info}
`, url, clock.String(), session)
	cfgFile := filepath.Join(dir, "callstream.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*e2eProc{}
	for _, name := range []string{"fo-1", "fo-2", "fo-3"} {
		procs[name] = newProducerProc(t, dir, name, bin, brokers, prefix, cfgFile)
		procs[name].Start()
	}
	topic := schemas.TopicName(prefix, schemas.CallsTopic)
	// owner is the client that polled org last (the simulator's log).
	owner := func(org string) string {
		var last string
		for _, r := range sim.Requests() {
			if r.Org == org {
				last = r.Client
			}
		}
		return last
	}
	var took []time.Duration
	for round := range rounds {
		time.Sleep(10 * time.Second) // the group settles after the last restart
		org := orgs[round%len(orgs)]
		victim := owner(org)
		p, ok := procs[victim]
		if !ok {
			t.Fatalf("round %d: no producer polls org %s", round, org)
		}
		killed := time.Now()
		p.Kill()
		var first time.Time
		if !e2eWaitFor(60*time.Second, 200*time.Millisecond, func() bool {
			for _, m := range e2eReadTopic(t, kcfg, topic) {
				if e2eHeader(m, schemas.HeaderSource) == schemas.Source(org) && m.Time.After(killed) &&
					(first.IsZero() || m.Time.Before(first)) {
					first = m.Time
				}
			}
			return !first.IsZero()
		}) {
			t.Fatalf("round %d: no event of org %s within 60 s of killing its owner %s", round, org, victim)
		}
		took = append(took, first.Sub(killed))
		t.Logf("round %d: owner %s of %s SIGKILLed; first event by the new owner after %s", round, victim, org, first.Sub(killed).Round(time.Millisecond))
		p.Start()
	}
	slices.Sort(took)
	ps := e2ePercentiles(took, 50, 100)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("BENCH producer fail-over (SIGKILL of an org's owner to the new owner's first publish of it), %d rounds: p50 %s, max %s; baseline: session timeout %s; load %s\n",
		rounds, ps[0].Round(time.Millisecond), ps[1].Round(time.Millisecond), session, strings.TrimSpace(string(load)))
}

// newProducerProc is a `callstream produce` process of the benchmarks: its
// own state directory, client id and listener, the test's broker and
// topic prefix.
func newProducerProc(t *testing.T, dir, name, bin string, brokers []string, prefix, cfgFile string) *e2eProc {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_BROKERS=") {
			env = append(env, kv)
		}
	}
	env = append(env, "KAFKA_BROKERS="+strings.Join(brokers, ","), "CALLSTREAM_TOPIC_PREFIX="+prefix, "UNPOD_CLIENT_ID="+name,
		"CALLSTREAM_HTTP_LISTEN="+freeAddr(t), "CALLSTREAM_STATE_DIR="+filepath.Join(dir, "state-"+name))
	return newE2EProc(t, dir, name, bin, env, "produce", "--config", cfgFile)
}
