package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/unpod"
)

// BenchmarkPreparePage measures the producer's own CPU per page of 1,000
// new records: identity, gate, event and message encoding, and the Kafka
// record marshalling of kafkabus.
func BenchmarkPreparePage(b *testing.B) {
	recs := make([]unpod.Record, 1000)
	t0 := time.Date(2026, 2, 7, 5, 57, 0, 0, time.UTC)
	for i := range recs {
		st, et := t0.Add(4*time.Second), t0.Add(211*time.Second)
		raw := fmt.Sprintf(`{"source_number":"+9112345%05d","destination_number":"+14155551234","call_type":"outbound","call_status":"completed","creation_time":"2026-02-07T05:57:00Z","start_time":"2026-02-07T05:57:04Z","end_time":"2026-02-07T06:00:31Z","call_duration":207,"end_reason":"caller_hangup"}`, i)
		recs[i] = unpod.Record{SourceNumber: fmt.Sprintf("+9112345%05d", i), DestinationNumber: "+14155551234", CallType: "outbound",
			CallStatus: "completed", RawStatus: "completed", CreationTime: t0.Add(time.Duration(i) * time.Millisecond),
			StartTime: &st, EndTime: &et, DurationSeconds: 207, EndReason: "caller_hangup", Raw: json.RawMessage(raw)}
	}
	pub := &keepPublisher{}
	p, err := New(DefaultConfig(), Deps{Source: noSource{}, Publisher: pub, Topic: "t", DLQTopic: "dlq", Store: NewFileStore(b.TempDir() + "/s")})
	if err != nil {
		b.Fatal(err)
	}
	var m kafkabus.DefaultMarshaler
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.mem = NewMemory() // every record new, as in a first read
		f := identifyPage("acme", &unpod.Page{Count: len(recs), Records: recs})
		w := Window{Start: t0, End: t0.Add(time.Hour)}
		bt, _ := p.gate("acme", w, f, map[string]struct{}{}, map[uint64]struct{}{})
		pub.msgs = pub.msgs[:0]
		if err := p.send(context.Background(), "acme", bt, p.prepare("acme", bt)); err != nil {
			b.Fatal(err)
		}
		for _, msg := range pub.msgs {
			if _, err := m.Marshal("t", msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/event")
}

// keepPublisher keeps the messages of the latest Publish.
type keepPublisher struct{ msgs []*message.Message }

func (k *keepPublisher) Publish(_ string, msgs ...*message.Message) error {
	k.msgs = append(k.msgs, msgs...)
	return nil
}

func (k *keepPublisher) Close() error { return nil }
