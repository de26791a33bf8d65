package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
	_ "modernc.org/sqlite" // the SQLite driver, for reading call_logs back

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// The crash tests (issue 13): the built binary, SIGKILLed at random points
// during a catch-up of more than 10,000 calls while another process holds
// an exclusive lock on the SQLite file of the storage sink, then run to the
// end. Nothing may be missing, extra, duplicated or stale anywhere: on the
// calls topic, in call_logs (against the simulator's ground truth), in the
// lake (each event exactly once, also counted by DuckDB), at the webhook
// receiver (every event id acknowledged, every signature valid).
const (
	crashKills     = 5
	crashOrgs      = "acme,globex"
	crashPerMinute = 40 // per org: 2 orgs x 40 x 150 simulated minutes of history = 12,000 calls
	crashHistory   = 150 * time.Minute
	crashLockFor   = 15 * time.Second
)

// TestCrashEmbedded is the crash test of `callstream run`, embedded mode.
func TestCrashEmbedded(t *testing.T) {
	testenv.Kafka(t) // integration-mode rules: the test is long, it runs with the others in make test
	s := newCrashScenario(t)
	run := s.proc("run", nil, "run", "--config", s.cfgFile)
	s.storage = filepath.Join(s.dir, "state-run", "callstream.db")
	s.lakeDir = filepath.Join(s.dir, "state-run", "lake")
	s.crash([]*e2eProc{run}, func() []*e2eProc { return []*e2eProc{run} })
	s.waitCut(func(ctx context.Context) (*producer.State, error) {
		return producer.NewFileStore(filepath.Join(s.dir, "state-run", producerStateFile)).Load(ctx)
	}, run)
	s.waitDrained(func() error { return s.metricsLagZero(run) }, run)
	if err := run.Stop(40 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.check(s.readEmbedded(filepath.Join(s.dir, "state-run", busFile)))
}

// TestCrashKafka is the same crash test for `callstream produce` and
// `callstream consume` on the real broker: both are killed.
func TestCrashKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	s := newCrashScenario(t)
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	prefix := testenv.Prefix(t)
	s.storage = filepath.Join(s.dir, "storage.db")
	s.lakeDir = filepath.Join(s.dir, "lake")
	kafkaEnv := []string{"KAFKA_BROKERS=" + strings.Join(brokers, ","), "CALLSTREAM_TOPIC_PREFIX=" + prefix}
	prod := s.proc("produce", kafkaEnv, "produce", "--config", s.cfgFile)
	cons := s.proc("consume", append(kafkaEnv, "CALLSTREAM_STORAGE_DSN=sqlite://"+s.storage, "CALLSTREAM_LAKE_DIR="+s.lakeDir),
		"consume", "--config", s.cfgFile)
	// A restarted producer owns nothing until the group has dropped the
	// killed one (its session, 6 s here): a kill before that would hit a
	// producer that only waits, so each of its lives starts at its
	// assignment.
	s.atWork = map[*e2eProc]string{prod: "organizations assigned"}
	s.crash([]*e2eProc{prod, cons}, func() []*e2eProc {
		switch rand.IntN(3) {
		case 0:
			return []*e2eProc{prod}
		case 1:
			return []*e2eProc{cons}
		}
		return []*e2eProc{prod, cons}
	})
	kv, err := kafkabus.NewKV(context.Background(), kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	s.waitCut(producer.NewKVStore(kv).Load, prod, cons)
	topics := consumers.NewTopics(prefix)
	s.waitDrained(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, g := range []string{"storage", "lake", "alerting", "webhooks"} {
			if lag, err := kafkabus.GroupLag(ctx, kcfg, topics.Calls, "callstream-"+g); err != nil || lag > 0 {
				return fmt.Errorf("group %s: lag %d (%v)", g, lag, err)
			}
		}
		return nil
	}, prod, cons)
	for _, p := range []*e2eProc{prod, cons} {
		if err := p.Stop(40 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	msgs := e2eReadTopic(t, kcfg, topics.Calls)
	if dlq := e2eReadTopic(t, kcfg, topics.DLQ); len(dlq) > 0 {
		t.Errorf("%d messages in the DLQ, want none (first: %s)", len(dlq), e2eHeader(dlq[0], schemas.DLQReasonMetadata))
	}
	s.check(msgs)
}

// crashScenario is one run of the crash test: the simulator (in this
// process, holding the ground truth), the webhook receiver, the config.
type crashScenario struct {
	t        *testing.T
	began    time.Time
	dir      string
	bin      string
	cfgFile  string
	clock    producer.Clock
	sim      *unpodsim.Server
	sc       unpodsim.Config
	recv     *e2eReceiver
	storage  string // the SQLite file of call_logs
	lakeDir  string
	listen   map[string]string // process name -> its HTTP listener
	procs    []*e2eProc
	cut      time.Time
	killedAt []time.Duration
	// atWork names, for a process that waits before it works, the log
	// line that says it has begun.
	atWork map[*e2eProc]string
}

func newCrashScenario(t *testing.T) *crashScenario {
	s := &crashScenario{t: t, began: time.Now(), dir: t.TempDir(), listen: map[string]string{}}
	s.bin = filepath.Join(s.dir, "callstream")
	if err := e2eGoBuild(s.bin); err != nil {
		t.Fatal(err)
	}
	// The simulator and the producer share an accelerated clock (as in
	// TestEndToEnd): the top rung of the ladder passes a cut in half a
	// minute of wall time.
	wall0 := time.Now()
	s.clock = producer.NewSimClock(e2eSpeed, wall0.Add(15*time.Minute).UTC())
	sim0 := s.clock.Now()
	s.sc = unpodsim.DefaultConfig()
	s.sc.Orgs, s.sc.Token, s.sc.DailyShape, s.sc.CallsPerMinute = strings.Split(crashOrgs, ","), "crash-token", false, crashPerMinute
	// Calls stop 45 s of wall time in (after the kills and the lock), so
	// the consumers can drain to the end: an outage of both orgs.
	s.sc.Start, s.sc.Incidents = sim0.Add(-crashHistory), nil
	for _, org := range s.sc.Orgs {
		s.sc.Incidents = append(s.sc.Incidents, unpodsim.Incident{
			Kind: unpodsim.Outage, Org: org, Start: sim0.Add(90 * time.Minute), Duration: 48 * time.Hour, Intensity: 1})
	}
	s.sc.LateRecords, s.sc.Updates, s.sc.PageShifts = 0.1, 0.1, 0.05
	s.sc.LateDelayMax, s.sc.UpdateDelayMax, s.sc.ShiftSpread = time.Minute, 2*time.Minute, 3*time.Minute
	s.sc.Clock = s.clock.Now
	var url string
	s.sim, url = e2eStartSim(t, s.sc)
	secret := e2eNewSecret(t)
	s.recv = e2eStartReceiver(t, secret, 40)
	yaml := fmt.Sprintf(`unpod: {base_url: %q, token: crash-token, rate_limit: -1, initial_backoff: 50ms, max_backoff: 1s}
producer:
  org_handles: [%s]
  sim_clock: %q
  poll_interval: 30s
  settle_lag: %s
  lookback: 3h
  group_session_timeout: 6s
  rescan_ages: [%s]
  org_backoff: 30s
  org_backoff_max: 2m
consumers: {lag_interval: 1s, close_timeout: 20s}
storage: {busy_timeout: 2s}
alerting: {grace: 15m}
webhooks:
  endpoints:
    - {name: crash, url: %q, secrets: [%q], concurrency: 16}
  retry_schedule: [200ms, 1s, 2s, 5s, 10s, 20s, 30s, 60s]
  allow_loopback: true
  breaker_cooldown: 1s
lake: {idle_close: 1s, max_file_age: 5s}
log: {format: text, level: info}
`, url, crashOrgs, s.clock.String(), e2eSettle, e2eRescanAges, s.recv.URL, secret)
	s.cfgFile = filepath.Join(s.dir, "callstream.yaml")
	if err := os.WriteFile(s.cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range s.procs {
				t.Logf("%s log (last lines):\n%s", p.name, p.Tail(40))
			}
		}
	})
	return s
}

