package unpodsim

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestListen(t *testing.T) {
	sim, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	url, wait, err := sim.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/api/v2/platform/organizations/", nil)
	req.Header.Set("Authorization", "Token "+DefaultToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("organizations: status %d", resp.StatusCode)
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop after its context ended")
	}
	if _, _, err := sim.Listen(context.Background(), "256.0.0.1:1"); err == nil {
		t.Fatal("Listen on an impossible address succeeded")
	}
}
