package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// replayed is the delivery a targeted replay of a DLQ message makes: the
// payload and metadata as dead-lettered, the DLQ keys dropped, the endpoint
// named under ReplayEndpointMetadata, and read from the plug-in's retry
// topic.
func replayed(t *testing.T, dead *message.Message, topics consumers.Topics) consumers.Delivery {
	t.Helper()
	var ev schemas.CallEvent
	if err := json.Unmarshal(dead.Payload, &ev); err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage(dead.UUID, dead.Payload)
	for k, v := range dead.Metadata {
		if !strings.HasPrefix(k, schemas.DLQMetadataPrefix) {
			msg.Metadata.Set(k, v)
		}
	}
	msg.Metadata.Set(schemas.ReplayEndpointMetadata, dead.Metadata.Get(schemas.DLQEndpointMetadata))
	schemas.SetPosition(msg.Metadata, schemas.Position{Topic: schemas.RetryTopic(topics.Prefix, Name), Partition: 0, Offset: 1})
	return consumers.NewDelivery(ev, msg)
}

// An exhausted delivery's DLQ message, replayed, reaches the endpoint that
// failed it and no other, although every endpoint's filter matches it.
func TestReplayGoesOnlyToTheEndpointThatFailed(t *testing.T) {
	var fixed atomic.Bool
	flaky := newListener(t, func(int, *http.Request, []byte) int {
		if fixed.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	a, c := newListener(t, nil), newListener(t, nil)
	cfg := testConfig(
		EndpointConfig{Name: "a", URL: a.srv.URL, Secrets: Secrets{newSecret(t)}},
		EndpointConfig{Name: "flaky", URL: flaky.srv.URL, Secrets: Secrets{newSecret(t)}},
		EndpointConfig{Name: "c", URL: c.srv.URL, Secrets: Secrets{newSecret(t)}, Filter: Filter{Orgs: []string{"acme"}}},
	)
	cfg.RetrySchedule = nil
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	ev := testEvent(1, "call-1", 1)
	handle(t, p.Plugin, ev)
	eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	eventually(t, 5*time.Second, "a and c delivered", func() bool { return len(a.successes()) == 1 && len(c.successes()) == 1 })
	dead := d.messages()[0]
	if got := dead.Metadata.Get(schemas.DLQEndpointMetadata); got != "flaky" {
		t.Fatalf("DLQ endpoint = %q, want flaky", got)
	}
	fixed.Store(true)
	r := replayed(t, dead, d.topics)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.HandleBatch(ctx, []consumers.Delivery{r}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the replay at flaky", func() bool { return flaky.successes()[ev.EventID] == 1 })
	time.Sleep(100 * time.Millisecond) // room for a wrong delivery elsewhere
	if n, m := a.successes()[ev.EventID], c.successes()[ev.EventID]; n != 1 || m != 1 {
		t.Fatalf("the replay reached the other endpoints too: a got the event %d times, c %d times, want once each", n, m)
	}
}

// A replay naming an endpoint no longer configured is the message's fault:
// a permanent item error that names the endpoint, while the rest of the
// batch is queued.
func TestReplayToUnknownEndpointIsPermanent(t *testing.T) {
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	ev := testEvent(1, "call-1", 1)
	msg := message.NewMessage(ev.EventID, nil)
	msg.Metadata.Set(schemas.ReplayEndpointMetadata, "billing-v1")
	gone := consumers.NewDelivery(ev, msg)
	fine := delivery(t, testEvent(2, "call-2", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.HandleBatch(ctx, []consumers.Delivery{gone, fine})
	var items *consumers.ItemErrors
	if !errors.As(err, &items) || len(*items) != 1 || (*items)[0] == nil {
		t.Fatalf("HandleBatch = %v, want an item error for item 0 only", err)
	}
	if e := (*items)[0]; !consumers.IsPermanent(e) || !strings.Contains(e.Error(), `"billing-v1"`) {
		t.Fatalf("item error %v: want a permanent error naming the endpoint", e)
	}
	if err := p.Handle(ctx, gone); !consumers.IsPermanent(err) {
		t.Fatalf("Handle = %v, want the permanent error", err)
	}
	eventually(t, 5*time.Second, "the rest of the batch", func() bool { return l.successes()[testEvent(2, "", 1).EventID] == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := l.successes()[testEvent(1, "", 1).EventID]; n != 0 {
		t.Fatalf("the replay for an unknown endpoint was delivered to %d others", n)
	}
}
