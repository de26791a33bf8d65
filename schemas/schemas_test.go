package schemas

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func validCall() CallEvent {
	id := "call_abc"
	start := time.Date(2026, 2, 7, 5, 57, 10, 0, time.UTC)
	return CallEvent{
		EventID: "6ba7b810-9dad-51d1-80b4-00c04fd430c8", Org: "unpod", CallKey: id, Revision: 1, CallID: &id,
		SourceNumber: "+911234567890", DestinationNumber: "+919876543210", CallType: CallInbound,
		CallStatus: StatusCompleted, CreationTime: start.Add(-10 * time.Second), StartTime: &start,
		CallDurationSeconds: 207, EndReason: "caller_hangup", ObservedAt: start.Add(time.Hour),
		Raw: json.RawMessage(`{"id":"call_abc","bridge":1}`),
	}
}

// realisticCall is an event shaped like the producer's from a simulator
// record with the extra fields: about 800 bytes of JSON.
func realisticCall() CallEvent {
	e := validCall()
	end := e.StartTime.Add(207 * time.Second)
	e.EndTime = &end
	e.ObservedAt = e.ObservedAt.Add(123456789 * time.Nanosecond)
	e.Raw = json.RawMessage(`{"id":"call_abc","source_number":"+911234567890","destination_number":"+919876543210",` +
		`"call_type":"inbound","call_status":"completed","creation_time":"2026-02-07T05:57:00.000Z",` +
		`"start_time":"2026-02-07T05:57:10.000Z","end_time":"2026-02-07T06:00:37.000Z","call_duration":"0:03:27",` +
		`"end_reason":"caller_hangup","bridge":1,"metadata":{"campaign":"sim-1","tags":["simulated"]}}`)
	return e
}

func TestValidateCall(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(m map[string]any)
		wantErr string
	}{
		{"valid", func(map[string]any) {}, ""},
		{"unknown status", func(m map[string]any) { m["call_status"] = "no-answer" }, "call_status"},
		{"missing org", func(m map[string]any) { delete(m, "org") }, "org"},
		{"revision zero", func(m map[string]any) { m["revision"] = 0 }, "revision"},
		{"bad time", func(m map[string]any) { m["creation_time"] = "yesterday" }, "creation_time"},
		{"raw not object", func(m map[string]any) { m["raw"] = "x" }, "raw"},
		{"extra field allowed", func(m map[string]any) { m["future_field"] = 1 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validCall()
			data, _ := json.Marshal(&e)
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			data, _ = json.Marshal(m)
			err := v.ValidateCall(data)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want mention of %q", err, tt.wantErr)
			}
		})
	}
	if err := v.ValidateCall([]byte("{nope")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("malformed JSON: err = %v", err)
	}
}

func TestDecodeCallRoundTrip(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	in := validCall()
	data, _ := json.Marshal(&in)
	out, err := v.DecodeCall(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.CallKey != in.CallKey || !out.CreationTime.Equal(in.CreationTime) || *out.CallID != *in.CallID || out.EndTime != nil {
		t.Fatalf("round trip changed the event: %+v", out)
	}
	if out.Type() != TypeCallCreated {
		t.Fatalf("type = %s", out.Type())
	}
}

func TestValidateAlert(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	a := AlertEvent{AlertID: "a1", Rule: "failed-call-burst", Org: "unpod", Group: map[string]string{"org": "unpod"},
		State: AlertFiring, StartsAt: time.Now().UTC(), Value: 12, Threshold: 10, Window: "5m0s", SampleEventIDs: []string{}}
	data, _ := json.Marshal(&a)
	if err := v.ValidateAlert(data); err != nil {
		t.Fatal(err)
	}
	a.State = "pending"
	data, _ = json.Marshal(&a)
	if err := v.ValidateAlert(data); err == nil {
		t.Fatal("pending is not a published state, want an error")
	}
}

func TestMajorVersion(t *testing.T) {
	for in, want := range map[string]string{
		TypeCallCreated: "v1", "callstream.call.created.v2": "v2", "nodots": "", "x.": "", "a.b": "",
	} {
		if got := MajorVersion(in); got != want {
			t.Errorf("MajorVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
