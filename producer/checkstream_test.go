package producer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// recordingTB collects the errors a check reports instead of failing.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckStreamCatchesDuplicates: the stream check the Kafka tests rely
// on reports a revision published twice and, as well, the same call
// republished unchanged under the next revision; a real change passes.
func TestCheckStreamCatchesDuplicates(t *testing.T) {
	created := time.Date(2026, 2, 7, 11, 0, 0, 0, time.UTC)
	ev := func(rev int, status string, raw string) topicEvent {
		id := "c1"
		e := schemas.CallEvent{EventID: fmt.Sprint("e", rev, status, raw), Org: "acme", CallKey: "c1", Revision: rev, CallID: &id,
			SourceNumber: "+911234567890", DestinationNumber: "+14155551234", CallType: schemas.CallOutbound,
			CallStatus: status, CreationTime: created, CallDurationSeconds: 0, EndReason: "x", Raw: []byte(raw)}
		h := map[string]string{
			schemas.HeaderSpecVersion: schemas.SpecVersion, schemas.HeaderID: e.EventID,
			schemas.HeaderSource: schemas.Source(e.Org), schemas.HeaderType: e.Type(),
			schemas.HeaderSubject: e.CallKey, schemas.HeaderContentType: schemas.JSONContentType,
			schemas.HeaderTime: created.Format(time.RFC3339Nano),
		}
		return topicEvent{CallEvent: e, Key: e.CallKey, Headers: h}
	}
	tests := []struct {
		name   string
		events []topicEvent
		want   string // "" for no error
	}{
		{"a change of status", []topicEvent{ev(1, schemas.StatusMissed, `{"a":1}`), ev(2, schemas.StatusCompleted, `{"a":2}`)}, ""},
		{"a revision twice", []topicEvent{ev(1, schemas.StatusMissed, `{"a":1}`), ev(1, schemas.StatusMissed, `{"a":1}`)}, "published twice"},
		{"the same content under a new revision", []topicEvent{ev(1, schemas.StatusCompleted, `{"a":1}`), ev(2, schemas.StatusCompleted, `{"a":1}`)}, "republishes"},
		{"only the raw spelling differs", []topicEvent{ev(1, schemas.StatusCompleted, `{"a":1}`), ev(2, schemas.StatusCompleted, `{"a": 1}`)}, "republishes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			checkStream(rec, tt.events)
			if tt.want == "" {
				if len(rec.errs) != 0 {
					t.Fatalf("reported %q, want nothing", rec.errs)
				}
				return
			}
			if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], tt.want) {
				t.Fatalf("reported %q, want one error saying %q", rec.errs, tt.want)
			}
		})
	}
}
