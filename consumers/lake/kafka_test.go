package lake

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// childEnv switches the test binary into the crash-test consumer process.
const childEnv = "CALLSTREAM_LAKE_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// childSpec configures one consumer process of the crash test.
type childSpec struct {
	Brokers    []string
	Topic      string
	Group      string
	Partitions int
	Dir        string
	MaxRows    int
	NoIndex    bool
}

// runChild consumes into the lake until SIGTERM (a clean stop) or SIGKILL
// (the crash under test).
func runChild(raw string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := Config{Dir: s.Dir, MaxFileRows: s.MaxRows, MaxBufferedRows: 4000, IdleClose: 3 * time.Second, MaxFileAge: 3 * time.Second}
	l, err := New(cfg, consumers.Deps{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	l.noIndex = s.NoIndex
	go func() { _ = l.Run(ctx) }()
	dr := &driver{brokers: s.Brokers, topic: s.Topic, group: s.Group, partitions: s.Partitions,
		maxInFlight: l.Tuning().MaxInFlight, throttle: 50 * time.Millisecond}
	_, err = dr.run(ctx, l)
	_ = l.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func createTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produce publishes events keyed by call_key, as the producer does.
func produce(t testing.TB, brokers []string, topic string, events []schemas.CallEvent) {
	t.Helper()
	// A transport of its own: kafka-go's shared default one may hold metadata
	// fetched before this test's topic existed, and then fails the write.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Transport: tr,
		Addr:      kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 5000, BatchBytes: 16 << 20, BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	msgs := make([]kafka.Message, 0, 5000)
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[:0]
	}
	for i := range events {
		v, err := json.Marshal(&events[i])
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(events[i].CallKey), Value: v})
		if len(msgs) == cap(msgs) {
			flush()
		}
	}
	if len(msgs) > 0 {
		flush()
	}
}

// skewedOrgs is an org list for genEvents where one org is rare, so its
// open file starts early and holds the partition's committed offset back
// while the busy org's files rotate and are renamed.
var skewedOrgs = []string{"big", "big", "big", "big", "big", "big", "big", "big", "mid", "mid", "mid", "rare"}

// TestSIGKILLExactlyOnce consumes from the real broker in a child process,
// kills it with SIGKILL twice in the middle of its files, restarts it with
// another rotation size each time (so file boundaries move, as they do when
// timing differs), and checks with parquet-go that every event is in the
// lake exactly once. Its second case turns the lake's index of covered
// offsets off and must then find duplicates, which shows the first case can
// fail.
func TestSIGKILLExactlyOnce(t *testing.T) {
	brokers := testenv.Kafka(t)
	for _, tc := range []struct {
		name    string
		noIndex bool
	}{{"exactly once", false}, {"without index duplicates appear", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const partitions, n = 3, 12_000
			topic := testenv.Topic(t, "calls")
			createTopic(t, brokers, topic, partitions)
			events := genEvents(n, skewedOrgs, 1, base, 11)
			produce(t, brokers, topic, events)

			spec := childSpec{Brokers: brokers, Topic: topic, Group: topic + ".lake", Partitions: partitions, Dir: t.TempDir(), NoIndex: tc.noIndex}
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			for run, rows := range []int{100, 137, 150} {
				spec.MaxRows = rows
				before, _ := footerRows(t, spec.Dir)
				cmd := startChild(t, spec)
				if run < 2 {
					// Kill once this run renamed a few files, at a random
					// moment after that: files are open, some renamed.
					waitFiles(t, spec.Dir, before+3, 2*time.Minute)
					time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					_ = cmd.Wait()
					t.Logf("run %d killed with %d events in %d files", run+1, len(countEvents(readLake(t, spec.Dir))), len(readLake(t, spec.Dir)))
					continue
				}
				waitAllWritten(t, spec.Dir, events, 2*time.Minute)
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if err := cmd.Wait(); err != nil {
					t.Fatalf("last run: %v", err)
				}
			}
			files := readLake(t, spec.Dir)
			if !tc.noIndex {
				checkExactlyOnce(t, files, events)
				t.Logf("%d events exactly once in %d files", n, len(files))
				return
			}
			dups := 0
			for _, c := range countEvents(files) {
				if c > 1 {
					dups++
				}
			}
			if dups == 0 {
				t.Fatal("no duplicate without the index: the crash test would not catch the bug it is for")
			}
			t.Logf("without the index: %d events duplicated", dups)
		})
	}
}

func startChild(t *testing.T, spec childSpec) *exec.Cmd {
	t.Helper()
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// waitFiles waits until the lake holds at least n files.
func waitFiles(t *testing.T, dir string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if files, _ := footerRows(t, dir); files >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d files after %s", n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// footerRows counts the lake's files and their rows from the footers only,
// cheap enough to poll while a consumer runs.
func footerRows(t *testing.T, dir string) (files int, rows int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, tableDir), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		files++
		rows += pf.NumRows()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, rows
}

// waitAllWritten waits until every event is in some renamed file.
func waitAllWritten(t *testing.T, dir string, events []schemas.CallEvent, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := len(events)
		if _, rows := footerRows(t, dir); rows >= int64(len(events)) {
			seen := countEvents(readLake(t, dir))
			missing = 0
			for _, e := range events {
				if seen[e.EventID] == 0 {
					missing++
				}
			}
			if missing == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events still not written after %s", missing, len(events), timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
