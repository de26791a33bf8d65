package alerting

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cenkalti/backoff/v4"
)

// TestPostClassifiesAnswers: against a real listener, 2xx is delivered,
// 408, 429 and 5xx are retried, every other status is given up at once.
func TestPostClassifiesAnswers(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string // "ok", "retry" or "permanent"
	}{
		{200, "ok"}, {204, "ok"}, {299, "ok"}, {300, "permanent"},
		{400, "permanent"}, {404, "permanent"}, {408, "retry"}, {429, "retry"},
		{499, "permanent"}, {500, "retry"}, {503, "retry"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
		err := post(context.Background(), srv.Client(), "test", srv.URL, []byte("{}"), nil)
		srv.Close()
		var perm *backoff.PermanentError
		got := "retry"
		switch {
		case err == nil:
			got = "ok"
		case errors.As(err, &perm):
			got = "permanent"
		}
		if got != tc.want {
			t.Errorf("status %d: %s (%v), want %s", tc.status, got, err, tc.want)
		}
	}
}

// TestSlackTextMeasures: the Slack summary states the share only when
// there were calls, and the baseline only when the rule has one (a zero
// baseline is a baseline).
func TestSlackTextMeasures(t *testing.T) {
	for _, tc := range []struct {
		count, total int64
		baseline     float64
		want, not    []string
	}{
		{3, 4, -1, []string{"3 matching of 4 calls", "(75%)"}, []string{"baseline"}},
		{0, 0, -1, []string{"0 matching of 0 calls"}, []string{"%)", "baseline"}},
		{1, 1, 0, []string{"(100%)", "baseline 0.00/min"}, nil},
		{2, 5, 1.5, []string{"(40%)", "baseline 1.50/min"}, nil},
	} {
		n := testNotice(KindFiring, 1)
		n.Count, n.Total, n.Baseline = tc.count, tc.total, tc.baseline
		text := SlackText(n)
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%d of %d, baseline %v: %q lacks %q", tc.count, tc.total, tc.baseline, text, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(text, w) {
				t.Errorf("%d of %d, baseline %v: %q has %q", tc.count, tc.total, tc.baseline, text, w)
			}
		}
	}
}
