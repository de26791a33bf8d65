package consumers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// TestReplayDLQ: a plug-in refuses one event, which lands in the DLQ; after
// the "fix", a dry run changes nothing, a replay puts the record back on the
// calls topic with its key and without DLQ metadata, the fixed plug-in gets
// exactly that event, and a second replay finds nothing left.
func TestReplayDLQ(t *testing.T) {
	k := newKafkaEnv(t, 2)
	want := k.publish(t, 0, 10)
	cfg := fastConfig()
	cfg.GroupPrefix = "test-" + k.topics.Prefix

	broken := newRecorder("sink")
	broken.permKey = "call-0003"
	stop := k.start(t, cfg, broken)
	waitFor(t, 60*time.Second, "9 events handled and 1 poisoned", func() bool {
		return broken.count() == len(want)-1 && len(readAll(t, k.kcfg, k.topics.DLQ)) == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rc := ReplayConfig{
		Kafka: k.kcfg, DLQ: k.topics.DLQ, Group: cfg.GroupID("dlq-replay"),
		Publisher: k.pub, Idle: 10 * time.Second,
	}
	var seen []ReplayRecord
	dry := rc
	dry.DryRun = true
	dry.OnRecord = func(r ReplayRecord) { seen = append(seen, r) }
	stats, err := ReplayDLQ(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 1 || stats.Read != 1 || stats.Replayed != 0 || stats.ByTopic[k.topics.Calls] != 1 {
		t.Fatalf("dry run stats %+v", stats)
	}
	if len(seen) != 1 || seen[0].Handler != "sink" || !strings.Contains(seen[0].Reason, "refused for good") {
		t.Fatalf("dry run records %+v", seen)
	}
	if n := len(readAll(t, k.kcfg, k.topics.Calls)); n != 10 {
		t.Fatalf("dry run published: calls topic holds %d records", n)
	}

	stats, err = ReplayDLQ(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 1 || stats.Replayed != 1 {
		t.Fatalf("replay stats %+v (the dry run must not have committed)", stats)
	}
	calls := readAll(t, k.kcfg, k.topics.Calls)
	if len(calls) != 11 {
		t.Fatalf("calls topic holds %d records after replay, want 11", len(calls))
	}
	var replayed []string // ce_type of each calls record keyed call-0003
	for _, m := range calls {
		if string(m.Key) != "call-0003" {
			continue
		}
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "callstream_dlq_") {
				t.Fatalf("a calls record carries DLQ header %s", h.Key)
			}
		}
		replayed = append(replayed, header(m, schemas.HeaderType))
	}
	if len(replayed) != 2 || replayed[1] != schemas.TypeCallCreated {
		t.Fatalf("want the original and the replayed record under key call-0003 with their ce_type, got %v", replayed)
	}

	fixed := newRecorder("sink")
	stop = k.start(t, cfg, fixed)
	ev := testEvent(3)
	waitFor(t, 60*time.Second, "the fixed plug-in to get the replayed event", func() bool { return fixed.count() >= 1 })
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := fixed.snapshot(); len(got) != 1 || got[ev.EventID] != 1 {
		t.Fatalf("after replay the plug-in saw %v, want only %s once", got, ev.EventID)
	}

	stats, err = ReplayDLQ(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 0 || stats.Read != 0 {
		t.Fatalf("second replay stats %+v, want nothing left", stats)
	}
}
