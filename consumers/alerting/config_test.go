package alerting

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/config"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range cfg.Rules {
		names = append(names, r.Name+"/"+r.Kind)
	}
	want := []string{"missed-call-spike/", "failed-call-burst/", "call-absence/absence", "call-volume-drop/drop", "org-paused/org_paused"}
	if !slices.Equal(names, want) {
		t.Fatalf("default rules = %v, want %v", names, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{"no condition", func(c *Config) { r := &c.Rules[0]; r.MinCount, r.MinRatio, r.BaselineFactor = 0, 0, 0 }, "no condition"},
		{"min_volume without min_ratio", func(c *Config) { r := &c.Rules[0]; r.MinRatio = 0 }, "min_volume guards min_ratio"},
		{"window not a multiple of the step", func(c *Config) { c.Rules[0].Window = 15 * time.Second }, "multiple"},
		{"baseline without window", func(c *Config) { c.Rules[0].BaselineWindow = 0 }, "baseline_window"},
		{"negative min_expected", func(c *Config) { c.Rules[2].MinExpected = -1 }, "min_expected"},
		{"ratio above one", func(c *Config) { c.Rules[1].MinRatio = 1.5 }, "min_ratio"},
		{"unknown group label", func(c *Config) { c.Rules[0].GroupBy = []string{"city"} }, `"city"`},
		{"unknown status", func(c *Config) { c.Rules[0].Match.CallStatus = []string{"no-answer"} }, "no-answer"},
		{"duplicate name", func(c *Config) { c.Rules[1].Name = c.Rules[0].Name }, "twice"},
		{"unnamed rule", func(c *Config) { c.Rules[1].Name = "" }, "no name"},
		{"negative grace", func(c *Config) { c.Grace = -time.Second }, "grace"},
		{"bad webhook secret", func(c *Config) { c.Notifiers.Webhook = WebhookConfig{URL: "http://x", Secret: "hunter2"} }, "whsec_"},
		{"zero queue", func(c *Config) { c.Notifiers.QueueSize = 0 }, "queue_size"},
		{"slack URL without scheme", func(c *Config) { c.Notifiers.Slack.URL = "hooks.example/hunter2" }, "slack.url"},
		{"alertmanager URL not http", func(c *Config) { c.Notifiers.Alertmanager.URL = "ftp://am:9093" }, "alertmanager.url"},
		{"negative startup hold", func(c *Config) { c.StartupHold = -time.Second }, "startup_hold"},
		{"unknown kind", func(c *Config) { c.Rules[0].Kind = "spike" }, `kind "spike"`},
		{"rise with min_expected", func(c *Config) { c.Rules[0].MinExpected = 3 }, "min_expected is for absence and drop"},
		{"absence without min_expected", func(c *Config) { c.Rules[2].MinExpected = 0 }, "needs min_expected"},
		{"absence with a ratio", func(c *Config) { c.Rules[2].MinRatio = 0.5 }, "takes min_expected, not min_count, min_ratio"},
		{"absence with a factor", func(c *Config) { c.Rules[2].BaselineFactor = 0.5 }, "absence rule takes no baseline_factor"},
		{"absence without baseline window", func(c *Config) { c.Rules[2].BaselineWindow = 0 }, "baseline_window"},
		{"drop factor above one", func(c *Config) { c.Rules[3].BaselineFactor = 1.5 }, "must be in (0, 1)"},
		{"drop without factor", func(c *Config) { c.Rules[3].BaselineFactor = 0 }, "must be in (0, 1)"},
		{"drop window not a multiple", func(c *Config) { c.Rules[3].Window = 25 * time.Second }, "multiple"},
		{"org_paused with a window", func(c *Config) { c.Rules[4].Window = time.Minute }, "org_paused rule takes no window"},
		{"org_paused with a match", func(c *Config) { c.Rules[4].Match.CallStatus = []string{"failed"} }, "org_paused rule takes no window, match"},
		{"org_paused by number", func(c *Config) { c.Rules[4].GroupBy = []string{LabelSourceNumber} }, "groups by org only"},
		{"zero evaluation interval", func(c *Config) { c.EvaluationInterval = 0 }, "evaluation_interval"},
		{"zero idle timeout", func(c *Config) { c.IdleTimeout = 0 }, "idle_timeout"},
		{"zero window", func(c *Config) { c.Rules[0].Window = 0 }, "window 0s must be a positive"},
		{"drop factor of one", func(c *Config) { c.Rules[3].BaselineFactor = 1 }, "must be in (0, 1)"},
		{"zero notifier timeout", func(c *Config) { c.Notifiers.Timeout = 0 }, "must be positive"},
		{"zero retry_initial", func(c *Config) { c.Notifiers.RetryInitial = 0 }, "must be positive"},
		{"zero retry_max", func(c *Config) { c.Notifiers.RetryMax = 0 }, "must be positive"},
		{"zero retry_max_elapsed", func(c *Config) { c.Notifiers.RetryMaxElapsed = 0 }, "must be positive"},
		{"alertmanager without resend", func(c *Config) {
			c.Notifiers.Alertmanager = AlertmanagerConfig{URL: "http://am:9093"}
		}, "resend_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want mention of %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the secret leaked into the error")
			}
		})
	}
}

