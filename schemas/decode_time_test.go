package schemas

import (
	"reflect"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	// Accepted: the same Time (instant, location, monotonic-free) as
	// time.Time's JSON decoding, which the reference used.
	for _, s := range []string{
		"2026-02-07T05:57:00Z", "2026-02-07T05:57:00.1Z", "2026-02-07T05:57:00.123456789Z",
		"2026-02-07T05:57:00.1234567891234Z", "2026-02-07T05:57:00.000Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z", "2024-02-29T12:00:00Z", "2000-02-29T12:00:00Z", "1969-12-31T23:59:59.5Z",
		"1900-03-01T00:00:00Z", "2026-02-07T11:27:00+05:30", "2026-02-07T05:57:00-00:00", "2026-02-07T05:57:00+00:00",
		"2026-02-07T05:57:00.5-23:59", "2026-02-07T05:57:00+23:59",
	} {
		got, ok := parseTime(s)
		var want time.Time
		if err := want.UnmarshalJSON([]byte(`"` + s + `"`)); err != nil {
			t.Fatalf("bad test case %s: %v", s, err)
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("parseTime(%s) = %v, %v; want %v", s, got, ok, want)
		}
	}
	// Refused, though time.Time's JSON decoding accepts them through its
	// time.Parse fallback: RFC 3339 and the schema's date-time do not.
	for _, s := range []string{
		"2026-02-07T5:57:00Z", "2026-02-07T05:57:00,5Z", "2026-02-07T05:57:00+24:00", "2026-02-07T05:57:00+05:60",
		"2026-02-07T05:57:00.5+24:00",
	} {
		var loose time.Time
		if err := loose.UnmarshalJSON([]byte(`"` + s + `"`)); err != nil {
			t.Errorf("bad test case %s: time.Time refuses it too: %v", s, err)
		}
		if got, ok := parseTime(s); ok {
			t.Errorf("parseTime(%q) = %v, want refused", s, got)
		}
	}
	// Refused by both.
	for _, s := range []string{
		"", "2026-02-07T05:57:00+5:30", "2026-02-07", "2026-02-07T05:57:00", "2026-02-07T05:57Z", "2026-02-07 05:57:00Z", "2026-02-07t05:57:00Z",
		"2026-02-07T05:57:00z", "2026-02-07T05:57:60Z", "2026-02-07T24:00:00Z", "2026-02-07T05:60:00Z",
		"2026-13-07T05:57:00Z", "2026-00-07T05:57:00Z", "2026-02-00T05:57:00Z", "2026-02-29T05:57:00Z",
		"1900-02-29T05:57:00Z", "2026-04-31T05:57:00Z", "2026-02-07T05:57:00.Z", "2026-02-07T05:57:00.5",
		"2026-02-07T05:57:00ZZ", "2026-02-07T05:57:00+0530", "2026-02-07T05:57:00 +05:30", "+2026-02-07T05:57:00Z",
		"2026-2-07T05:57:00Z", "2026-02-07T05:57:0aZ", "２026-02-07T05:57:00Z", "2026-02-07T05:57:00\\u005a",
		"2026-02-07T05:57:00+05:3a", "2026-02-07T05:57:00Z ", "-026-02-07T05:57:00Z",
	} {
		var strict time.Time
		if err := strict.UnmarshalJSON([]byte(`"` + s + `"`)); err == nil {
			t.Errorf("bad test case %q: time.Time accepts it", s)
		}
		if got, ok := parseTime(s); ok {
			t.Errorf("parseTime(%q) = %v, want refused", s, got)
		}
	}
}

// TestDaysSinceEpoch compares the civil-date arithmetic with time.Date on
// every day of the years where calendars go wrong and the first of every
// month of every year RFC 3339 can write.
func TestDaysSinceEpoch(t *testing.T) {
	check := func(y, m, d int) {
		want := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Unix() / 86400 // midnight: exact
		if got := daysSinceEpoch(y, m, d); got != want {
			t.Fatalf("daysSinceEpoch(%04d-%02d-%02d) = %d, want %d", y, m, d, got, want)
		}
	}
	for y := 0; y <= 9999; y++ {
		for m := 1; m <= 12; m++ {
			check(y, m, 1)
		}
	}
	for _, y := range []int{0, 1, 4, 99, 100, 399, 400, 1600, 1899, 1900, 1969, 1970, 1972, 2000, 2024, 2026, 2100, 9999} {
		for m := 1; m <= 12; m++ {
			for d := 1; d <= daysIn(m, y); d++ {
				check(y, m, d)
			}
		}
	}
	for y, want := range map[int]int{1900: 28, 2000: 29, 2024: 29, 2026: 28, 2100: 28, 0: 29} {
		if got := daysIn(2, y); got != want || got != time.Date(y, 3, 0, 0, 0, 0, 0, time.UTC).Day() {
			t.Errorf("daysIn(2, %d) = %d, want %d", y, got, want)
		}
	}
}
