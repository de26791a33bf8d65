package alerting

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
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

// TestNotifiersAsConfigured: one queue per notifier that is configured,
// none for one that is not (an unset URL would fail every notice).
func TestNotifiersAsConfigured(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*NotifierConfig)
		want []string
	}{
		{"defaults", func(*NotifierConfig) {}, []string{NotifierLog}},
		{"none", func(n *NotifierConfig) { n.Log.Enabled = false }, nil},
		{"all", func(n *NotifierConfig) {
			n.Webhook = WebhookConfig{URL: "http://127.0.0.1:1/hook", Secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("k"))}
			n.Slack.URL, n.Alertmanager.URL = "http://127.0.0.1:1/slack", "http://127.0.0.1:1"
		}, []string{NotifierLog, NotifierWebhook, NotifierSlack, NotifierAlertmanager}},
		{"slack alone", func(n *NotifierConfig) { n.Log.Enabled, n.Slack.URL = false, "http://127.0.0.1:1/slack" }, []string{NotifierSlack}},
	} {
		cfg := DefaultConfig()
		tc.set(&cfg.Notifiers)
		p, err := New(cfg, consumers.Deps{Topics: consumers.NewTopics("test.")})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, q := range p.queues {
			got = append(got, q.name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: notifiers %v, want %v", tc.name, got, tc.want)
		}
	}
}
