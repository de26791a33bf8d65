package webhooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

func TestAddrGuard(t *testing.T) {
	tests := []struct {
		addr  string
		guard addrGuard
		class string // "" means allowed
	}{
		{"93.184.216.34", addrGuard{}, ""},
		{"2606:2800:220:1:248:1893:25c8:1946", addrGuard{}, ""},
		{"127.0.0.1", addrGuard{}, "loopback"},
		{"127.8.9.10", addrGuard{}, "loopback"},
		{"::1", addrGuard{}, "loopback"},
		{"::ffff:127.0.0.1", addrGuard{}, "loopback"},
		{"0.0.0.0", addrGuard{}, "loopback"},
		{"127.0.0.1", addrGuard{loopback: true}, ""},
		{"10.1.2.3", addrGuard{}, "private"},
		{"172.16.0.1", addrGuard{}, "private"},
		{"192.168.1.1", addrGuard{}, "private"},
		{"100.64.0.1", addrGuard{}, "private"},
		{"fd00::1", addrGuard{}, "private"},
		{"10.1.2.3", addrGuard{private: true}, ""},
		{"10.1.2.3", addrGuard{loopback: true}, "private"},
		{"169.254.169.254", addrGuard{}, "link-local"},
		{"fe80::1", addrGuard{}, "link-local"},
		{"169.254.169.254", addrGuard{private: true}, "link-local"},
		{"169.254.169.254", addrGuard{linkLocal: true}, ""},
		{"224.0.0.1", addrGuard{}, "link-local"},
		{"239.1.1.1", addrGuard{loopback: true, private: true, linkLocal: true}, "multicast"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := tc.guard.check(netip.MustParseAddr(tc.addr))
			if tc.class == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrDestinationRefused) || !strings.Contains(err.Error(), tc.class) {
				t.Fatalf("check = %v, want a refusal naming %q", err, tc.class)
			}
		})
	}
}

// refusedReason runs one event to an endpoint and returns the DLQ reason
// once its (single) attempt was refused.
func refusedReason(t *testing.T, cfg Config) string {
	t.Helper()
	cfg.RetrySchedule = nil // one attempt, then the DLQ
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handle(t, p.Plugin, testEvent(1, "c", 1))
	eventually(t, 10*time.Second, "the refused delivery in the DLQ", func() bool { return len(d.messages()) == 1 })
	reason := d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata)
	t.Logf("DLQ reason: %s", reason)
	return reason
}

// A redirect is not followed: its target receives nothing, and the error
// says why.
func TestRedirectIsNotFollowed(t *testing.T) {
	target := newListener(t, nil)
	redirector := newListener(t, nil)
	redirector.srv.Config.Handler = http.RedirectHandler(target.srv.URL+"/elsewhere", http.StatusTemporaryRedirect)
	reason := refusedReason(t, testConfig(EndpointConfig{Name: "r", URL: redirector.srv.URL, Secrets: Secrets{newSecret(t)}}))
	if !strings.Contains(reason, "redirect not followed") || !strings.Contains(reason, "307") {
		t.Fatalf("reason %q should say the 307 redirect was not followed", reason)
	}
	if n := len(target.requests()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// A private destination is refused before any connection is made.
func TestPrivateAddressIsRefused(t *testing.T) {
	cfg := testConfig(EndpointConfig{Name: "p", URL: "http://10.255.255.1:9/hook", Secrets: Secrets{newSecret(t)}})
	reason := refusedReason(t, cfg)
	if !strings.Contains(reason, "10.255.255.1 is a private address") || !strings.Contains(reason, "allow_private") {
		t.Fatalf("reason %q should name the private address and the setting", reason)
	}
}

// A hostname that resolves to loopback is refused when loopback is not
// allowed: the check is on the resolved address, not on the URL's text.
func TestHostnameResolvingToLoopbackIsRefused(t *testing.T) {
	l := newListener(t, nil)
	port := l.srv.URL[strings.LastIndexByte(l.srv.URL, ':')+1:]
	cfg := testConfig(EndpointConfig{Name: "lh", URL: "http://localhost:" + port + "/hook", Secrets: Secrets{newSecret(t)}})
	cfg.AllowLoopback = false
	reason := refusedReason(t, cfg)
	if !strings.Contains(reason, "loopback address") || !strings.Contains(reason, "allow_loopback") {
		t.Fatalf("reason %q should say the address is loopback and name the setting", reason)
	}
	if n := len(l.requests()); n != 0 {
		t.Fatalf("the loopback listener got %d requests", n)
	}
}

// Secrets never reach logs or DLQ reasons, even at debug level while
// deliveries fail.
func TestSecretsAreNeverLogged(t *testing.T) {
	secret := newSecret(t)
	var buf syncBuffer
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	cfg := testConfig(EndpointConfig{Name: "s", URL: l.srv.URL, Secrets: Secrets{secret}})
	d := newDLQ(t)
	p, err := New(cfg, consumers.Deps{
		State: newFileStore(t), Publisher: d.pubsub, Topics: d.topics,
		Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	handle(t, p, testEvent(1, "c", 1))
	eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	cancel()
	<-done
	key := strings.TrimPrefix(secret, SecretPrefix)
	out := buf.String() + d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata)
	if !strings.Contains(buf.String(), "retry scheduled") {
		t.Fatalf("expected debug logs of the failures, got %q", buf.String())
	}
	if strings.Contains(out, key) {
		t.Fatalf("a secret appears in logs or DLQ reasons:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
