package producer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/callstream/callstream/pkg/unpod"
)

// TestReadyAndSources: the producer is unready before its first poll and
// when the API answers no organization; an organization it refuses is
// reported, and does not make the process unready.
func TestReadyAndSources(t *testing.T) {
	refused := fmt.Errorf("poll: %w", unpod.ErrUnauthorized)
	down := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	tests := []struct {
		name    string
		polls   map[string]error
		ready   bool
		sources map[string]string // prefix of each org's entry
	}{
		{"nothing polled yet", nil, false, map[string]string{}},
		{"all fine", map[string]error{"acme": nil, "globex": nil}, true, map[string]string{"acme": "ok", "globex": "ok"}},
		{"one refused, one fine", map[string]error{"acme": refused, "globex": nil}, true,
			map[string]string{"acme": "paused: unauthorized", "globex": "ok"}},
		{"one refused, one unreachable", map[string]error{"acme": refused, "globex": down}, true,
			map[string]string{"acme": "paused: unauthorized", "globex": "paused: network"}},
		{"the API unreachable for all", map[string]error{"acme": down, "globex": fmt.Errorf("page 2: %w", unpod.ErrServer)}, false,
			map[string]string{"acme": "paused: network", "globex": "paused: server_error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Producer{}
			for org, err := range tt.polls {
				p.sources.record(org, err)
			}
			err := p.Ready(context.Background())
			if (err == nil) != tt.ready {
				t.Fatalf("Ready = %v, want ready %v", err, tt.ready)
			}
			got := p.Sources()
			if len(got) != len(tt.sources) {
				t.Fatalf("Sources = %v, want %v", got, tt.sources)
			}
			for org, want := range tt.sources {
				if !strings.HasPrefix(got[org], want) {
					t.Fatalf("Sources[%s] = %q, want %q...", org, got[org], want)
				}
			}
		})
	}
}
