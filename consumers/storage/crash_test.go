package storage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/testenv"
)

// Environment of the consumer process TestCrashRecovery starts.
const (
	childEnv        = "CALLSTREAM_STORAGE_CRASH_CHILD"
	childBrokersEnv = "CALLSTREAM_STORAGE_CRASH_BROKERS"
	childPrefixEnv  = "CALLSTREAM_STORAGE_CRASH_PREFIX"
	childDSNEnv     = "CALLSTREAM_STORAGE_CRASH_DSN"
)

// TestCrashChild is the consumer process of TestCrashRecovery (the test
// binary started again): the real runtime and kafkabus Subscriber with the
// storage plug-in, as `callstream consume --only storage` runs them, until
// SIGTERM or SIGKILL.
func TestCrashChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("the consumer process of TestCrashRecovery")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	brokers := strings.Split(os.Getenv(childBrokersEnv), ",")
	if err := runConsumer(ctx, brokers, os.Getenv(childPrefixEnv), os.Getenv(childDSNEnv), 500, logger, nil); err != nil {
		t.Fatalf("consumer: %v", err)
	}
}

// consumerBinary builds cmd/callstream and returns its path when the binary
// offers the storage plug-in (its configuration reference names
// CALLSTREAM_STORAGE_DSN), or "" when it does not (yet).
func consumerBinary(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		t.Logf("go env GOMOD: %v; using the in-test consumer", err)
		return ""
	}
	bin := filepath.Join(t.TempDir(), "callstream")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/callstream")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/callstream: %v\n%s", err, out)
	}
	docs, err := exec.CommandContext(ctx, bin, "config", "docs").Output()
	if err != nil || !strings.Contains(string(docs), "CALLSTREAM_STORAGE_DSN") {
		t.Logf("callstream does not offer the storage plug-in yet (config docs: %v); using the in-test consumer", err)
		return ""
	}
	return bin
}

// TestCrashRecovery is evidence 3: a consumer process killed with SIGKILL
// in the middle of a run against the real broker (twice), then restarted, ends with
// every call stored exactly once at its highest revision, and nothing in
// the DLQ. Offsets are committed only after a batch's transaction, so the
// kill can only cause redelivery, which the upsert absorbs.
//
// The process is `callstream consume --only storage` when the binary offers
// the storage plug-in, else this test binary running TestCrashChild (the
// same runtime, subscriber and plug-in, configured in code).
func TestCrashRecovery(t *testing.T) {
	brokers := testenv.Kafka(t)
	bin := consumerBinary(t)
	if bin != "" {
		t.Logf("consumer process: %s consume --only storage", bin)
	} else {
		t.Logf("consumer process: %s -test.run=^TestCrashChild$", os.Args[0])
	}
	const n = 20_000
	evs, top := crashEvents(n)
	var wantRevs int64
	for _, ev := range top {
		wantRevs += int64(ev.Revision)
	}
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel() // mostly waiting on the broker and the consumer process
			dsn := d.dsn(t)
			prefix := testenv.Prefix(t)
			topics := createTopics(t, brokers, prefix, 4)
			began := time.Now()
			publish(t, brokers, topics.Calls, evs)
			t.Logf("published %d events in %v", len(evs), time.Since(began).Round(time.Millisecond))

			start := func(run string) (*exec.Cmd, *bytes.Buffer) {
				var cmd *exec.Cmd
				if bin != "" {
					cmd = exec.Command(bin, "consume", "--only", "storage")
					cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(brokers, ","),
						"CALLSTREAM_TOPIC_PREFIX="+prefix, "CALLSTREAM_GROUP_PREFIX="+prefix+"group-",
						"CALLSTREAM_STORAGE_DSN="+dsn, "CALLSTREAM_HTTP_LISTEN=", "CALLSTREAM_STATE_DIR="+t.TempDir())
				} else {
					cmd = exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v", "-test.count=1")
					cmd.Env = append(os.Environ(), childEnv+"=1", childBrokersEnv+"="+strings.Join(brokers, ","),
						childPrefixEnv+"="+prefix, childDSNEnv+"="+dsn)
				}
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatalf("start consumer (%s): %v", run, err)
				}
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						_ = cmd.Process.Kill()
						_ = cmd.Wait()
					}
					if t.Failed() {
						t.Logf("consumer output (%s):\n%s", run, tail(out.String(), 4000))
					}
				})
				return cmd, &out
			}

			// Kill it twice: as soon as its first batches are in, and again
			// after the restart has gone on to about half the calls.
			for i, threshold := range []int64{500, int64(len(top)) / 2} {
				run := fmt.Sprintf("run %d", i+1)
				cmd, _ := start(run)
				rows, _ := waitFor(t, dsn, 90*time.Second, fmt.Sprintf("%d calls stored", threshold), func(rows, _ int64) bool { return rows >= threshold })
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatalf("SIGKILL: %v", err)
				}
				_ = cmd.Wait()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				atKill, revsAtKill, err := progress(ctx, dsn)
				cancel()
				if err != nil {
					t.Fatalf("read progress after the kill: %v", err)
				}
				if int(atKill) >= len(top) {
					t.Fatalf("%s stored all %d calls before the kill: the crash did not land mid-run", run, atKill)
				}
				t.Logf("%s killed with SIGKILL at %d (polled %d) of %d calls stored, revision sum %d of %d", run, atKill, rows, len(top), revsAtKill, wantRevs)
			}

			// Last run: resume from the committed offsets, then stop gracefully.
			restarted := time.Now()
			second, _ := start("last run")
			waitFor(t, dsn, 120*time.Second, "every call at its highest revision", func(rows, revs int64) bool {
				return int(rows) == len(top) && revs == wantRevs
			})
			t.Logf("restarted consumer caught up in %v", time.Since(restarted).Round(time.Millisecond))
			if err := second.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			if err := second.Wait(); err != nil {
				t.Errorf("restarted consumer exited with %v after SIGTERM", err)
			}

			s := openStore(t, dsn)
			got := readAll(t, s)
			if len(got) != len(top) {
				t.Errorf("%d rows, want exactly one per call: %d", len(got), len(top))
			}
			for key, want := range top {
				r, ok := got[key]
				if !ok {
					t.Errorf("call %s missing", key)
					continue
				}
				if r.Revision != want.Revision || r.EventID != want.EventID {
					t.Errorf("call %s at revision %d (%s), want %d (%s)", key, r.Revision, r.EventID, want.Revision, want.EventID)
				}
			}
			if dlq := topicSize(t, brokers, topics.DLQ); dlq != 0 {
				t.Errorf("%d records in the DLQ, want none", dlq)
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
