package sqlitebus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/schemas"
)

// simple returns n messages with payloads prefix-0, prefix-1, ...
func simple(prefix string, n int) []*message.Message {
	out := make([]*message.Message, n)
	for i := range out {
		out[i] = message.NewMessage(fmt.Sprintf("%s-uuid-%d", prefix, i), []byte(fmt.Sprintf("%s-%d", prefix, i)))
	}
	return out
}

func publish(t testing.TB, p message.Publisher, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := p.Publish(topic, msgs...); err != nil {
		t.Fatalf("Publish to %s: %v", topic, err)
	}
}

// receive takes one message from ch within d.
func receive(t testing.TB, ch <-chan *message.Message, d time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(d):
		t.Fatalf("no message within %s", d)
		return nil
	}
}

// receiveBatch takes one batch from ch within d, as messages whose verdicts
// settle it.
func receiveBatch(t testing.TB, ch <-chan *delivery.Batch, d time.Duration) []*message.Message {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return b.Messages(context.Background())
	case <-time.After(d):
		t.Fatalf("no batch within %s", d)
		return nil
	}
}

// nothing asserts that ch delivers nothing for d.
func nothing[T any](t testing.TB, ch <-chan T, d time.Duration, why string) {
	t.Helper()
	select {
	case v, ok := <-ch:
		if ok {
			t.Fatalf("got %v, want nothing: %s", v, why)
		}
	case <-time.After(d):
	}
}

func offsetOf(t testing.TB, m *message.Message) int64 {
	t.Helper()
	p, ok := schemas.PositionOf(m.Metadata)
	if !ok {
		t.Fatalf("message %s carries no position: %v", m.UUID, m.Metadata)
	}
	return p.Offset
}

func committed(t testing.TB, b *sqlitebus.Bus, topic, group string) int64 {
	t.Helper()
	c, err := b.CommittedOffsets(context.Background(), topic, group)
	if err != nil {
		t.Fatalf("CommittedOffsets: %v", err)
	}
	o, ok := c[0]
	if !ok {
		return -1
	}
	return o
}

// waitCommitted waits until group's committed offset on topic is want.
func waitCommitted(t testing.TB, b *sqlitebus.Bus, topic, group string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := committed(t, b, topic, group)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s on %s committed %d, want %d", group, topic, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pathOf(b *sqlitebus.Bus) string { return b.Path() }

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// counterValue returns the value of the counter name{label=value} in reg
// (0 if it has no such series).
func counterValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// histogramCount returns the sample count of the histogram name in reg.
func histogramCount(t testing.TB, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
