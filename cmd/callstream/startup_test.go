package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStartWithBrokerDown starts produce and consume against a port where no
// broker listens: each serves /healthz (alive) and /readyz (not ready,
// saying that the connection is refused) meanwhile, logs what it waits for
// every few seconds instead of failing, and stops cleanly when told to.
func TestStartWithBrokerDown(t *testing.T) {
	for _, cmd := range []string{"produce", "consume"} {
		t.Run(cmd, func(t *testing.T) {
			down := freeAddr(t)
			listen := freeAddr(t)
			vars := map[string]string{
				"KAFKA_BROKERS": down, "CALLSTREAM_HTTP_LISTEN": listen,
				"UNPOD_API_TOKEN": "secret-token", "UNPOD_ORG_HANDLES": "acme",
			}
			logs := &syncWriter{w: &strings.Builder{}}
			e := &env{stdout: io.Discard, stderr: logs, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int, 1)
			go func() { done <- runMain(ctx, e, []string{cmd, "--log-format", "text"}) }()

			get := func(path string) (int, string) {
				resp, err := http.Get("http://" + listen + path)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				code, _ := get("/healthz")
				if code == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz never answered; logs:\n%s", logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
			code, body := get("/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot connect") || !strings.Contains(body, "refused") {
				t.Fatalf("/readyz = %d %s, want 503 naming the refused connection", code, body)
			}
			time.Sleep(4 * time.Second)
			if n := strings.Count(logs.String(), "waiting for Kafka"); n < 2 {
				t.Fatalf("%d log lines about the wait in 4 s, want a few; logs:\n%s", n, logs)
			}
			if strings.Contains(logs.String(), "secret-token") {
				t.Fatal("the API token is in the logs")
			}
			select {
			case c := <-done:
				t.Fatalf("%s exited with %d while the broker was down; logs:\n%s", cmd, c, logs)
			default:
			}
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s did not stop after cancel", cmd)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// String returns what was written, when the writer is a strings.Builder.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.w.(*strings.Builder); ok {
		return b.String()
	}
	return ""
}