// proc prepares a process with its own state directory and listener.
func (s *crashScenario) proc(name string, extra []string, args ...string) *e2eProc {
	s.listen[name] = freeAddr(s.t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_BROKERS=") { // each test says which bus
			env = append(env, kv)
		}
	}
	env = append(env, "CALLSTREAM_STATE_DIR="+filepath.Join(s.dir, "state-"+name), "CALLSTREAM_HTTP_LISTEN="+s.listen[name])
	p := newE2EProc(s.t, s.dir, name, s.bin, append(env, extra...), args...)
	s.procs = append(s.procs, p)
	return p
}

// crash starts the processes, SIGKILLs those victims() names crashKills
// times at random moments two to six seconds apart (restarting them a
// second later; the moments count from when every process named in
// atWork has begun its work), while a child process holds an exclusive lock on the
// SQLite file of call_logs for crashLockFor, starting with the second kill.
func (s *crashScenario) crash(all []*e2eProc, victims func() []*e2eProc) {
	t := s.t
	for _, p := range all {
		p.Start()
	}
	var lock *exec.Cmd
	for i := range crashKills {
		for _, p := range all {
			if line := s.atWork[p]; line != "" {
				if err := p.WaitLog(line, 60*time.Second); err != nil {
					t.Fatalf("before kill %d: %v", i+1, err)
				}
			}
		}
		time.Sleep(time.Duration(2000+rand.IntN(4000)) * time.Millisecond)
		s.alive(fmt.Sprintf("before kill %d", i+1))
		if i == 1 {
			lock = s.lockStorage()
		}
		vs := victims()
		for _, p := range vs {
			p.Kill()
		}
		s.killedAt = append(s.killedAt, time.Since(s.began).Round(100*time.Millisecond))
		time.Sleep(time.Second)
		for _, p := range vs {
			p.Start()
		}
	}
	if lock != nil {
		if err := lock.Wait(); err != nil {
			t.Fatalf("the lock holder failed: %v", err)
		}
	}
	s.cut = s.clock.Now()
	t.Logf("%s: %d kills at %v; a lock held the SQLite file for %s; cut at simulated %s", time.Since(s.began).Round(time.Second),
		crashKills, s.killedAt, crashLockFor, s.cut.Format(time.RFC3339))
}

