package producer

import (
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// BenchmarkRestoreEntry is the restore's work per event on the topic:
// scanning its value and recomputing what the gate remembers.
func BenchmarkRestoreEntry(b *testing.B) {
	created := time.Date(2026, 2, 7, 5, 57, 0, 123000000, time.UTC)
	started, ended := created.Add(4*time.Second), created.Add(211*time.Second)
	e := schemas.CallEvent{EventID: EventID("acme", "k_0123456789abcdef", 1, "h").String(), Org: "acme", CallKey: "k_0123456789abcdef", Revision: 1,
		SourceNumber: "+911234567890", DestinationNumber: "+14155551234", CallType: "outbound", CallStatus: "completed",
		CreationTime: created, StartTime: &started, EndTime: &ended, CallDurationSeconds: 207,
		ObservedAt: created, EndReason: "caller_hangup", Raw: []byte(`{"call_status":"completed"}`)}
	v := appendEvent(nil, &e)
	b.ReportAllocs()
	for b.Loop() {
		var te topicEntry
		if !scanEvent(v, &te) {
			b.Fatal("scan")
		}
		_ = te.content.hash()
		_ = keyOf(te.content.org, te.content.callKey)
	}
}
