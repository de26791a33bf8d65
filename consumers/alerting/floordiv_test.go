package alerting

import "testing"

// TestFloorDiv: step indexes round down, before the epoch too (a call
// created before 1970, less grace, is a negative Unix time): truncation
// towards zero would put it in the step after its own.
func TestFloorDiv(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 1}, {25, 10, 2},
		{-1, 10, -1}, {-9, 10, -1}, {-10, 10, -1}, {-11, 10, -2}, {-20, 10, -2},
	} {
		if got := floorDiv(tc.a, tc.b); got != tc.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
