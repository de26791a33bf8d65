package producer

import (
	"encoding/json"
	"strconv"
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

// Golden values. call_key and content_hash were computed once with this
// code and are checked in; the event ids (revision 1 and 2) were computed
// apart from it, with google/uuid's uuid.NewSHA1 over EventNamespace and
// org, call key, revision and content hash joined by NUL bytes (the
// definition in DESIGN.md section 3 as issue 13 amended it), and
// TestEventIDIsUUIDv5 computes them that way again. A change here changes
// every call_key or event_id in production.
var goldenIdentities = map[string][4]string{
	"digest key": {"k_0fde9fbb856128f0e681d20d3dbab3e1", "4a0127258a938f32fc7d2f230997ff88",
		"536182a4-bda9-5c3c-bfae-1bada2434810", "d785984c-65cc-5a34-840f-bcc1ba50269d"},
	"api id": {"call_abc123def456", "12cfcecee03fdf60f522a8092faff631",
		"8266ff43-5dba-5881-a062-b9607276176d", "52a74f33-01ed-569e-bc27-0bec0bcf256d"},
	"other org": {"k_dcf5779bb7de08df5867fddbd4987f08", "e5c8fdac73a77a09bc86981aa51747b1",
		"3c91fd97-03af-59b0-892c-d1d08941d29d", "f0c34bc7-6abd-5d1a-9b94-50b6e9e5c5ec"},
	"milliseconds": {"k_3046afb6f9b91e0b23dee2e33a39577a", "2546019d7e4c3c4a80a38203e8da5951",
		"e5815b71-0907-58f9-9c04-3532e526fe97", "b010a3b2-f83e-57a2-a535-42d4fc5f834a"},
	"missed no-answer": {"k_0fde9fbb856128f0e681d20d3dbab3e1", "3ee66658d792399f3295c9890c67478b",
		"f6c8cc5b-68b8-5ba4-b776-7bb7faf3c937", "c70e98e5-2e3a-5da3-b517-f220a13516f4"},
}

func TestIdentityGolden(t *testing.T) {
	for _, c := range identityCases() {
		t.Run(c.name, func(t *testing.T) {
			id := Identify(c.org, &c.rec)
			want := goldenIdentities[c.name]
			observed := time.Date(2026, 2, 7, 6, 1, 0, 0, time.UTC)
			e1, e2 := NewEvent(c.org, &c.rec, id, 1, observed), NewEvent(c.org, &c.rec, id, 2, observed)
			got := [4]string{id.CallKey, id.ContentHash, e1.EventID, e2.EventID}
			if got != want {
				t.Fatalf("identity changed:\n got %q\nwant %q", got, want)
			}
			if v := uuid.MustParse(e1.EventID).Version(); v != 5 {
				t.Fatalf("event id version %d, want 5", v)
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
			ea, eb := EventID("acme", a.CallKey, 1, a.ContentHash), EventID("acme", b.CallKey, 1, b.ContentHash)
			if (ea == eb) != (tt.sameKey && tt.sameHash) {
				t.Errorf("event id %s vs %s", ea, eb)
			}
		})
	}
}

// TestEventIDIsUUIDv5 holds the allocation-free EventID to the library's
// UUIDv5 over the namespace written out here, and checks that every
// revision of the same content gets its own id.
func TestEventIDIsUUIDv5(t *testing.T) {
	ns := uuid.MustParse("6f1c3e2a-5b7d-4c1e-9a3f-2d8e4b6a7c90")
	for _, in := range [][3]string{{"acme", "call_1", "ab"}, {"", "", ""}, {"globex", "k_0fde9fbb856128f0e681d20d3dbab3e1", "4a0127258a938f32fc7d2f230997ff88"}} {
		seen := map[uuid.UUID]int{}
		for _, rev := range []int{1, 2, 3, 10, 123456} {
			want := uuid.NewSHA1(ns, []byte(in[0]+"\x00"+in[1]+"\x00"+strconv.Itoa(rev)+"\x00"+in[2]))
			got := EventID(in[0], in[1], rev, in[2])
			if got != want {
				t.Errorf("EventID(%q, revision %d) = %s, want %s", in, rev, got, want)
			}
			if r, dup := seen[got]; dup {
				t.Errorf("revisions %d and %d share id %s", r, rev, got)
			}
			seen[got] = rev
		}
	}
	for name, want := range goldenIdentities {
		org := "acme"
		if name == "other org" {
			org = "globex"
		}
		for i, rev := range []string{"1", "2"} {
			if got := uuid.NewSHA1(ns, []byte(org+"\x00"+want[0]+"\x00"+rev+"\x00"+want[1])).String(); got != want[2+i] {
				t.Errorf("%s revision %s: golden event id %s, uuid.NewSHA1 gives %s", name, rev, want[2+i], got)
			}
		}
	}
}
