package producer

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

func benchEnabled(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("benchmark: set CALLSTREAM_BENCH=1 (make bench)")
	}
}

// TestBenchMemoryAndRebuild prints the dedup memory's cost with 1M
// remembered calls (heap bytes per call, process RSS) and how long
// rebuilding it from 1M events on the topic takes (scanning every
// normalised field and recomputing the content hash), beside, in the same
// run, reading the same events without doing anything with them.
func TestBenchMemoryAndRebuild(t *testing.T) {
	benchEnabled(t)
	const n = 1_000_000
	debug.FreeOSMemory()
	rss0 := rssBytes()
	m, perCall := fillMemory(n)
	debug.FreeOSMemory()
	rss1 := rssBytes()
	runtime.KeepAlive(m)
	fmt.Printf("BENCH dedup memory: %.1f heap bytes per remembered call (%d calls); process RSS %d MB before, %d MB with them (%.0f bytes per call)\n",
		perCall, n, rss0>>20, rss1>>20, float64(rss1-rss0)/n)

	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	ctx := context.Background()
	topic := testenv.Topic(t, "rebuild")
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(kcfg.Brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireOne, BatchSize: 5000, BatchBytes: 4 << 20, BatchTimeout: 5 * time.Millisecond,
		AllowAutoTopicCreation: true}
	defer w.Close()
	created := time.Now().UTC()
	started, ended := created.Add(4*time.Second), created.Add(211*time.Second)
	batch := make([]kafka.Message, 0, 10_000)
	for i := range n {
		key := "k_" + strconv.FormatInt(int64(i), 16)
		e := schemas.CallEvent{EventID: EventID("acme", key, 1, "h").String(), Org: "acme", CallKey: key, Revision: 1,
			SourceNumber: "+911234567890", DestinationNumber: "+14155551234", CallType: "outbound", CallStatus: "completed",
			CreationTime: created, StartTime: &started, EndTime: &ended, CallDurationSeconds: 207,
			ObservedAt: created, EndReason: "caller_hangup", Raw: []byte(`{"call_status":"completed"}`)}
		msg, err := NewMessage(&e)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, kafka.Message{Key: []byte(key), Value: msg.Payload})
		if len(batch) == cap(batch) || i == n-1 {
			if err := w.WriteMessages(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	p, err := New(DefaultConfig(), Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: topic, DLQTopic: "dlq",
		Store: NewFileStore(t.TempDir() + "/s"), EventLog: kafkabus.NewTopicLog(kcfg, topic)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var raw int
	if err := p.deps.EventLog.ReadFrom(ctx, map[int]int64{}, func([]byte) error { raw++; return nil }); err != nil || raw != n {
		t.Fatalf("read %d events, %v", raw, err)
	}
	readOnly := time.Since(start)
	start = time.Now()
	got, err := p.readBack(ctx, map[int]int64{}, "")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if got != n || p.mem.Len() != n {
		t.Fatalf("rebuilt %d events into %d calls, want %d", got, p.mem.Len(), n)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("BENCH rebuild of the dedup memory from %d events on the topic: %s (%.0f events/s); RSS %d MB\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), rssBytes()>>20)
	fmt.Printf("BENCH baseline, the same events read from the topic and dropped: %s (%.0f events/s): the rebuild runs at %.0f%% of the read\n",
		readOnly.Round(time.Millisecond), float64(n)/readOnly.Seconds(), 100*readOnly.Seconds()/took.Seconds())
}

// TestBenchProducerThroughput prints the producer's events/s from
// simulator pages of 1,000 records into the real broker, beside the plain
// kafka-go Writer ceiling for the same records in the same run.
func TestBenchProducerThroughput(t *testing.T) {
	benchEnabled(t)
	const perMinute, minutes = 50_000, 4 // 200,000 calls
	origin := time.Now().UTC().Truncate(time.Minute)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = []string{"acme"}, "bench", nil, false
	sc.Start, sc.CallsPerMinute = origin.Add(-minutes*time.Minute), perMinute
	sc.LateRecords, sc.Updates, sc.PageShifts = 0, 0, 0
	sc.Clock = func() time.Time { return origin }
	sim, url := startSim(t, sc)

	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Orgs, cfg.PageSize, cfg.MaxWindow = []string{"acme"}, 1000, time.Minute
	// Warm the simulator's cache so that generating calls is not timed.
	want := len(sim.GroundTruthWindow("acme", sc.Start, origin, origin))

	// End to end: HTTP, the API client's decoding, the gate, encoding and
	// publishing with acks=all.
	rec := &recordingSource{Source: newClient(t, url, "bench"), pages: map[string]*unpod.Page{}}
	deps, kcfg := kafkaDeps(t, rec, nil)
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Backfill(ctx, "acme", sc.Start, origin, nil); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	st := p.Stats()
	if st.Published != int64(want) {
		t.Fatalf("published %d events, the simulator has %d calls", st.Published, want)
	}
	rate := float64(st.Published) / took.Seconds()
	fmt.Printf("BENCH producer end to end: %d events in %s = %.0f events/s (simulator pages of 1000 over HTTP, API client decoding, dedup, encoding, publish with acks=all)\n",
		st.Published, took.Round(time.Millisecond), rate)

	// The producer alone: the same simulator pages, already decoded, into a
	// fresh topic.
	deps2, _ := kafkaDeps(t, replaySource{rec.pages}, nil)
	p2, err := New(cfg, deps2)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := p2.Backfill(ctx, "acme", sc.Start, origin, nil); err != nil {
		t.Fatal(err)
	}
	took2 := time.Since(start)
	if got := p2.Stats().Published; got != int64(want) {
		t.Fatalf("replay published %d events, want %d", got, want)
	}
	rate2 := float64(want) / took2.Seconds()
	fmt.Printf("BENCH producer from decoded pages: %d events in %s = %.0f events/s (dedup, encoding, publish with acks=all)\n",
		want, took2.Round(time.Millisecond), rate2)

	// The ceiling: the same records, written by a bare kafka-go Writer
	// with the same acks and batching, to a fresh topic.
	var msgs []kafka.Message
	if err := kafkabus.ReadRange(ctx, kcfg, deps.Topic, nil, func(m kafka.Message) error {
		msgs = append(msgs, kafka.Message{Key: m.Key, Value: m.Value, Headers: m.Headers})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ceilTopic := testenv.Topic(t, "ceiling")
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: ceilTopic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(kcfg.Brokers...), Topic: ceilTopic, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond,
		AllowAutoTopicCreation: true, // the topic exists; this makes the Writer see it at once
	}
	defer w.Close()
	start = time.Now()
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.WriteMessages(ctx, msgs[i:min(i+1000, len(msgs))]...); err != nil {
			t.Fatal(err)
		}
	}
	ceilSeq := float64(len(msgs)) / time.Since(start).Seconds()
	start = time.Now()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	ceilBulk := float64(len(msgs)) / time.Since(start).Seconds()
	fmt.Printf("BENCH kafka-go Writer ceiling, same %d records, acks=all: %.0f events/s in calls of 1000, %.0f events/s in one bulk call\n",
		len(msgs), ceilSeq, ceilBulk)
	fmt.Printf("BENCH producer vs ceiling (calls of 1000): end to end %.0f%%, from decoded pages %.0f%%\n",
		100*rate/ceilSeq, 100*rate2/ceilSeq)
}

// recordingSource keeps every page it returns, by query.
type recordingSource struct {
	Source
	mu    sync.Mutex
	pages map[string]*unpod.Page
}

func (r *recordingSource) CallLogs(ctx context.Context, q unpod.Query) (*unpod.Page, error) {
	pg, err := r.Source.CallLogs(ctx, q)
	if err == nil {
		r.mu.Lock()
		r.pages[fmt.Sprint(q)] = pg
		r.mu.Unlock()
	}
	return pg, err
}

// replaySource answers the queries a recordingSource saw.
type replaySource struct{ pages map[string]*unpod.Page }

func (r replaySource) CallLogs(_ context.Context, q unpod.Query) (*unpod.Page, error) {
	if pg, ok := r.pages[fmt.Sprint(q)]; ok {
		return pg, nil
	}
	return nil, fmt.Errorf("replay: query %v was not recorded", q)
}

func (replaySource) Organizations(context.Context) ([]unpod.Organization, error) { return nil, nil }

// rssBytes reads the resident set size of this process from /proc.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
