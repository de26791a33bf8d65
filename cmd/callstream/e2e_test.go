package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// The scenario's clock: one wall second is two simulated minutes, so the
// rescan ladder's top rung (above the simulator's longest lateness, an hour
// long call plus a late record) passes in some 40 seconds.
const (
	e2eSpeed      = 120
	e2eSettle     = 30 * time.Second
	e2eRescanAges = "0s,2m,10m,30m,65m"
	e2eTopAge     = 65 * time.Minute
	e2eIncidentAt = 40 * time.Minute // simulated time after the processes start
	e2eIncidentOf = 4 * time.Minute
	e2eIncidentIn = "acme"
	e2eBurstRule  = "failed-call-burst"
)

// TestEndToEnd is the whole pipeline as it is deployed (issue 9, evidence
// 1): the simulator (in this process, so the test holds its ground truth)
// with a scripted failed-call burst, late records, updates, page shifts,
// 500s and 429s; `callstream produce` and two `callstream consume`
// processes (storage+lake, alerting+webhooks) on a private Kafka broker and
// a real PostgreSQL. Mid-run the storage+lake process is killed with
// SIGKILL during the incident and restarted, the broker is stopped for 20
// seconds and started again, and the alerting+webhooks process is killed
// and restarted. At the end:
//
//   - the calls topic holds each (call_key, revision) and each event_id
//     exactly once, revisions 1..n in order in one partition;
//   - every call of the simulator's ground truth created before the cut is
//     on the topic at its latest content, and nothing else is;
//   - PostgreSQL's call_logs holds one row per call of the topic, at its
//     latest revision, and every ground-truth call at the truth's content;
//   - the lake's Parquet files hold every event of the topic exactly once;
//   - the webhook receiver accepted every event_id at least once (the first
//     attempt of some is refused, to exercise retries), every signature
//     verified, and the distinct webhook-ids are exactly the event_ids;
//   - the alerts topic holds exactly one firing and one resolved alert,
//     those of the scripted incident, and the DLQ is empty.
//
// The cut is the simulated time just after the second kill; the producer
// runs until its top rung has read past it, so the ground truth of every
// call before it is final. The whole test takes about three minutes of
// wall time (half a minute to build and start the broker, 40 seconds of
// outage and restart).
func TestEndToEnd(t *testing.T) {
	testenv.Kafka(t) // the integration-mode rules: skip, or fail when required
	began := time.Now()
	dsn, schema := testenv.PostgresSchema(t, "e2e")

	// The binary builds while the private broker starts.
	binc := make(chan string, 1)
	go func() {
		bin := filepath.Join(t.TempDir(), "callstream")
		if err := e2eGoBuild(bin); err != nil {
			binc <- "error: " + err.Error()
			return
		}
		binc <- bin
	}()
	broker := e2eStartBroker(t)
	bin := <-binc
	if strings.HasPrefix(bin, "error: ") {
		t.Fatal(bin)
	}
	t.Logf("private broker %s and binary ready after %s", broker.Addr, time.Since(began).Round(time.Millisecond))
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = []string{broker.Addr}

	// The simulator and the producer share one accelerated clock. It
	// meets the wall clock only at its origin, 15 minutes from now, and
	// runs behind it until then: the alerting consumer rightly refuses
	// calls created more than a few minutes in its future.
	wall0 := time.Now()
	clock := producer.NewSimClock(e2eSpeed, wall0.Add(15*time.Minute).UTC())
	sim0 := clock.Now()
	incident := unpodsim.Incident{
		Kind: unpodsim.FailedBurst, Org: e2eIncidentIn, Start: sim0.Add(e2eIncidentAt),
		Duration: e2eIncidentOf, Intensity: 0.8,
	}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.DailyShape, sc.CallsPerMinute = []string{"acme", "globex"}, "e2e-token", false, 20
	sc.Start, sc.Incidents = sim0.Add(-30*time.Minute), []unpodsim.Incident{incident}
	sc.LateRecords, sc.Updates, sc.PageShifts = 0.1, 0.1, 0.05
	sc.LateDelayMax, sc.UpdateDelayMax, sc.ShiftSpread = time.Minute, 2*time.Minute, 3*time.Minute
	sc.Faults = unpodsim.Faults{Error500: 0.03, Throttle429: 0.02, RetryAfter: time.Second}
	sc.Clock = clock.Now
	sim, simURL := e2eStartSim(t, sc)
	if l := sim.MaxLateness(); l > e2eSettle+e2eTopAge {
		t.Fatalf("the top rung (%s after the settle lag) must reach past the simulator's lateness %s", e2eTopAge, l)
	}

	secret := e2eNewSecret(t)
	recv := e2eStartReceiver(t, secret, 25)
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	cfgFile := filepath.Join(dir, "callstream.yaml")
	yaml := fmt.Sprintf(`unpod:
  rate_limit: -1
  initial_backoff: 50ms
  max_backoff: 1s
producer:
  org_backoff: 30s
  org_backoff_max: 2m
consumers:
  lag_interval: 1s
  close_timeout: 20s
alerting:
  # A wall second is two simulated minutes: a read delayed by a few wall
  # seconds (a 429's Retry-After, a loaded machine) spans many of them.
  grace: 15m
webhooks:
  endpoints:
    - name: e2e
      url: %s
      secrets: [%s]
      concurrency: 16
  retry_schedule: [200ms, 1s, 2s, 5s, 10s, 20s, 30s, 60s]
  allow_loopback: true
  breaker_cooldown: 1s
lake:
  # Files close sooner, so the consumers drain quickly at the end.
  idle_close: 1s
  max_file_age: 5s
`, recv.URL, secret)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Prefix(t)
	topics := consumers.NewTopics(prefix)
	base := append(os.Environ(),
		"KAFKA_BROKERS="+broker.Addr, "CALLSTREAM_TOPIC_PREFIX="+prefix, "CALLSTREAM_HTTP_LISTEN=",
		"CALLSTREAM_LOG_LEVEL=info", "CALLSTREAM_LOG_FORMAT=text",
	)
	procEnv := func(name string, extra ...string) []string {
		return append(append(append([]string(nil), base...), "CALLSTREAM_STATE_DIR="+filepath.Join(dir, "state-"+name)), extra...)
	}
	prod := newE2EProc(t, dir, "produce", bin, procEnv("produce",
		"UNPOD_API_URL="+simURL, "UNPOD_API_TOKEN=e2e-token", "UNPOD_ORG_HANDLES=acme,globex",
		"CALLSTREAM_SIM_CLOCK="+clock.String(), "CALLSTREAM_POLL_INTERVAL=30s", "CALLSTREAM_SETTLE_LAG="+e2eSettle.String(),
		// The lookback reaches before the simulator's first call, so the
		// whole simulated history is read and checked.
		"CALLSTREAM_LOOKBACK=2h", "CALLSTREAM_RESCAN_AGES="+e2eRescanAges,
	), "produce", "--config", cfgFile)
	sinks := newE2EProc(t, dir, "consume-storage-lake", bin, procEnv("sinks",
		"CALLSTREAM_STORAGE_DSN="+dsn, "CALLSTREAM_LAKE_DIR="+lakeDir,
	), "consume", "--config", cfgFile, "--only", "storage,lake")
	notify := newE2EProc(t, dir, "consume-alerting-webhooks", bin, procEnv("notify"),
		"consume", "--config", cfgFile, "--only", "alerting,webhooks")
	procs := []*e2eProc{prod, sinks, notify}
	defer func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("%s log (last lines):\n%s", p.name, p.Tail(40))
			}
		}
	}()
	alive := func(when string) {
		t.Helper()
		for _, p := range procs {
			if u := p.Unexpected(); len(u) > 0 {
				t.Fatalf("%s: %s: %s", when, p.name, strings.Join(u, "; "))
			}
		}
	}
	for _, p := range procs {
		p.Start()
	}
	simAt := func(d time.Duration) time.Time { return wall0.Add(time.Duration(float64(d) / e2eSpeed)) }
	sleepUntil := func(wall time.Time) { time.Sleep(time.Until(wall)) }

	// 1. SIGKILL the sinks in the middle of the incident.
	sleepUntil(simAt(e2eIncidentAt + e2eIncidentOf/2))
	alive("before the first kill")
	sinks.Kill()
	t.Logf("%s: SIGKILLed %s (simulated %s)", time.Since(began).Round(time.Second), sinks.name, clock.Now().Sub(sim0))
	time.Sleep(time.Second)
	sinks.Start()

	// 2. Once the incident's alert has resolved, stop the broker for 20 s.
	// Waiting for it keeps the outage (whose catch-up read is wider than
	// the alerting grace) away from the incident's event time.
	alertsTopic := schemas.TopicName(prefix, schemas.AlertsTopic)
	if !e2eWaitFor(2*time.Minute, time.Second, func() bool {
		alive("waiting for the incident's alert")
		if _, err := kafkabus.PartitionIDs(context.Background(), kcfg, alertsTopic); err != nil {
			return false // created with the first alert
		}
		for _, a := range e2eAlerts(t, kcfg, alertsTopic) {
			if a.State == schemas.AlertResolved {
				return true
			}
		}
		return false
	}) {
		if _, err := kafkabus.PartitionIDs(context.Background(), kcfg, alertsTopic); err != nil {
			t.Fatalf("no resolved alert within 2 minutes of wall time after the incident: the alerts topic was never created (%v)", err)
		}
		t.Fatalf("no resolved alert within 2 minutes of wall time after the incident")
	}
	t.Logf("%s: the incident's alert resolved", time.Since(began).Round(time.Second))
	if err := broker.Down(); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	t.Logf("%s: broker stopped", time.Since(began).Round(time.Second))
	time.Sleep(20 * time.Second)
	alive("while the broker was down")
	if err := broker.Up(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: broker started again after %s down", time.Since(began).Round(time.Second), time.Since(downAt).Round(100*time.Millisecond))

	// 3. SIGKILL the notifiers and restart them.
	time.Sleep(3 * time.Second)
	alive("after the outage")
	notify.Kill()
	t.Logf("%s: SIGKILLed %s", time.Since(began).Round(time.Second), notify.name)
	time.Sleep(time.Second)
	notify.Start()

	// 4. Let the top rung pass the cut, so every call created before it is
	// final on the topic; then stop the producer.
	cut := clock.Now()
	kv, err := kafkabus.NewKV(context.Background(), kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	store := producer.NewKVStore(kv)
	if !e2eWaitFor(150*time.Second, time.Second, func() bool {
		alive("waiting for the top rung")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := store.Load(ctx)
		if err != nil {
			t.Logf("load producer state: %v", err)
			return false
		}
		passed := len(st.Orgs) == len(sc.Orgs)
		for _, cp := range st.Orgs {
			passed = passed && !cp.Low().Before(cut)
		}
		return passed
	}) {
		t.Fatalf("the producer's top rung did not pass the cut %s within 150 s", cut)
	}
	if err := prod.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: producer passed the cut and stopped", time.Since(began).Round(time.Second))

	// 5. Read the topic whole; wait for the consumers to drain it.
	msgs := e2eReadTopic(t, kcfg, topics.Calls)
	events, latest := e2eCheckStream(t, msgs)
	groups := []string{"storage", "lake", "alerting", "webhooks"}
	var lagErr error
	drained := e2eWaitFor(2*time.Minute, time.Second, func() bool {
		alive("waiting for the consumers")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, g := range groups {
			lag, err := e2eGroupLag(ctx, kcfg, topics.Calls, "callstream-"+g)
			if err != nil || lag > 0 {
				lagErr = fmt.Errorf("group %s: lag %d (%v)", g, lag, err)
				return false
			}
		}
		first, _, _, _ := recv.Snapshot()
		for id := range events {
			if _, ok := first[id]; !ok {
				lagErr = fmt.Errorf("webhook receiver still misses event %s", id)
				return false
			}
		}
		return true
	})
	if !drained {
		t.Errorf("the consumers did not drain the topic within 2 minutes: %v", lagErr)
	}
	t.Logf("%s: consumers drained", time.Since(began).Round(time.Second))
	for _, p := range []*e2eProc{sinks, notify} {
		if err := p.Stop(40 * time.Second); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%s: consumers stopped", time.Since(began).Round(time.Second))

	// 6. The checks.
	truthCalls := 0
	for _, org := range sc.Orgs {
		truthCalls += e2eCheckTruth(t, sim, org, cut, clock.Now(), latest)
	}
	rows := e2eCheckCallLogs(t, e2eRowsPostgres(t, dsn, schema), sim, sc.Orgs, cut, clock.Now(), latest)
	files, lakeRows := e2eCheckLake(t, lakeDir, events)
	accepted, refused := e2eCheckWebhooks(t, recv, events)
	e2eCheckAlerts(t, e2eAlerts(t, kcfg, alertsTopic), incident)
	if dlq := e2eReadTopic(t, kcfg, topics.DLQ); len(dlq) > 0 {
		for _, m := range dlq[:min(5, len(dlq))] {
			t.Errorf("dead-lettered: %s", e2eHeader(m, schemas.DLQReasonMetadata))
		}
		t.Errorf("%d messages in the DLQ, want none", len(dlq))
	}
	t.Logf("checked in %s: %d events on the topic (%d calls); %d ground-truth calls created before the cut; "+
		"%d rows in PostgreSQL; %d lake rows in %d files; %d webhook deliveries accepted, %d first attempts refused on purpose; simulator faults %v",
		time.Since(began).Round(time.Second), len(events), len(latest), truthCalls, rows, lakeRows, files, accepted, refused, sim.Faults())
	if truthCalls < 5000 {
		t.Errorf("only %d ground-truth calls checked; the scenario is too small to mean much", truthCalls)
	}
}

// e2eStartSim serves a simulator on a loopback port until the test ends.
func e2eStartSim(t testing.TB, cfg unpodsim.Config) (*unpodsim.Server, string) {
	t.Helper()
	sim, err := unpodsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	url, wait, err := sim.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	return sim, url
}

// e2eWaitFor polls cond every interval until it holds or timeout passes.
func e2eWaitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// e2eCheckStream decodes the calls topic and checks its guarantees: valid
// events with CloudEvents headers, each event_id and each (call_key,
// revision) once, revisions 1..n in offset order in one partition. It
// returns the events by event_id and the latest event of every call.
func e2eCheckStream(t *testing.T, msgs []kafka.Message) (map[string]e2eEvent, map[string]e2eEvent) {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]e2eEvent{}
	latest := map[string]e2eEvent{}
	bad := 0
	for _, m := range msgs {
		ce, err := v.DecodeCall(m.Value)
		if err != nil {
			t.Errorf("calls topic partition %d offset %d: %v", m.Partition, m.Offset, err)
			continue
		}
		e := e2eEvent{CallEvent: ce, Partition: m.Partition, Offset: m.Offset, Time: m.Time}
		fail := func(format string, args ...any) {
			if bad++; bad <= 10 {
				t.Errorf(format, args...)
			}
		}
		if got := e2eHeader(m, schemas.HeaderID); got != ce.EventID || string(m.Key) != ce.CallKey ||
			e2eHeader(m, schemas.HeaderType) != ce.Type() || e2eHeader(m, schemas.HeaderSubject) != ce.CallKey {
			fail("event %s: headers/key do not match the event (ce_id %q, key %q)", ce.EventID, got, m.Key)
		}
		if prev, dup := events[ce.EventID]; dup {
			fail("duplicate: event %s at partition %d offset %d and at partition %d offset %d", ce.EventID, prev.Partition, prev.Offset, m.Partition, m.Offset)
			continue
		}
		events[ce.EventID] = e
		id := ce.Org + "/" + ce.CallKey
		prev, ok := latest[id]
		switch {
		case !ok && ce.Revision != 1:
			fail("call %s: first event has revision %d", id, ce.Revision)
		case ok && ce.Revision == prev.Revision:
			fail("duplicate: call %s revision %d published twice", id, ce.Revision)
		case ok && ce.Revision != prev.Revision+1:
			fail("call %s: revision %d (partition %d offset %d, written %s) follows revision %d (offset %d, written %s)", id, ce.Revision,
				m.Partition, m.Offset, m.Time.Format("15:04:05.000"), prev.Revision, prev.Offset, prev.Time.Format("15:04:05.000"))
		case ok && m.Partition != prev.Partition:
			fail("call %s: revisions in partitions %d and %d", id, prev.Partition, m.Partition)
		}
		if !ok || ce.Revision > prev.Revision {
			latest[id] = e
		}
	}
	if bad > 0 {
		t.Errorf("calls topic: %d problems in %d records", bad, len(msgs))
	}
	return events, latest
}

// e2eEvent is a decoded record of the calls topic.
type e2eEvent struct {
	schemas.CallEvent
	Partition int
	Offset    int64
	Time      time.Time // the record's timestamp
}

// e2eCheckTruth checks that the latest event of every ground-truth call of
// org created before cut carries the truth's content, and that the topic
// holds no other call of that range. It returns the number of truth calls.
func e2eCheckTruth(t *testing.T, sim *unpodsim.Server, org string, cut, asOf time.Time, latest map[string]e2eEvent) int {
	t.Helper()
	truth := sim.GroundTruthWindow(org, sim.Start(), cut, asOf)
	want := map[string]bool{}
	missing, stale := 0, 0
	for i := range truth {
		r := &truth[i]
		id := producer.Identify(org, r)
		k := org + "/" + id.CallKey
		want[k] = true
		e, ok := latest[k]
		switch {
		case !ok:
			if missing++; missing <= 5 {
				t.Errorf("org %s: call %s (created %s) is not on the topic", org, id.CallKey, r.CreationTime.Format(time.RFC3339Nano))
			}
		case e.EventID != producer.EventID(org, id.CallKey, e.Revision, id.ContentHash).String():
			if stale++; stale <= 5 {
				t.Errorf("org %s: call %s: latest revision %d has status %s, the truth %s", org, id.CallKey, e.Revision, e.CallStatus, r.CallStatus)
			}
		}
	}
	extra := 0
	for k, e := range latest {
		if e.Org == org && !e.CreationTime.Before(sim.Start()) && e.CreationTime.Before(cut) && !want[k] {
			if extra++; extra <= 5 {
				t.Errorf("org %s: call %s on the topic is not in the ground truth", org, k)
			}
		}
	}
	if missing+stale+extra > 0 {
		t.Errorf("org %s: %d ground-truth calls: %d missing from the topic, %d stale, %d extra", org, len(truth), missing, stale, extra)
	}
	return len(truth)
}

// e2eCheckPostgres checks call_logs: one row per call of the topic, at the
// latest revision, and every ground-truth call before cut at the truth's
// e2eCallLogRow is a row of call_logs, as the checks read it.
type e2eCallLogRow struct {
	eventID, org, status, reason string
	revision                     int
	end                          *time.Time
	duration                     int64
}

// e2eRowsPostgres reads call_logs of a PostgreSQL schema by org/call_key.
func e2eRowsPostgres(t *testing.T, dsn, schema string) map[string]e2eCallLogRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", schema, err)
	}
	defer conn.Close(ctx)
	rs, err := conn.Query(ctx, `SELECT call_key, event_id, org, revision, call_status, end_time, call_duration_seconds, end_reason FROM call_logs`)
	if err != nil {
		t.Fatalf("query call_logs: %v", err)
	}
	byKey := map[string]e2eCallLogRow{}
	for rs.Next() {
		var k string
		var r e2eCallLogRow
		if err := rs.Scan(&k, &r.eventID, &r.org, &r.revision, &r.status, &r.end, &r.duration, &r.reason); err != nil {
			t.Fatalf("scan call_logs: %v", err)
		}
		byKey[r.org+"/"+k] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("read call_logs: %v", err)
	}
	return byKey
}

