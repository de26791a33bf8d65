package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 2, 7, 5, 57, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"5", 5 * time.Second, true},
		{" 3 ", 3 * time.Second, true},
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{"-3", 0, false},
		{"NaN", 0, false},
		{"1.5", 1500 * time.Millisecond, true},
		{"Sat, 07 Feb 2026 05:57:30 GMT", 30 * time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Sat, 07 Feb 2026 05:56:30 GMT", 0, true}, // in the past: no wait
		{"soon", 0, false},
		// Over a day is capped, not dropped.
		{"86401", Max, true},
		{"604800", Max, true},
		{"Sat, 14 Feb 2026 05:57:00 GMT", Max, true},
	}
	for _, tc := range tests {
		if got, ok := Parse(tc.in, now); got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
