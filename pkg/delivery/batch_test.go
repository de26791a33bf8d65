package delivery

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

func positioned(n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprint("m", i), []byte(fmt.Sprint("p", i)))
		schemas.SetPosition(msgs[i].Metadata, schemas.Position{Topic: "t", Partition: 1, Offset: int64(10 + i)})
		msgs[i].Metadata.Set("h", fmt.Sprint("v", i))
	}
	return msgs
}

func verdicts(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		select {
		case <-m.Acked():
			out[i] = "ack"
		case <-m.Nacked():
			out[i] = "nack"
		default:
			out[i] = "none"
		}
	}
	return out
}

// TestFromMessages: records carry the messages' payloads and positions,
// metadata and copies are read from them, and Settle gives each message
// its verdict, once.
func TestFromMessages(t *testing.T) {
	msgs := positioned(3)
	msgs = append(msgs, message.NewMessage("bare", nil)) // no position
	b := FromMessages(msgs)
	if b.Len() != 4 {
		t.Fatalf("Len %d", b.Len())
	}
	for i, r := range b.Records[:3] {
		if string(r.Payload) != fmt.Sprint("p", i) || !r.HasPosition || r.Position != (schemas.Position{Topic: "t", Partition: 1, Offset: int64(10 + i)}) {
			t.Fatalf("record %d: %q %+v %v", i, r.Payload, r.Position, r.HasPosition)
		}
		if got := b.Metadata(i, "h"); got != fmt.Sprint("v", i) {
			t.Fatalf("record %d: metadata h = %q", i, got)
		}
		c := b.Message(i)
		if c == msgs[i] || c.UUID != msgs[i].UUID || c.Metadata.Get("h") != fmt.Sprint("v", i) {
			t.Fatalf("record %d: Message is not a copy of the message", i)
		}
		c.Metadata.Set("h", "changed")
		if msgs[i].Metadata.Get("h") == "changed" {
			t.Fatal("a change to the copy reached the message")
		}
	}
	if b.Records[3].HasPosition {
		t.Fatal("a message without position metadata has a position")
	}
	b.Settle([]bool{true, false, true, false})
	b.Ack() // a second verdict counts for nothing
	if got := verdicts(msgs); !slices.Equal(got, []string{"ack", "nack", "ack", "nack"}) {
		t.Fatalf("verdicts %v", got)
	}
}

func TestAckNack(t *testing.T) {
	for _, tt := range []struct {
		name   string
		settle func(*Batch)
		want   string
	}{
		{"ack", (*Batch).Ack, "ack"},
		{"nack", (*Batch).Nack, "nack"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msgs := positioned(3)
			tt.settle(FromMessages(msgs))
			for i, v := range verdicts(msgs) {
				if v != tt.want {
					t.Fatalf("message %d: %s, want %s", i, v, tt.want)
				}
			}
		})
	}
}

// TestMessages: the message view settles the batch once every message has
// a verdict, and at ctx's end with the acks given by then.
func TestMessages(t *testing.T) {
	settled := func(n int) (*Batch, chan []bool) {
		ch := make(chan []bool, 2)
		recs := make([]Record, n)
		return NewBatch(recs, messages(positioned(n)), func(acked []bool) { ch <- acked }), ch
	}
	wait := func(t *testing.T, ch chan []bool) []bool {
		t.Helper()
		select {
		case got := <-ch:
			return got
		case <-time.After(5 * time.Second):
			t.Fatal("the batch was not settled")
			return nil
		}
	}

	b, ch := settled(3)
	ms := b.Messages(context.Background())
	ms[2].Ack()
	ms[0].Nack()
	select {
	case got := <-ch:
		t.Fatalf("settled %v before every message had a verdict", got)
	case <-time.After(50 * time.Millisecond):
	}
	ms[1].Ack()
	if got := wait(t, ch); !slices.Equal(got, []bool{false, true, true}) {
		t.Fatalf("settled %v, want [false true true]", got)
	}

	b, ch = settled(3)
	ctx, cancel := context.WithCancel(context.Background())
	ms = b.Messages(ctx)
	ms[1].Ack()
	cancel()
	if got := wait(t, ch); !slices.Equal(got, []bool{false, true, false}) {
		t.Fatalf("settled %v at the end of ctx, want the ack given: [false true false]", got)
	}
}
