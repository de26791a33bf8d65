package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindows(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	cases := []struct {
		name         string
		from, to     time.Time
		closedBefore time.Time
		step         time.Duration
		want         []string // window starts, RFC 3339
		open         int
		err          string
	}{
		{name: "whole days", from: ts("2026-12-01T00:00:00Z"), to: ts("2026-12-03T00:00:00Z"), closedBefore: ts("2026-12-10T00:00:00Z"),
			step: Day, want: []string{"2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"}},
		{name: "partial days are widened", from: ts("2026-12-01T13:20:00Z"), to: ts("2026-12-02T00:00:01Z"), closedBefore: ts("2026-12-10T00:00:00Z"),
			step: Day, want: []string{"2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"}},
		{name: "days in UTC whatever the zone of from", from: ts("2026-12-01T00:30:00+01:00").In(paris), to: ts("2026-12-01T12:00:00Z"),
			closedBefore: ts("2026-12-10T00:00:00Z"), step: Day, want: []string{"2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"}},
		{name: "hours", from: ts("2026-12-01T10:59:59Z"), to: ts("2026-12-01T13:00:00Z"), closedBefore: ts("2026-12-02T00:00:00Z"),
			step: Hour, want: []string{"2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z"}},
		{name: "windows not closed are counted, not returned", from: ts("2026-12-01T10:00:00Z"), to: ts("2026-12-01T14:00:00Z"),
			closedBefore: ts("2026-12-01T12:30:00Z"), step: Hour, want: []string{"2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"}, open: 2},
		{name: "a window ending exactly at closedBefore is closed", from: ts("2026-12-01T10:00:00Z"), to: ts("2026-12-01T12:00:00Z"),
			closedBefore: ts("2026-12-01T12:00:00Z"), step: Hour, want: []string{"2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"}},
		{name: "nothing closed", from: ts("2026-12-01T10:00:00Z"), to: ts("2026-12-01T12:00:00Z"),
			closedBefore: ts("2026-12-01T10:59:59Z"), step: Hour, open: 2},
		{name: "from after to", from: ts("2026-12-02T00:00:00Z"), to: ts("2026-12-01T00:00:00Z"), step: Day, err: "is not before"},
		{name: "from equals to", from: ts("2026-12-02T00:00:00Z"), to: ts("2026-12-02T00:00:00Z"), step: Day, err: "is not before"},
		{name: "bad step", from: ts("2026-12-01T00:00:00Z"), to: ts("2026-12-02T00:00:00Z"), step: time.Minute, err: "want an hour or a day"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws, open, err := Windows(c.from, c.to, c.closedBefore, c.step)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				if w.End.Sub(w.Start) != c.step || w.Start.Location() != time.UTC {
					t.Errorf("window %v: want a UTC window of %s", w, c.step)
				}
				got = append(got, w.Start.Format(time.RFC3339))
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") || open != c.open {
				t.Errorf("got %v (open %d), want %v (open %d)", got, open, c.want, c.open)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	ws, _, err := Windows(ts("2026-12-01T10:00:00Z"), ts("2026-12-01T13:00:00Z"), ts("2027-01-01T00:00:00Z"), Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		at   time.Time
		want int
	}{
		{ts("2026-12-01T09:59:59Z"), -1},
		{ts("2026-12-01T10:00:00Z"), 0}, // start inclusive, as the API's start_date
		{ts("2026-12-01T10:59:59.999999999Z"), 0},
		{ts("2026-12-01T11:00:00Z"), 1}, // end exclusive
		{ts("2026-12-01T12:30:00+01:00"), 1},
		{ts("2026-12-01T12:59:59Z"), 2},
		{ts("2026-12-01T13:00:00Z"), -1},
	}
	for _, c := range cases {
		if got := Locate(ws, c.at); got != c.want {
			t.Errorf("Locate(%s) = %d, want %d", c.at, got, c.want)
		}
	}
	if Locate(nil, ts("2026-12-01T10:00:00Z")) != -1 {
		t.Error("Locate in no window found one")
	}
}

func TestParseStepAndLabel(t *testing.T) {
	for _, c := range []struct {
		in    string
		step  time.Duration
		label string
		bad   bool
	}{
		{in: "day", step: Day, label: "2026-12-01"},
		{in: " Hour ", step: Hour, label: "2026-12-01T00:00Z"},
		{in: "week", bad: true},
		{in: "", bad: true},
	} {
		s, err := ParseStep(c.in)
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), "want day or hour") {
				t.Errorf("ParseStep(%q) = %v, %v: want an error", c.in, s, err)
			}
			continue
		}
		if err != nil || s != c.step {
			t.Errorf("ParseStep(%q) = %v, %v; want %v", c.in, s, err, c.step)
			continue
		}
		w := Window{Start: ts("2026-12-01T00:00:00Z"), End: ts("2026-12-01T00:00:00Z").Add(s)}
		if w.Label() != c.label {
			t.Errorf("label of a %s window = %q, want %q", s, w.Label(), c.label)
		}
	}
}

func TestRowsAndTable(t *testing.T) {
	w := Window{Start: ts("2026-12-01T00:00:00Z"), End: ts("2026-12-02T00:00:00Z")}
	rows := []Row{
		{Org: "acme", Window: w, API: 10, Published: 10, Stored: 10, Lake: 10},
		{Org: "acme", Window: w, API: 10, Published: 9, Stored: 7, Lake: NotChecked},
		{Org: "globex", Window: w, API: 5, Published: 6, Stored: NotChecked, Lake: NotChecked},
		{Org: "initech", Window: w, API: 0, Published: 0, Stored: NotChecked, Lake: NotChecked},
	}
	wantMissing := []int64{0, 3, 0, 0}
	wantExtra := []int64{0, 0, 1, 0}
	for i, r := range rows {
		if r.Missing() != wantMissing[i] || r.Extra() != wantExtra[i] {
			t.Errorf("row %d: missing %d extra %d, want %d and %d", i, r.Missing(), r.Extra(), wantMissing[i], wantExtra[i])
		}
	}
	s := Summarize(rows)
	if s != (Summary{Windows: 4, GapWindows: 1, ExtraWindows: 1, Missing: 3, Extra: 1}) {
		t.Errorf("summary %+v", s)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table:\n%s", b.String())
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "org window api published stored lake missing" {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "acme 2026-12-01 10 9 7 - 3" {
		t.Errorf("row %q", lines[2])
	}
}