// TestValidateAcceptsEdges: the edges of every range are valid settings.
func TestValidateAcceptsEdges(t *testing.T) {
	for name, mutate := range map[string]func(c *Config){
		"zero grace":       func(c *Config) { c.Grace = 0 },
		"ratio of one":     func(c *Config) { c.Rules[1].MinRatio = 1 },
		"outbound calls":   func(c *Config) { c.Rules[1].Match.CallType = []string{"outbound", "inbound"} },
		"zero for":         func(c *Config) { c.Rules[1].For, c.Rules[1].KeepFiringFor, c.Rules[1].RepeatInterval = 0, 0, 0 },
		"a count rule":     func(c *Config) { r := &c.Rules[1]; r.MinRatio, r.MinVolume = 0, 0 },
		"a baseline alone": func(c *Config) { r := &c.Rules[0]; r.MinCount, r.MinRatio, r.MinVolume = 0, 0, 0 },
	} {
		cfg := DefaultConfig()
		mutate(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDefaultRulesAsDocumented: the package documentation states each
// default rule's timing, severity and thresholds, with the odds of a false
// alert worked out from them; the rules must be what it says.
func TestDefaultRulesAsDocumented(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// The paragraphs of the doc comment, joined into lines.
	text := strings.NewReplacer("\n// ", " ", "\n//\n", "\n\n").Replace(string(src))
	dur := func(d time.Duration) string {
		switch {
		case d == 0:
			return "0"
		case d%time.Hour == 0:
			return fmt.Sprintf("%dh", d/time.Hour)
		case d%time.Minute == 0:
			return fmt.Sprintf("%dm", d/time.Minute)
		}
		return fmt.Sprintf("%ds", d/time.Second)
	}
	for _, r := range DefaultConfig().Rules {
		i := strings.Index(text, "// "+r.Name+": ")
		if i < 0 {
			t.Errorf("doc.go does not describe the default rule %s", r.Name)
			continue
		}
		para, _, _ := strings.Cut(text[i:], "\n\n")
		want := []string{"for " + dur(r.For), "keep_firing_for " + dur(r.KeepFiringFor),
			"repeat_interval " + dur(r.RepeatInterval), "severity=" + r.Labels["severity"]}
		if r.MinCount > 0 {
			want = append(want, fmt.Sprintf("at least %d ", r.MinCount))
		}
		if r.MinRatio > 0 {
			want = append(want, fmt.Sprintf("%g%% of at least %d ", r.MinRatio*100, r.MinVolume))
		}
		if r.MinExpected > 0 {
			want = append(want, fmt.Sprintf("min_expected %g", r.MinExpected))
		}
		for _, w := range want {
			if !strings.Contains(para, w) {
				t.Errorf("%s: the documentation does not say %q:\n%s", r.Name, w, para)
			}
		}
	}
}

func TestConfigLoadsFromYAMLAndEnv(t *testing.T) {
	cfg := DefaultConfig()
	yml := `
grace: 45s
rules:
  - name: vip-missed
    match: {call_status: [missed], numbers: ["+14155550000"]}
    group_by: [org, destination_number]
    window: 5m
    min_count: 3
    for: 1m
    keep_firing_for: 2m
    repeat_interval: 4h
    labels: {team: vip}
    annotations: {summary: VIP line missing calls}
notifiers:
  slack: {url: "https://hooks.example/T000/B000/XXXX"}
  alertmanager: {url: "http://127.0.0.1:9093", resend_interval: 30s}
`
	if err := config.LoadYAML("alerting.yaml", []byte(yml), &cfg); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CALLSTREAM_ALERTING_WEBHOOK_URL": "http://127.0.0.1:1/hook", "CALLSTREAM_ALERTING_WEBHOOK_SECRET": testSecret}
	if err := config.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := cfg.Rules[0]
	if len(cfg.Rules) != 1 || r.Window != 5*time.Minute || r.RepeatInterval != 4*time.Hour || r.Labels["team"] != "vip" ||
		r.Match.Numbers[0] != "+14155550000" || cfg.Grace != 45*time.Second || cfg.Notifiers.Webhook.Secret != testSecret ||
		cfg.Notifiers.Alertmanager.ResendInterval != 30*time.Second || cfg.Notifiers.QueueSize != 1000 {
		t.Fatalf("loaded config = %+v", cfg)
	}
	out, err := config.Print(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "XXXX") || strings.Contains(out, "c2VjcmV0") {
		t.Fatalf("secrets printed:\n%s", out)
	}
}
