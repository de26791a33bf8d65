package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSimulateServesItsMetrics: `callstream simulate` exports the
// simulator's unpodsim_* metrics on its listener, as its README says.
func TestSimulateServesItsMetrics(t *testing.T) {
	api, ops := freeAddr(t), freeAddr(t)
	vars := map[string]string{"UNPOD_SIM_LISTEN": api, "CALLSTREAM_HTTP_LISTEN": ops}
	e := &env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runMain(ctx, e, []string{"simulate"}) }()
	defer func() { cancel(); <-done }()
	get := func(url string, header ...string) string {
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("http://"+api+"/api/v2/platform/call-logs/?page_size=1", "Authorization", "Token sim-token", "Org-Handle", "acme") == "" {
		if time.Now().After(deadline) {
			t.Fatal("the simulator never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := get("http://" + ops + "/metrics"); !strings.Contains(m, "unpodsim_requests_total") || !strings.Contains(m, "unpodsim_records_served_total") {
		t.Fatalf("/metrics lacks the simulator's metrics:\n%.500s", m)
	}
}