// e2eRowsSQLite reads call_logs of a SQLite file by org/call_key.
func e2eRowsSQLite(t *testing.T, path string) map[string]e2eCallLogRow {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT call_key, event_id, org, revision, call_status, end_time, call_duration_seconds, end_reason FROM call_logs`)
	if err != nil {
		t.Fatalf("query call_logs in %s: %v", path, err)
	}
	defer rs.Close()
	byKey := map[string]e2eCallLogRow{}
	for rs.Next() {
		var k string
		var end sql.NullString
		var r e2eCallLogRow
		if err := rs.Scan(&k, &r.eventID, &r.org, &r.revision, &r.status, &end, &r.duration, &r.reason); err != nil {
			t.Fatalf("scan call_logs: %v", err)
		}
		if end.Valid {
			e, err := time.Parse(time.RFC3339Nano, end.String)
			if err != nil {
				t.Fatalf("call_logs end_time %q: %v", end.String, err)
			}
			r.end = &e
		}
		byKey[r.org+"/"+k] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("read call_logs: %v", err)
	}
	return byKey
}

// e2eCheckCallLogs checks call_logs against the topic and the ground truth:
// one row per call of the topic, at its latest revision, and every
// ground-truth call at the truth's content. It returns the row count.
func e2eCheckCallLogs(t *testing.T, byKey map[string]e2eCallLogRow, sim *unpodsim.Server, orgs []string, cut, asOf time.Time, latest map[string]e2eEvent) int {
	t.Helper()
	n := len(byKey)
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for k, e := range latest {
		r, ok := byKey[k]
		switch {
		case !ok:
			fail("call_logs: call %s (revision %d on the topic) has no row", k, e.Revision)
		case r.eventID != e.EventID || r.revision != e.Revision:
			fail("call_logs: call %s holds revision %d (%s), the topic's latest is %d (%s)", k, r.revision, r.eventID, e.Revision, e.EventID)
		}
	}
	for k := range byKey {
		if _, ok := latest[k]; !ok {
			fail("call_logs: row %s is not a call of the topic", k)
		}
	}
	for _, org := range orgs {
		truth := sim.GroundTruthWindow(org, sim.Start(), cut, asOf)
		for i := range truth {
			tr := &truth[i]
			id := producer.Identify(org, tr)
			r, ok := byKey[org+"/"+id.CallKey]
			if !ok {
				fail("call_logs: ground-truth call %s/%s has no row", org, id.CallKey)
				continue
			}
			wantEnd := tr.EndTime
			sameEnd := (wantEnd == nil) == (r.end == nil) && (wantEnd == nil || wantEnd.Truncate(time.Microsecond).Equal(*r.end))
			if r.eventID != producer.EventID(org, id.CallKey, r.revision, id.ContentHash).String() || r.status != tr.CallStatus || r.duration != tr.DurationSeconds || r.reason != tr.EndReason || !sameEnd {
				fail("call_logs: call %s/%s is %s/%d s/%q/end %v (event %s), the truth %s/%d s/%q/end %v (content hash %s)", org, id.CallKey,
					r.status, r.duration, r.reason, r.end, r.eventID, tr.CallStatus, tr.DurationSeconds, tr.EndReason, wantEnd, id.ContentHash)
			}
		}
	}
	if n != len(latest) || bad > 0 {
		t.Errorf("call_logs: %d rows for %d calls on the topic; %d problems", n, len(latest), bad)
	}
	return n
}

// e2eCheckLake reads every Parquet file of the lake back and checks that it
// holds each event of the topic exactly once, in the right org directory,
// with the event's Kafka position. It returns the file and row counts.
func e2eCheckLake(t *testing.T, root string, events map[string]e2eEvent) (files, rows int) {
	t.Helper()
	seen := map[string]int{}
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	err := filepath.WalkDir(filepath.Join(root, "call_logs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		files++
		rs, err := parquet.ReadFile[lake.Row](path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		for _, r := range rs {
			rows++
			seen[r.EventID]++
			e, ok := events[r.EventID]
			switch {
			case !ok:
				fail("lake: %s holds event %s, which is not on the topic", path, r.EventID)
			case !strings.Contains(path, "/org="+e.Org+"/"):
				fail("lake: event %s of org %s is in %s", r.EventID, e.Org, path)
			case int(r.KafkaPartition) != e.Partition || r.KafkaOffset != e.Offset || int(r.Revision) != e.Revision:
				fail("lake: event %s at %d/%d revision %d, the topic has it at %d/%d revision %d", r.EventID, r.KafkaPartition, r.KafkaOffset, r.Revision, e.Partition, e.Offset, e.Revision)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("lake: %v", err)
	}
	missing, dups := 0, 0
	for id := range events {
		switch seen[id] {
		case 0:
			if missing++; missing <= 5 {
				t.Errorf("lake: event %s is in no file", id)
			}
		case 1:
		default:
			if dups++; dups <= 5 {
				t.Errorf("lake: event %s is in %d rows", id, seen[id])
			}
		}
	}
	if missing+dups+bad > 0 {
		t.Errorf("lake: %d rows in %d files for %d events: %d missing, %d duplicated, %d other problems", rows, files, len(events), missing, dups, bad)
	}
	return files, rows
}

// e2eCheckWebhooks checks the receiver saw every event and nothing else,
// with every signature valid. It returns the accepted deliveries and the
// refused first attempts.
func e2eCheckWebhooks(t *testing.T, recv *e2eReceiver, events map[string]e2eEvent) (accepted, refused int) {
	t.Helper()
	first, accepted, refused, problems := recv.Snapshot()
	for _, p := range problems {
		t.Errorf("webhook receiver: %s", p)
	}
	missing, extra := 0, 0
	for id := range events {
		if _, ok := first[id]; !ok {
			if missing++; missing <= 5 {
				t.Errorf("webhooks: event %s was never delivered", id)
			}
		}
	}
	for id := range first {
		if _, ok := events[id]; !ok {
			if extra++; extra <= 5 {
				t.Errorf("webhooks: webhook-id %s is not an event of the topic", id)
			}
		}
	}
	if missing+extra > 0 || len(first) != len(events) {
		t.Errorf("webhooks: %d distinct ids received for %d events: %d missing, %d extra", len(first), len(events), missing, extra)
	}
	if refused == 0 {
		t.Errorf("webhooks: no first attempt was refused; the retry path went untested")
	}
	return accepted, refused
}

// e2eAlert is a record of the alerts topic.
type e2eAlert struct {
	schemas.AlertEvent
	CEID, CEType string
}

// e2eAlerts reads the alerts topic.
func e2eAlerts(t *testing.T, cfg kafkabus.Config, topic string) []e2eAlert {
	t.Helper()
	var out []e2eAlert
	for _, m := range e2eReadTopic(t, cfg, topic) {
		var a e2eAlert
		if err := json.Unmarshal(m.Value, &a.AlertEvent); err != nil {
			t.Errorf("alerts topic offset %d: %v", m.Offset, err)
			continue
		}
		a.CEID, a.CEType = e2eHeader(m, schemas.HeaderID), e2eHeader(m, schemas.HeaderType)
		out = append(out, a)
	}
	return out
}

// e2eCheckAlerts checks that the alerts topic holds exactly one firing and
// one resolved alert, both of the scripted incident's rule and org, the
// same alert, starting within the incident.
func e2eCheckAlerts(t *testing.T, alerts []e2eAlert, in unpodsim.Incident) {
	t.Helper()
	var firing, resolved []e2eAlert
	for _, a := range alerts {
		if a.Rule != e2eBurstRule || a.Org != in.Org {
			t.Errorf("alert %s %s for org %s (value %v): only the scripted %s in %s should alert", a.Rule, a.State, a.Org, a.Value, e2eBurstRule, in.Org)
			continue
		}
		switch a.State {
		case schemas.AlertFiring:
			firing = append(firing, a)
		case schemas.AlertResolved:
			resolved = append(resolved, a)
		}
		if a.CEType != a.Type() {
			t.Errorf("alert %s: ce_type %q for state %s", a.AlertID, a.CEType, a.State)
		}
	}
	if len(firing) != 1 || len(resolved) != 1 {
		t.Fatalf("alerts of the incident: %d firing and %d resolved, want exactly one of each", len(firing), len(resolved))
	}
	f, r := firing[0], resolved[0]
	if f.AlertID != r.AlertID {
		t.Errorf("firing alert %s and resolved alert %s are not the same alert", f.AlertID, r.AlertID)
	}
	end := in.Start.Add(in.Duration)
	if f.StartsAt.Before(in.Start) || f.StartsAt.After(end) {
		t.Errorf("the alert starts at %s, outside the incident [%s, %s)", f.StartsAt, in.Start, end)
	}
	if r.EndsAt == nil || r.EndsAt.Before(end) {
		t.Errorf("the alert ends at %v, before the incident's end %s", r.EndsAt, end)
	}
}
