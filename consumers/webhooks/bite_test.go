package webhooks

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestSecretKeyLengths: a signing key of 24 to 64 bytes is accepted, one
// byte fewer or more is refused (Standard Webhooks' bounds).
func TestSecretKeyLengths(t *testing.T) {
	for _, tt := range []struct {
		bytes int
		ok    bool
	}{{23, false}, {24, true}, {32, true}, {64, true}, {65, false}} {
		secret := SecretPrefix + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, tt.bytes))
		_, err := decodeSecret(secret)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidSecret)) {
			t.Errorf("a key of %d bytes: err %v, want accepted %v", tt.bytes, err, tt.ok)
		}
	}
}

// TestScrubberMasksEverySecret: header values and their words, URL
// credentials and query values and signing secrets (with and without the
// prefix) are masked when 6 bytes or longer, a value holding another is
// masked whole, and short values are left alone.
func TestScrubberMasksEverySecret(t *testing.T) {
	secret := SecretPrefix + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 24))
	ec := EndpointConfig{
		URL:     "https://hook-user:hook-pass-1@example.com/in?token=query-token-1&x=abc",
		Headers: map[string]string{"Authorization": "Bearer abcdef", "X-Six": "sixsix", "X-Five": "fives", "X-Long": "sixsix-and-more"},
		Secrets: Secrets{secret},
	}
	s := newScrubber(ec)
	if s == nil {
		t.Fatal("no scrubber for an endpoint with secrets")
	}
	for _, tt := range []struct{ in, want string }{
		{"got Bearer abcdef back", "got *** back"},
		{"token abcdef alone", "token *** alone"},
		{"six sixsix", "six ***"},
		{"long sixsix-and-more", "long ***"}, // whole, not "***-and-more"
		{"five fives", "five fives"},
		{"user hook-user pass hook-pass-1", "user *** pass ***"},
		{"query query-token-1 x=abc", "query *** x=abc"},
		{"signing " + secret, "signing ***"},
		{"key " + strings.TrimPrefix(secret, SecretPrefix), "key ***"},
	} {
		if got := s.Replace(tt.in); got != tt.want {
			t.Errorf("scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if newScrubber(EndpointConfig{URL: "https://example.com/in", Headers: map[string]string{"X": "short"}}) != nil {
		t.Error("a scrubber for an endpoint without a value to mask")
	}
}

// TestClientPoolFitsTheEndpoints: the shared transport keeps an idle
// connection for every delivery that may run at once, so a busy endpoint
// does not dial again for every request (the 5k deliveries/s figure).
func TestClientPoolFitsTheEndpoints(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		defaultConc           int
		concs                 []int
		wantIdle, wantPerHost int
	}{
		{"few", 4, []int{0, 0}, 100, 8},
		{"one", 1, []int{0}, 100, 2},
		{"many", 8, []int{64, 80}, 144, 144},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Concurrency = tt.defaultConc
			for _, c := range tt.concs {
				cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Concurrency: c})
			}
			tr := newClient(&cfg).Transport.(*http.Transport)
			if tr.MaxIdleConns != tt.wantIdle || tr.MaxIdleConnsPerHost != tt.wantPerHost {
				t.Fatalf("idle connections %d, per host %d; want %d, %d", tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tt.wantIdle, tt.wantPerHost)
			}
			if tr.Proxy != nil {
				t.Fatal("the transport uses a proxy, which would bypass the address check")
			}
		})
	}
}
