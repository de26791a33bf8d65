package lake

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// TestRuntimeOnKafka runs the lake inside the real consumer runtime on the
// real broker (kafkabus subscriber in pipelined mode, watermill router,
// middlewares), stops it gracefully, restarts it with more events on the
// topic, and checks every event is in the lake exactly once: the plug-in
// contract (metadata keys, Tuning, Run, Flusher, Close) as the runtime
// really drives it.
func TestRuntimeOnKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	topics := consumers.NewTopics(testenv.Prefix(t))
	createTopic(t, brokers, topics.Calls, 3)
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	if err := kafkabus.EnsureTopics(context.Background(), kcfg, topics.Outputs(nil)...); err != nil {
		t.Fatal(err)
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = kcfg
	pub, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	dir := t.TempDir()
	events := genEvents(3000, skewedOrgs, 2, base, 51)
	for run, part := range [][2]int{{0, 2000}, {2000, 3000}} {
		produce(t, brokers, topics.Calls, events[part[0]:part[1]])
		cfg := consumers.DefaultConfig()
		cfg.GroupPrefix = "test-" + topics.Prefix
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		reg := prometheus.NewRegistry()
		rt, err := consumers.New(cfg, consumers.RuntimeDeps{
			Logger: logger, Registerer: reg, Topics: topics,
			Plugins:   []consumers.Factory{Factory(Config{Dir: dir, MaxBufferedRows: 4000, IdleClose: 300 * time.Millisecond})},
			Subscribe: testenv.KafkaSubscribers(kcfg, reg),
			Publisher: pub,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		waitAllWritten(t, dir, events[:part[1]], 2*time.Minute)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", run+1, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("run %d: runtime did not stop", run+1)
		}
		checkExactlyOnce(t, readLake(t, dir), events[:part[1]])
	}
}
