package consumers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// TestReplayDLQ: one of two plug-ins refuses one event, which lands in the
// DLQ; after the "fix", a dry run changes nothing, a replay puts the record
// on that plug-in's retry topic (never on the calls topic) with its key and
// without DLQ metadata, the fixed plug-in gets exactly that event, the other
// plug-in, which had handled it, does not get it again, and a second replay
// finds nothing left.
func TestReplayDLQ(t *testing.T) {
	k := newKafkaEnv(t, 2)
	want := k.publish(t, 0, 10)
	cfg := fastConfig()
	cfg.GroupPrefix = "test-" + k.topics.Prefix

	broken, other := newRecorder("sink"), newRecorder("other")
	broken.permKeys = []string{"call-0003"}
	stop := k.start(t, cfg, broken, other)
	waitFor(t, 60*time.Second, "9+10 events handled and 1 poisoned", func() bool {
		return broken.count() == len(want)-1 && other.count() == len(want) && len(readAll(t, k.kcfg, k.topics.DLQ)) == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rc := k.replayConfig(cfg)
	rc.Idle = 10 * time.Second
	var seen []ReplayRecord
	dry := rc
	dry.DryRun = true
	dry.OnRecord = func(r ReplayRecord) { seen = append(seen, r) }
	stats, err := ReplayDLQ(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 1 || stats.Read != 1 || stats.Replayed != 0 || stats.ByHandler["sink"] != 1 {
		t.Fatalf("dry run stats %+v", stats)
	}
	if len(seen) != 1 || seen[0].Handler != "sink" || seen[0].RetryTopic != k.topics.Retry("sink") || !strings.Contains(seen[0].Reason, "refused for good") {
		t.Fatalf("dry run records %+v", seen)
	}
	if n := len(readAll(t, k.kcfg, k.topics.Retry("sink"))); n != 0 {
		t.Fatalf("dry run published: the retry topic holds %d records", n)
	}

	stats, err = ReplayDLQ(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 1 || stats.Replayed != 1 {
		t.Fatalf("replay stats %+v (the dry run must not have committed)", stats)
	}
	if n := len(readAll(t, k.kcfg, k.topics.Calls)); n != 10 {
		t.Fatalf("calls topic holds %d records after replay, want the 10 it had", n)
	}
	retried := readAll(t, k.kcfg, k.topics.Retry("sink"))
	if len(retried) != 1 || string(retried[0].Key) != "call-0003" || header(retried[0], schemas.HeaderType) != schemas.TypeCallCreated {
		t.Fatalf("retry topic holds %d records, want call-0003 with its key and ce_type", len(retried))
	}
	for _, h := range retried[0].Headers {
		if strings.HasPrefix(h.Key, schemas.DLQMetadataPrefix) {
			t.Fatalf("the replayed record carries DLQ header %s", h.Key)
		}
	}

	fixed, other2 := newRecorder("sink"), newRecorder("other")
	stop = k.start(t, cfg, fixed, other2)
	ev := testEvent(3)
	waitFor(t, 60*time.Second, "the fixed plug-in to get the replayed event", func() bool { return fixed.count() >= 1 })
	time.Sleep(time.Second) // give a wrong delivery to the other plug-in the time to show
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := fixed.snapshot(); len(got) != 1 || got[ev.EventID] != 1 {
		t.Fatalf("after replay the plug-in saw %v, want only %s once", got, ev.EventID)
	}
	if got := other2.snapshot(); len(got) != 0 {
		t.Fatalf("the plug-in that had handled the event got %v after the replay, want nothing", got)
	}

	stats, err = ReplayDLQ(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 0 || stats.Read != 0 {
		t.Fatalf("second replay stats %+v, want nothing left", stats)
	}
}

// TestReplayLimit: --limit replays that many records and leaves the rest
// for the next replay, which, without a limit, takes the whole backlog. The
// config leaves Idle and Logger to their defaults, as a caller in code may.
func TestReplayLimit(t *testing.T) {
	k := newKafkaEnv(t, 1)
	want := k.publish(t, 0, 6)
	cfg := fastConfig()
	cfg.GroupPrefix = "test-" + k.topics.Prefix
	broken := newRecorder("sink")
	broken.permKeys = []string{"call-0001", "call-0002", "call-0004"}
	stop := k.start(t, cfg, broken)
	waitFor(t, 60*time.Second, "3 events handled and 3 poisoned", func() bool {
		return broken.count() == len(want)-3 && len(readAll(t, k.kcfg, k.topics.DLQ)) == 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rc := k.replayConfig(cfg) // Idle and Logger at their defaults
	for _, step := range []struct {
		limit                  int
		backlog, replayed, all int
	}{{limit: 2, backlog: 3, replayed: 2, all: 2}, {limit: 0, backlog: 1, replayed: 1, all: 3}} {
		rc.Limit = step.limit
		start := time.Now()
		stats, err := ReplayDLQ(ctx, rc)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Backlog != int64(step.backlog) || stats.Read != step.replayed || stats.Replayed != step.replayed {
			t.Fatalf("limit %d: stats %+v, want backlog %d, %d read and replayed", step.limit, stats, step.backlog, step.replayed)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("limit %d: the replay took %s: it waited for a record past its target", step.limit, took)
		}
		if n := len(readAll(t, k.kcfg, k.topics.Retry("sink"))); n != step.all {
			t.Fatalf("limit %d: the retry topic holds %d records, want %d", step.limit, n, step.all)
		}
	}
}

// replayConfig replays k's DLQ for the runtime configured by cfg, with
// every other setting at its default.
func (k *kafkaEnv) replayConfig(cfg Config) ReplayConfig {
	return ReplayConfig{
		Topics: k.topics, Group: cfg.GroupID("dlq-replay"),
		Subscribe: testenv.KafkaSubscribers(k.kcfg, nil), Lag: kafkabus.NewAdmin(k.kcfg), Publisher: k.pub,
	}
}

// TestRestoredKeepsTheEndpoint: a webhook endpoint's dead letter is
// replayed for that endpoint only; the DLQ and delivery metadata go.
func TestRestoredKeepsTheEndpoint(t *testing.T) {
	m := message.NewMessage("id-1", []byte(`{}`))
	m.Metadata.Set(schemas.KeyMetadata, "call-1")
	m.Metadata.Set(schemas.HeaderType, schemas.TypeCallCreated)
	m.Metadata.Set(schemas.DLQHandlerMetadata, "webhooks")
	m.Metadata.Set(schemas.DLQEndpointMetadata, "billing")
	m.Metadata.Set(schemas.DLQReasonMetadata, "503 for 10h")
	schemas.SetPosition(m.Metadata, schemas.Position{Topic: "p.dlq.v1", Partition: 0, Offset: 9})
	r := restored(m)
	if r.UUID != "id-1" || r.Metadata.Get(schemas.KeyMetadata) != "call-1" || r.Metadata.Get(schemas.HeaderType) != schemas.TypeCallCreated {
		t.Fatalf("restored lost the message's identity: %s %v", r.UUID, r.Metadata)
	}
	if r.Metadata.Get(schemas.ReplayEndpointMetadata) != "billing" {
		t.Fatalf("restored metadata %v: want the endpoint named for the replay", r.Metadata)
	}
	for k := range r.Metadata {
		if strings.HasPrefix(k, schemas.DLQMetadataPrefix) || k == schemas.OffsetMetadata || k == schemas.PartitionMetadata {
			t.Fatalf("restored keeps %s", k)
		}
	}
	if rec := replayRecord(m, NewTopics("p.")); rec.RetryTopic != "p.retry.webhooks.v1" || rec.Endpoint != "billing" {
		t.Fatalf("replay record %+v", rec)
	}
}
