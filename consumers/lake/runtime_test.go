package lake

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
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
	if err := consumers.EnsureKafkaTopics(context.Background(), kcfg, topics); err != nil {
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
			Subscribe: consumers.KafkaSubscribe(kcfg, cfg, reg, logger),
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

// TestRuntimeEmbedded runs the lake in the real runtime on the in-process
// GoChannel bus, as callstream run does: no Kafka position, so the lake
// numbers the events itself; after a graceful stop every event is in a
// part-local file exactly once.
func TestRuntimeEmbedded(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64}, nil)
	t.Cleanup(func() { _ = bus.Close() })
	dir := t.TempDir()
	topics := consumers.NewTopics("test.")
	rt, err := consumers.New(consumers.DefaultConfig(), consumers.RuntimeDeps{
		Registerer: prometheus.NewRegistry(), Topics: topics,
		Plugins:   []consumers.Factory{Factory(Config{Dir: dir, IdleClose: 200 * time.Millisecond})},
		Subscribe: consumers.SharedSubscribe(bus),
		Publisher: bus,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); rt.Ready(ctx) != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("runtime not ready after 10s")
		}
	}
	events := genEvents(500, []string{"unpod", "acme"}, 2, base, 61)
	for i := range events {
		payload, err := json.Marshal(&events[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(topics.Calls, message.NewMessage(events[i].EventID, payload)); err != nil {
			t.Fatal(err)
		}
	}
	waitAllWritten(t, dir, events, time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	files := readLake(t, dir)
	checkExactlyOnce(t, files, events)
	for _, f := range files {
		if p, _, _ := parseFileName(filepath.Base(f.rel)); p != localPartition {
			t.Fatalf("file %s on the in-process bus, want part-local-*", f.rel)
		}
	}
}
