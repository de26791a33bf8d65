package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// TestBackfillEmbedded backfills a past range into the embedded bus of a
// state directory: plain progress lines (not a terminal), every call of the
// range published once, and a second backfill of the same range publishes
// nothing: it goes through the dedup gate, rebuilt from the bus.
func TestBackfillEmbedded(t *testing.T) {
	sim := unpodsim.DefaultConfig()
	sim.Orgs, sim.LateRecords, sim.Updates = []string{"acme"}, 0, 0
	srv, err := unpodsim.New(sim)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, _, err := srv.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := dir + "/callstream.yaml"
	if err := os.WriteFile(file, []byte("producer:\n  max_window: 10m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"UNPOD_API_URL": url, "UNPOD_API_TOKEN": sim.Token, "CALLSTREAM_STATE_DIR": dir}
	to := srv.Now().Add(-20 * time.Minute).Truncate(time.Minute)
	from := to.Add(-30 * time.Minute)
	backfill := func() (published, duplicates int, out string) {
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
		code := runMain(ctx, e, []string{"backfill", "--org", "acme", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
			"--log-level", "warn", "--config", file})
		if code != 0 {
			t.Fatalf("backfill exited %d: %s %s", code, stdout.String(), stderr.String())
		}
		m := regexp.MustCompile(`(\d+) events published \(\d+ updates\), (\d+) duplicates dropped`).FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("no summary in %q", stdout.String())
		}
		p, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[2])
		return p, d, stdout.String()
	}
	first, _, out := backfill()
	if first == 0 {
		t.Fatalf("the first backfill published nothing:\n%s", out)
	}
	if !strings.Contains(out, "backfill acme: ") || !strings.Contains(out, "window 3/3") || strings.Contains(out, "\r") {
		t.Fatalf("want plain progress lines up to the last of 3 windows, got:\n%s", out)
	}
	again, dups, out := backfill()
	if again != 0 || dups != first {
		t.Fatalf("second backfill published %d and dropped %d duplicates, want 0 and %d:\n%s", again, dups, first, out)
	}
	bus, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: dir + "/" + busFile})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	end, err := bus.EndOffsets(ctx, schemas.TopicName(schemas.DefaultTopicPrefix, schemas.CallsTopic))
	if err != nil || end[0] != int64(first) {
		t.Fatalf("the bus holds %v events (%v), want %d", end, err, first)
	}
}

// TestProgressBarOnATerminal: on a terminal the bar shows the share done,
// the count, the rate and the window.
func TestProgressBarOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, bar: newBar(&buf)}
	for read := 100; read <= 1000; read += 100 {
		p.update(producer.BackfillProgress{Org: "acme", Total: 1000, Read: read, Window: read / 500, Windows: 2, Published: int64(read)})
		time.Sleep(110 * time.Millisecond) // past the bar's throttle
	}
	p.finish()
	s := buf.String()
	for _, want := range []string{"100%", "1000/1000", "records/s", "acme window 2/2", "1000 published"} {
		if !strings.Contains(s, want) {
			t.Fatalf("bar output lacks %q:\n%q", want, s)
		}
	}
}

// TestDLQReplayEmbedded: without KAFKA_BROKERS, `dlq replay` works on the
// embedded bus of the state directory: a dead letter of the storage plug-in
// goes to storage's retry topic, once.
func TestDLQReplayEmbedded(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: dir + "/" + busFile})
	if err != nil {
		t.Fatal(err)
	}
	topics := consumers.NewTopics(schemas.DefaultTopicPrefix)
	dead := message.NewMessage("dead-1", []byte(`{"not":"an event"}`))
	dead.Metadata.Set(schemas.DLQHandlerMetadata, "storage")
	dead.Metadata.Set(schemas.DLQReasonMetadata, "schema violation: call_status")
	if err := bus.Publisher().Publish(topics.DLQ, dead); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"CALLSTREAM_STATE_DIR": dir}
	replay := func() string {
		var out bytes.Buffer
		e := &env{stdout: &out, stderr: &out, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
		if code := runMain(ctx, e, []string{"dlq", "replay", "--log-level", "warn", "--idle", "5s"}); code != 0 {
			t.Fatalf("dlq replay exited %d: %s", code, out.String())
		}
		return out.String()
	}
	if out := replay(); !strings.Contains(out, "backlog 1, read 1, replayed 1") || !strings.Contains(out, "to storage (callstream.retry.storage.v1): 1") {
		t.Fatalf("first replay: %s", out)
	}
	if out := replay(); !strings.Contains(out, "backlog 0, read 0, replayed 0") {
		t.Fatalf("second replay: %s", out)
	}
	bus, err = sqlitebus.Open(ctx, sqlitebus.Config{Path: dir + "/" + busFile})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if end, err := bus.EndOffsets(ctx, topics.Retry("storage")); err != nil || end[0] != 1 {
		t.Fatalf("storage's retry topic holds %v (%v), want 1 message", end, err)
	}
}
