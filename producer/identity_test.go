package producer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callstream/callstream/pkg/unpod"
)

type identityCase struct {
	name string
	org  string
	rec  unpod.Record
}

func ptime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func identityCases() []identityCase {
	base := unpod.Record{
		SourceNumber: "+911234567890", DestinationNumber: "+14155551234", CallType: "outbound",
		CallStatus: "completed", RawStatus: "completed", CreationTime: *ptime("2026-02-07T05:57:00Z"),
		StartTime: ptime("2026-02-07T05:57:04Z"), EndTime: ptime("2026-02-07T06:00:31Z"),
		DurationSeconds: 207, EndReason: "caller_hangup", Raw: json.RawMessage(`{}`),
	}
	withID := base
	withID.ID = "call_abc123def456"
	millis := base
	millis.CreationTime = *ptime("2025-11-18T10:30:00.123Z")
	missed := base
	missed.CallStatus, missed.RawStatus, missed.StartTime, missed.EndTime, missed.DurationSeconds, missed.EndReason =
		"missed", "no-answer", nil, nil, 0, "no_answer"
	return []identityCase{
		{"digest key", "acme", base},
		{"api id", "acme", withID},
		{"other org", "globex", base},
		{"milliseconds", "acme", millis},
		{"missed no-answer", "acme", missed},
	}
}

// golden values were computed once with this code and are checked in: a
// change here changes every call_key or event_id in production.
var goldenIdentities = map[string][3]string{
	"digest key":       {"k_0fde9fbb856128f0e681d20d3dbab3e1", "4a0127258a938f32fc7d2f230997ff88", "830b9431-11c4-5fe5-aad8-ffe1386612d4"},
	"api id":           {"call_abc123def456", "12cfcecee03fdf60f522a8092faff631", "70518017-df2b-52d7-8c33-249ea2b42a1a"},
	"other org":        {"k_dcf5779bb7de08df5867fddbd4987f08", "e5c8fdac73a77a09bc86981aa51747b1", "0f460485-f670-5100-ae62-72f0eb985c41"},
	"milliseconds":     {"k_3046afb6f9b91e0b23dee2e33a39577a", "2546019d7e4c3c4a80a38203e8da5951", "c3059969-9854-5f96-8bf4-569027a2cf7f"},
	"missed no-answer": {"k_0fde9fbb856128f0e681d20d3dbab3e1", "3ee66658d792399f3295c9890c67478b", "4cf402ce-107a-56f3-ba94-46aa7cbf0315"},
}

func TestIdentityGolden(t *testing.T) {
	for _, c := range identityCases() {
		t.Run(c.name, func(t *testing.T) {
			id := Identify(c.org, &c.rec)
			want := goldenIdentities[c.name]
			got := [3]string{id.CallKey, id.ContentHash, id.EventID.String()}
			if got != want {
				t.Fatalf("identity changed:\n got %q\nwant %q", got, want)
			}
			if id.EventID.Version() != 5 {
				t.Fatalf("event id version %d, want 5", id.EventID.Version())
			}
		})
	}
}

// TestIdentityProperties checks what DESIGN.md section 3 promises beyond
// stability: the key ignores what changes, the hash sees it, spelling does
// not count, and times are compared in UTC at full precision.
func TestIdentityProperties(t *testing.T) {
	c := identityCases()
	base := c[0].rec
	tests := []struct {
		name              string
		mutate            func(r *unpod.Record)
		sameKey, sameHash bool
	}{
		{"status change", func(r *unpod.Record) { r.CallStatus = "failed" }, true, false},
		{"end time appears", func(r *unpod.Record) { r.EndTime = nil }, true, false},
		{"duration", func(r *unpod.Record) { r.DurationSeconds++ }, true, false},
		{"end reason", func(r *unpod.Record) { r.EndReason = "customer-ended-call" }, true, false},
		{"raw spelling only", func(r *unpod.Record) { r.RawStatus = "COMPLETED"; r.Raw = json.RawMessage(`{"bridge":1}`) }, true, true},
		{"same instant other zone", func(r *unpod.Record) {
			r.CreationTime = r.CreationTime.In(time.FixedZone("IST", 5*3600+1800))
		}, true, true},
		{"one nanosecond later", func(r *unpod.Record) { r.CreationTime = r.CreationTime.Add(1) }, false, false},
		{"other destination", func(r *unpod.Record) { r.DestinationNumber = "+14155550000" }, false, false},
		{"api id wins", func(r *unpod.Record) { r.ID = "call_x" }, false, false},
	}
	a := Identify("acme", &base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mutate(&r)
			b := Identify("acme", &r)
			if (a.CallKey == b.CallKey) != tt.sameKey {
				t.Errorf("call key %s vs %s, want same=%v", a.CallKey, b.CallKey, tt.sameKey)
			}
			if (a.ContentHash == b.ContentHash) != tt.sameHash {
				t.Errorf("content hash %s vs %s, want same=%v", a.ContentHash, b.ContentHash, tt.sameHash)
			}
			if (a.EventID == b.EventID) != (tt.sameKey && tt.sameHash) {
				t.Errorf("event id %s vs %s", a.EventID, b.EventID)
			}
		})
	}
}

// TestEventIDIsUUIDv5 holds the allocation-free EventID to the library's
// UUIDv5.
func TestEventIDIsUUIDv5(t *testing.T) {
	for _, in := range [][3]string{{"acme", "call_1", "ab"}, {"", "", ""}, {"globex", "k_0fde9fbb856128f0e681d20d3dbab3e1", "4a0127258a938f32fc7d2f230997ff88"}} {
		want := uuid.NewSHA1(EventNamespace, []byte(in[0]+"\x00"+in[1]+"\x00"+in[2]))
		if got := EventID(in[0], in[1], in[2]); got != want {
			t.Errorf("EventID%q = %s, want %s", in, got, want)
		}
	}
}
