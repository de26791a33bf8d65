package producer

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// fakeClock is a clock the test moves by hand; the simulator and the
// producer share it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSim serves a simulator on a loopback port until the test ends.
func startSim(t testing.TB, cfg unpodsim.Config) (*unpodsim.Server, string) {
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

// newClient returns an API client with quick retries.
func newClient(t testing.TB, url, token string) *unpod.Client {
	t.Helper()
	c, err := unpod.New(unpod.Config{
		BaseURL: url, Token: token, RateLimit: -1, InitialBackoff: 20 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, MaxRetryTime: 30 * time.Second, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// topicEvent is one record of the events topic, decoded.
type topicEvent struct {
	schemas.CallEvent
	Key       string
	Headers   map[string]string
	Partition int
	Offset    int64
	Value     []byte
}

// readTopic returns every record of topic, validating each against the
// event schema.
func readTopic(t testing.TB, cfg kafkabus.Config, topic string) []topicEvent {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Collect first, validate after: kafkabus.ReadRange's read deadline
	// also runs while fn does, and schema validation is slow under -race.
	var raw []kafka.Message
	err = kafkabus.ReadRange(ctx, cfg, topic, nil, func(m kafka.Message) error {
		raw = append(raw, m)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	var out []topicEvent
	for _, m := range raw {
		e, err := v.DecodeCall(m.Value)
		if err != nil {
			t.Errorf("partition %d offset %d: %v", m.Partition, m.Offset, err)
			continue
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		out = append(out, topicEvent{CallEvent: e, Key: string(m.Key), Headers: h, Partition: m.Partition, Offset: m.Offset, Value: m.Value})
	}
	return out
}

// checkStream checks the guarantees of the events topic: CloudEvents
// headers, each (call_key, revision) once, revisions 1..n in offset order
// within a key, each revision a change of content (the same call
// republished under a new revision is a duplicate too), and returns the
// latest event per org/call_key.
func checkStream(t testing.TB, events []topicEvent) map[string]topicEvent {
	t.Helper()
	latest := map[string]topicEvent{}
	seen := map[string]bool{}
	for _, e := range events {
		want := map[string]string{
			schemas.HeaderSpecVersion: schemas.SpecVersion, schemas.HeaderID: e.EventID,
			schemas.HeaderSource: schemas.Source(e.Org), schemas.HeaderType: e.Type(),
			schemas.HeaderSubject: e.CallKey, schemas.HeaderContentType: schemas.JSONContentType,
		}
		for k, v := range want {
			if e.Headers[k] != v {
				t.Errorf("event %s: header %s = %q, want %q", e.EventID, k, e.Headers[k], v)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Headers[schemas.HeaderTime]); err != nil {
			t.Errorf("event %s: ce_time %q: %v", e.EventID, e.Headers[schemas.HeaderTime], err)
		}
		if e.Key != e.CallKey {
			t.Errorf("event %s: record key %q, want the call key %q", e.EventID, e.Key, e.CallKey)
		}
		id := e.Org + "/" + e.CallKey
		rk := id + "#" + itoa(e.Revision)
		if seen[rk] {
			t.Errorf("duplicate: call %s revision %d published twice", id, e.Revision)
			continue
		}
		seen[rk] = true
		prev, ok := latest[id]
		switch {
		case !ok && e.Revision != 1:
			t.Errorf("call %s: first event has revision %d, want 1", id, e.Revision)
		case ok && e.Revision != prev.Revision+1:
			t.Errorf("call %s: revision %d follows revision %d", id, e.Revision, prev.Revision)
		case ok && e.Partition != prev.Partition:
			t.Errorf("call %s: revisions in partitions %d and %d", id, prev.Partition, e.Partition)
		case ok && sameFields(&prev.CallEvent, &e.CallEvent):
			t.Errorf("duplicate: call %s revision %d republishes revision %d's content unchanged", id, e.Revision, prev.Revision)
		}
		latest[id] = e
	}
	return latest
}

// sameFields reports whether two events carry the same normalised call:
// every field a consumer reads, leaving out what each publication sets
// (event id, revision, observed_at) and the raw payload, whose spelling
// may change without the call changing (DESIGN.md section 3).
func sameFields(a, b *schemas.CallEvent) bool {
	sameTime := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	sameID := (a.CallID == nil) == (b.CallID == nil) && (a.CallID == nil || *a.CallID == *b.CallID)
	return sameID && a.SourceNumber == b.SourceNumber && a.DestinationNumber == b.DestinationNumber &&
		a.CallType == b.CallType && a.CallStatus == b.CallStatus && a.CreationTime.Equal(b.CreationTime) &&
		sameTime(a.StartTime, b.StartTime) && sameTime(a.EndTime, b.EndTime) &&
		a.CallDurationSeconds == b.CallDurationSeconds && a.EndReason == b.EndReason
}

// sameContent compares every normalised field of an event with a
// ground-truth record.
func sameContent(e *schemas.CallEvent, r *unpod.Record) bool {
	sameTime := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	callID := ""
	if e.CallID != nil {
		callID = *e.CallID
	}
	return callID == r.ID && e.SourceNumber == r.SourceNumber && e.DestinationNumber == r.DestinationNumber &&
		e.CallType == r.CallType && e.CallStatus == r.CallStatus && e.CreationTime.Equal(r.CreationTime) &&
		sameTime(e.StartTime, r.StartTime) && sameTime(e.EndTime, r.EndTime) &&
		e.CallDurationSeconds == r.DurationSeconds && e.EndReason == r.EndReason && bytes.Equal(e.Raw, r.Raw)
}

func itoa(n int) string {
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// checkTruth checks that every call of the ground truth is in latest with
// exactly the truth's content, and that latest holds nothing else in the
// range. The truth comes from the simulator's generator, not from
// pkg/unpod's decoding, and the comparison is field by field against the
// event's value: a normalisation bug in the client or in the producer's
// encoding shows as a stale call.
func checkTruth(t testing.TB, org string, truth []unpod.Record, latest map[string]topicEvent, from, to time.Time) {
	t.Helper()
	want := map[string]bool{}
	missing, stale := 0, 0
	for i := range truth {
		r := &truth[i]
		id := Identify(org, r)
		k := org + "/" + id.CallKey
		want[k] = true
		e, ok := latest[k]
		switch {
		case !ok:
			missing++
			if missing <= 5 {
				t.Errorf("org %s: call %s (created %s) never published", org, id.CallKey, r.CreationTime.Format(time.RFC3339Nano))
			}
		case !sameContent(&e.CallEvent, r):
			stale++
			if stale <= 5 {
				t.Errorf("org %s: call %s: latest revision %d is %s/%d s/%q/end %v, truth %s/%d s/%q/end %v",
					org, id.CallKey, e.Revision, e.CallStatus, e.CallDurationSeconds, e.EndReason, e.EndTime,
					r.CallStatus, r.DurationSeconds, r.EndReason, r.EndTime)
			}
		case e.EventID != EventID(org, id.CallKey, e.Revision, id.ContentHash).String():
			stale++
			if stale <= 5 {
				t.Errorf("org %s: call %s: revision %d has event_id %s, not the UUIDv5 of its content", org, id.CallKey, e.Revision, e.EventID)
			}
		}
	}
	extra := 0
	for k, e := range latest {
		if e.Org != org || e.CreationTime.Before(from) || !e.CreationTime.Before(to) {
			continue
		}
		if !want[k] {
			extra++
			if extra <= 5 {
				t.Errorf("org %s: published call %s is not in the ground truth", org, k)
			}
		}
	}
	if missing+stale+extra > 0 {
		t.Errorf("org %s: %d calls in truth: %d missing, %d stale, %d extra", org, len(truth), missing, stale, extra)
	}
}
