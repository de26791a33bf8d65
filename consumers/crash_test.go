package consumers

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// Environment of the crash child process.
const (
	crashChildEnv  = "CONSUMERS_CRASH_CHILD"
	crashPrefixEnv = "CONSUMERS_CRASH_PREFIX"
	crashOutEnv    = "CONSUMERS_CRASH_OUT"
)

// crashBatch is the sink's batch size and MaxInFlight.
const crashBatch = 10

// fileSink appends each batch's event ids to a file and fsyncs before
// HandleBatch returns: a durable, non-idempotent sink, so the test sees
// every redelivery.
type fileSink struct {
	mu sync.Mutex
	f  *os.File
}

func (s *fileSink) Name() string { return "filesink" }
func (s *fileSink) Tuning() Tuning {
	return Tuning{BatchSize: crashBatch, MaxInFlight: crashBatch, BatchWait: 20 * time.Millisecond}
}

func (s *fileSink) HandleBatch(_ context.Context, batch []Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, d := range batch {
		b.WriteString(d.Event.EventID + "\n")
	}
	if _, err := s.f.WriteString(b.String()); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond) // a sink's write takes time: widen the crash window
	return s.f.Sync()
}

// TestCrashChild is the consumer process of TestKafkaCrashNoLoss; it does
// nothing unless started by it.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("run by TestKafkaCrashNoLoss")
	}
	f, err := os.OpenFile(os.Getenv(crashOutEnv), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	topics := NewTopics(os.Getenv(crashPrefixEnv))
	cfg := DefaultConfig()
	cfg.GroupPrefix = "test-" + topics.Prefix
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = kcfg
	pub, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	rt, err := New(cfg, RuntimeDeps{
		Logger: logger, Registerer: reg, Topics: topics,
		Plugins:   []Factory{factoryOf(&fileSink{f: f})},
		Subscribe: testenv.KafkaSubscribers(kcfg, reg),
		Publisher: pub,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := rt.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKafkaCrashNoLoss is the runtime's half of evidence 3 of the issue: a
// consumer process killed with SIGKILL in the middle of a run and then
// restarted loses no event, and redelivers at most what was in flight at the
// kill (offsets are committed right after each batch is durable), so an
// idempotent sink ends with every event exactly once.
func TestKafkaCrashNoLoss(t *testing.T) {
	brokers := testenv.Kafka(t)
	k := newKafkaEnv(t, 3)
	k.ensure(t, "filesink")
	const n = 1500
	want := k.publish(t, 0, n)
	out := filepath.Join(t.TempDir(), "sink.log")

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashPrefixEnv+"="+k.topics.Prefix, crashOutEnv+"="+out,
			"KAFKA_BROKERS="+strings.Join(brokers, ","))
		cmd.Stderr = testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	lines := func() []string {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		var ids []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ids = append(ids, sc.Text())
		}
		return ids
	}
	unique := func() map[string]int {
		m := map[string]int{}
		for _, id := range lines() {
			m[id]++
		}
		return m
	}

	first := start()
	waitFor(t, 60*time.Second, "the first process to store some events", func() bool { return len(lines()) >= n/4 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := len(lines())
	if atKill >= n {
		t.Fatalf("the first process stored all %d events before the kill; the test proves nothing", n)
	}

	second := start()
	waitFor(t, 90*time.Second, "the restarted process to store the rest", func() bool { return len(unique()) >= n })
	time.Sleep(300 * time.Millisecond) // let a stray duplicate show
	_ = second.Process.Signal(syscall.SIGTERM)
	_ = second.Wait()

	got := unique()
	dups := 0
	for id, c := range got {
		if !want[id] {
			t.Fatalf("stored an event that was never published: %s", id)
		}
		dups += c - 1
	}
	for id := range want {
		if got[id] == 0 {
			t.Fatalf("event %s lost across the SIGKILL", id)
		}
	}
	// Only what was in flight or awaiting its commit at the kill comes
	// again: MaxInFlight plus the batches acknowledged while one commit
	// request was under way (typically 10-20 here). The bound is loose for
	// loaded CI machines but far below the ~n/4 a runtime committing only
	// at shutdown would redeliver.
	if limit := n / 10; dups > limit {
		t.Fatalf("%d events stored twice after the restart, want at most %d (in flight at the kill)", dups, limit)
	}
	t.Logf("stored %d lines before the kill, %d redelivered after restart; %s", atKill, dups,
		fmt.Sprintf("%d unique of %d", len(got), n))
}
