package alerting

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/callstream/callstream/consumers"
)

// TestAlertmanagerGeneratorURL: the Alertmanager alert links to the alert's
// entry on the status page configured as StatusPageURL, and to nothing when
// none is.
func TestAlertmanagerGeneratorURL(t *testing.T) {
	for _, tt := range []struct{ page, want string }{
		{"https://ops.example.com/callstream", "https://ops.example.com/callstream/#alert-alert-0"},
		{"", ""},
	} {
		recv := newReceiver(t)
		cfg := DefaultConfig()
		cfg.Notifiers.Alertmanager.URL = recv.srv.URL
		cfg.StatusPageURL = tt.page
		p, err := New(cfg, consumers.Deps{Topics: consumers.NewTopics("test.")})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.am.send(context.Background(), testNotice(KindFiring, 0)); err != nil {
			t.Fatal(err)
		}
		var batch []map[string]any
		reqs := recv.requests()
		if err := json.Unmarshal(reqs[len(reqs)-1].body, &batch); err != nil || len(batch) != 1 {
			t.Fatalf("alertmanager body %s: %v", reqs[len(reqs)-1].body, err)
		}
		got, _ := batch[0]["generatorURL"].(string)
		if got != tt.want {
			t.Errorf("status page %q: generatorURL %q, want %q", tt.page, got, tt.want)
		}
	}
}