// lockStorage starts a child process that holds an exclusive lock on the
// SQLite file of call_logs (a backup, a long reader, a slow disk).
func (s *crashScenario) lockStorage() *exec.Cmd {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(s.storage); err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the storage file %s was never created", s.storage)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+s.storage, lockForEnv+"="+crashLockFor.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	buf := make([]byte, 64) // the child says "locked" once it holds the lock
	if n, err := out.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "locked") {
		s.t.Fatalf("the lock holder did not take the lock: %q %v", buf[:n], err)
	}
	return cmd
}

const (
	lockChildEnv = "CALLSTREAM_TEST_LOCK_FILE"
	lockForEnv   = "CALLSTREAM_TEST_LOCK_FOR"
)

// TestSQLiteLockChild holds an exclusive lock on a SQLite file for a while;
// it does nothing unless started by the crash tests.
func TestSQLiteLockChild(t *testing.T) {
	path := os.Getenv(lockChildEnv)
	if path == "" {
		t.Skip("run by the crash tests")
	}
	hold, err := time.ParseDuration(os.Getenv(lockForEnv))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(60000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	time.Sleep(hold)
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
}

func (s *crashScenario) alive(when string) {
	s.t.Helper()
	for _, p := range s.procs {
		if u := p.Unexpected(); len(u) > 0 {
			s.t.Fatalf("%s: %s: %s", when, p.name, strings.Join(u, "; "))
		}
	}
}

// waitCut waits until the producer's top rung has read past the cut, so the
// ground truth of every call created before it is final on the topic.
func (s *crashScenario) waitCut(load func(context.Context) (*producer.State, error), procs ...*e2eProc) {
	if !e2eWaitFor(150*time.Second, time.Second, func() bool {
		s.alive("waiting for the top rung")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := load(ctx)
		if err != nil {
			return false
		}
		passed := len(st.Orgs) == len(s.sc.Orgs)
		for _, cp := range st.Orgs {
			passed = passed && !cp.Low().Before(s.cut)
		}
		return passed
	}) {
		s.t.Fatalf("the producer's top rung did not pass the cut %s within 150 s", s.cut)
	}
	s.t.Logf("%s: the top rung passed the cut", time.Since(s.began).Round(time.Second))
}

// waitDrained waits until every consumer group has committed everything
// (lagZero) and the webhook receiver has every event of the calls topic
// that was published by then.
func (s *crashScenario) waitDrained(lagZero func() error, procs ...*e2eProc) {
	var why error
	if !e2eWaitFor(3*time.Minute, time.Second, func() bool {
		s.alive("waiting for the consumers")
		why = lagZero()
		return why == nil
	}) {
		s.t.Fatalf("the consumers did not drain within 3 minutes: %v", why)
	}
	time.Sleep(2 * time.Second) // the webhook journal's last deliveries
	s.t.Logf("%s: consumers drained", time.Since(s.began).Round(time.Second))
}

// metricsLagZero reads the lag gauges of every plug-in from /metrics.
func (s *crashScenario) metricsLagZero(p *e2eProc) error {
	resp, err := http.Get("http://" + s.listen[p.name] + "/metrics")
	if err != nil {
		return err // restarting
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("/metrics: %w", err)
	}
	lag := map[string]float64{}
	if mf := mfs["callstream_consumer_lag"]; mf != nil {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "plugin" {
					lag[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	for _, pl := range []string{"storage", "lake", "alerting", "webhooks"} {
		if v, ok := lag[pl]; !ok || v != 0 {
			return fmt.Errorf("plug-in %s: lag %v (sampled: %v)", pl, v, ok)
		}
	}
	return nil
}

// readEmbedded reads the calls topic of the embedded bus whole, as
// kafka.Message values for the shared checks (partition 0, key, headers).
func (s *crashScenario) readEmbedded(path string) []kafka.Message {
	t := s.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: path, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	topics := consumers.NewTopics(schemas.DefaultTopicPrefix)
	if end, err := bus.EndOffsets(ctx, topics.DLQ); err == nil && end[0] > 0 {
		t.Errorf("%d messages in the DLQ, want none", end[0])
	}
	end, err := bus.EndOffsets(ctx, topics.Calls)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscriber(sqlitebus.SubscriberConfig{MaxInFlight: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.SubscribeBatches(ctx, topics.Calls, 1000, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for int64(len(out)) < end[0] {
		select {
		case b := <-ch:
			for i := range b.Len() {
				out = append(out, toKafka(b.Message(i)))
			}
			b.Ack()
		case <-ctx.Done():
			t.Fatalf("read %d of %d events of the embedded bus", len(out), end[0])
		}
	}
	return out
}

func toKafka(m *message.Message) kafka.Message {
	pos, _ := schemas.PositionOf(m.Metadata)
	km := kafka.Message{Partition: int(pos.Partition), Offset: pos.Offset, Key: []byte(m.Metadata.Get(schemas.KeyMetadata)), Value: m.Payload}
	for k, v := range m.Metadata {
		km.Headers = append(km.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return km
}

// check runs every check on the calls topic as read back.
func (s *crashScenario) check(msgs []kafka.Message) {
	t := s.t
	events, latest := e2eCheckStream(t, msgs)
	truthCalls := 0
	for _, org := range s.sc.Orgs {
		truthCalls += e2eCheckTruth(t, s.sim, org, s.cut, s.clock.Now(), latest)
	}
	rows := e2eCheckCallLogs(t, e2eRowsSQLite(t, s.storage), s.sim, s.sc.Orgs, s.cut, s.clock.Now(), latest)
	files, lakeRows := e2eCheckLake(t, s.lakeDir, events)
	if total, distinct := duckdbCount(t, s.lakeDir); total != len(events) || distinct != len(events) {
		t.Errorf("DuckDB reads %d rows of %d distinct events from the lake, want %d of each", total, distinct, len(events))
	}
	accepted, _ := e2eCheckWebhooks(t, s.recv, events)
	first, _, refused, _ := s.recv.Snapshot()
	t.Logf("%s: %d events (%d calls) on the topic, %d ground-truth calls before the cut, %d rows in call_logs, "+
		"%d lake rows in %d files; webhooks: %d ids acknowledged, %d acknowledgements (%d sent again after a kill), %d first attempts refused on purpose",
		time.Since(s.began).Round(time.Second), len(events), len(latest), truthCalls, rows, lakeRows, files,
		len(first), accepted, accepted-len(first), refused)
	if truthCalls < 10000 {
		t.Errorf("only %d ground-truth calls checked; the catch-up must hold at least 10,000", truthCalls)
	}
}

// duckdbCount counts the lake's rows and distinct event ids with DuckDB.
func duckdbCount(t *testing.T, root string) (total, distinct int) {
	t.Helper()
	q := fmt.Sprintf(`import duckdb; print(*duckdb.sql("select count(*), count(distinct event_id) from read_parquet('%s/call_logs/**/*.parquet', hive_partitioning=true)").fetchall()[0])`, root)
	out, err := exec.Command("python3", "-c", q).CombinedOutput()
	if err != nil {
		t.Fatalf("DuckDB: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("DuckDB printed %q", out)
	}
	total, _ = strconv.Atoi(f[0])
	distinct, _ = strconv.Atoi(f[1])
	return total, distinct
}
