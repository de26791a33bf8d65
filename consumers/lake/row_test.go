package lake

import (
	"math"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// TestRowSize: the estimate that rotates files on max_file_bytes counts
// every variable-length column by its length, plus the fixed-width ones:
// four 8-byte times (creation, start, end, observed), three 4-byte
// integers (revision, duration, partition) and the 8-byte offset.
func TestRowSize(t *testing.T) {
	const fixed = 8*4 + 4*3 + 8
	if got := (&Row{}).size(); got != fixed {
		t.Fatalf("empty row size %d, want the %d bytes of its fixed-width columns", got, fixed)
	}
	id := "call-123"
	grow := []struct {
		field string
		set   func(*Row)
		n     int64
	}{
		{"event_id", func(r *Row) { r.EventID = "abcde" }, 5},
		{"call_key", func(r *Row) { r.CallKey = "abcdef" }, 6},
		{"call_id", func(r *Row) { r.CallID = &id }, int64(len(id))},
		{"source_number", func(r *Row) { r.SourceNumber = "+9198" }, 5},
		{"destination_number", func(r *Row) { r.DestinationNumber = "+9180123" }, 8},
		{"call_type", func(r *Row) { r.CallType = "inbound" }, 7},
		{"call_status", func(r *Row) { r.CallStatus = "missed" }, 6},
		{"end_reason", func(r *Row) { r.EndReason = "no_answer" }, 9},
		{"raw", func(r *Row) { r.Raw = []byte(`{"a":1}`) }, 7},
	}
	all := Row{}
	for _, g := range grow {
		r := Row{}
		g.set(&r)
		if got := r.size(); got != fixed+g.n {
			t.Errorf("%s of %d bytes: size %d, want %d", g.field, g.n, got, fixed+g.n)
		}
		g.set(&all)
	}
	var sum int64 = fixed
	for _, g := range grow {
		sum += g.n
	}
	if got := all.size(); got != sum {
		t.Errorf("every column set: size %d, want %d", got, sum)
	}
}

func TestClamp32(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want int32
	}{
		{0, 0}, {-7, -7}, {math.MaxInt32, math.MaxInt32}, {math.MaxInt32 + 1, math.MaxInt32},
		{math.MinInt32, math.MinInt32}, {math.MinInt32 - 1, math.MinInt32}, {math.MaxInt64, math.MaxInt32},
	} {
		if got := clamp32(tt.in); got != tt.want {
			t.Errorf("clamp32(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestRowOf: times are stored in UTC and nil times stay nil (a missed call
// has no start).
func TestRowOf(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	start := time.Date(2026, 2, 7, 10, 0, 0, 0, ist)
	e := schemas.CallEvent{CreationTime: start, StartTime: &start, ObservedAt: start, Revision: 2, CallDurationSeconds: 61}
	r := rowOf(&e, 3, 42)
	if r.CreationTime.Location() != time.UTC || r.StartTime.Location() != time.UTC || r.ObservedAt.Location() != time.UTC ||
		!r.StartTime.Equal(start) || r.EndTime != nil {
		t.Fatalf("row times %v %v %v %v", r.CreationTime, r.StartTime, r.EndTime, r.ObservedAt)
	}
	if r.KafkaPartition != 3 || r.KafkaOffset != 42 || r.Revision != 2 || r.CallDurationSeconds != 61 {
		t.Fatalf("row %+v", r)
	}
}

// TestEscapePartition: the characters Hive escapes become %XX (control
// characters, DEL, and "#%'*/:=?\{[]^); others, space included, stay.
func TestEscapePartition(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "__HIVE_DEFAULT_PARTITION__"},
		{"acme corp", "acme corp"},
		{"a\x00b", "a%00b"},
		{"a\x1fb", "a%1Fb"},
		{"a\x7fb", "a%7Fb"},
		{"~!@$&()+,;<>|", "~!@$&()+,;<>|"},
		{`"#%'*/:=?\{[]^`, "%22%23%25%27%2A%2F%3A%3D%3F%5C%7B%5B%5D%5E"},
		{"ünï", "ünï"},
	} {
		if got := escapePartition(tt.in); got != tt.want {
			t.Errorf("escapePartition(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHourDirectories(t *testing.T) {
	for h, want := range map[int]string{0: "hour=00", 9: "hour=09", 10: "hour=10", 23: "hour=23"} {
		k := keyOf("o", time.Date(2026, 2, 7, h, 30, 0, 0, time.UTC), true)
		if got := k.path(); got != "call_logs/org=o/dt=2026-02-07/"+want {
			t.Errorf("hour %d: path %q, want the %s level", h, got, want)
		}
	}
}
