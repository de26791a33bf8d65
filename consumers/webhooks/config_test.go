package webhooks

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/schemas"
)

func TestConfigValidate(t *testing.T) {
	sec := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ok := func() EndpointConfig {
		return EndpointConfig{Name: "a", URL: "https://hooks.example.com/x", Secrets: []string{sec}}
	}
	tests := []struct {
		name   string
		edit   func(*Config)
		errHas string
	}{
		{"valid", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Endpoints[0].Name = "" }, "no name"},
		{"duplicate name", func(c *Config) { c.Endpoints = append(c.Endpoints, ok()) }, "used twice"},
		{"ftp url", func(c *Config) { c.Endpoints[0].URL = "ftp://x/" }, "not http or https"},
		{"https only", func(c *Config) { c.HTTPSOnly = true; c.Endpoints[0].URL = "http://hooks.example.com/" }, "https_only"},
		{"https only accepts https", func(c *Config) { c.HTTPSOnly = true }, ""},
		{"credentials in url", func(c *Config) { c.Endpoints[0].URL = "https://u:p@hooks.example.com/" }, "credentials"},
		{"no secret", func(c *Config) { c.Endpoints[0].Secrets = nil }, "no secret"},
		{"bad secret", func(c *Config) { c.Endpoints[0].Secrets = []string{"whsec_nope"} }, "secret 0"},
		{"reserved header", func(c *Config) { c.Endpoints[0].Headers = map[string]string{"Webhook-Signature": "x"} }, "set by the sender"},
		{"custom header", func(c *Config) { c.Endpoints[0].Headers = map[string]string{"X-Team": "ops"} }, ""},
		{"negative rate", func(c *Config) { c.Endpoints[0].RateLimit = -1 }, "negative"},
		{"jitter too big", func(c *Config) { c.RetryJitter = 1 }, "retry_jitter"},
		{"jitter just below one", func(c *Config) { c.RetryJitter = 0.99 }, ""},
		{"no jitter", func(c *Config) { c.RetryJitter = 0 }, ""},
		{"negative jitter", func(c *Config) { c.RetryJitter = -0.1 }, "retry_jitter"},
		{"immediate retry step", func(c *Config) { c.RetrySchedule = []time.Duration{0, time.Second} }, ""},
		{"negative retry step", func(c *Config) { c.RetrySchedule = []time.Duration{time.Second, -1} }, "retry_schedule[1]"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "must be positive"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "must be positive"},
		{"zero queue size", func(c *Config) { c.QueueSize = 0 }, "must be positive"},
		{"zero spill bytes", func(c *Config) { c.SpillBytes = 0 }, "must be positive"},
		{"zero response bytes", func(c *Config) { c.MaxResponseBytes = 0 }, "must be positive"},
		{"zero breaker failures", func(c *Config) { c.BreakerFailures = 0 }, "breaker_failures"},
		{"zero breaker cooldown", func(c *Config) { c.BreakerCooldown = 0 }, "breaker_cooldown"},
		{"smallest positive values", func(c *Config) {
			c.Timeout, c.Concurrency, c.QueueSize, c.SpillBytes, c.MaxResponseBytes = 1, 1, 1, 1, 1
			c.BreakerFailures, c.BreakerCooldown = 1, 1
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Endpoints = []EndpointConfig{ok()}
			tc.edit(&c)
			err := c.validate()
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("validate = %v, want an error containing %q", err, tc.errHas)
			}
		})
	}
}

// TestDefaultsAsDocumented: DefaultConfig is what its doc and the
// configuration reference promise, Svix's schedule among them.
func TestDefaultsAsDocumented(t *testing.T) {
	d := DefaultConfig()
	schedule := []time.Duration{
		5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
	}
	if !slices.Equal(d.RetrySchedule, schedule) {
		t.Errorf("retry schedule %v, want %v", d.RetrySchedule, schedule)
	}
	if d.DisableAfter != 5*24*time.Hour {
		t.Errorf("disable_after %s, want 5 days", d.DisableAfter)
	}
	if d.FlushInterval != 5*time.Millisecond {
		t.Errorf("flush_interval %s, want 5ms", d.FlushInterval)
	}
	if err := d.validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestFilterMatches(t *testing.T) {
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty matches all", Filter{}, true},
		{"type", Filter{EventTypes: []string{schemas.TypeCallCreated}}, true},
		{"other type", Filter{EventTypes: []string{schemas.TypeCallUpdated}}, false},
		{"status", Filter{CallStatuses: []string{"missed", "failed"}}, true},
		{"other status", Filter{CallStatuses: []string{"completed"}}, false},
		{"call type", Filter{CallTypes: []string{"inbound"}}, true},
		{"other call type", Filter{CallTypes: []string{"outbound"}}, false},
		{"org", Filter{Orgs: []string{"acme"}}, true},
		{"all must hold", Filter{Orgs: []string{"acme"}, CallStatuses: []string{"completed"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.matches(schemas.TypeCallCreated, "missed", "inbound", "acme"); got != tc.want {
				t.Fatalf("matches = %v, want %v", got, tc.want)
			}
		})
	}
}

// The section loads from YAML through pkg/config, and Print masks secrets.
func TestConfigLoadsFromYAML(t *testing.T) {
	c := DefaultConfig()
	yml := `
endpoints:
  - name: billing
    url: https://billing.example.com/hooks
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
    filter: {call_statuses: [missed], orgs: [acme]}
    rate_limit: 50
    headers: {X-Team: billing}
retry_schedule: [1s, 1m]
allow_private: true
`
	if err := config.LoadYAML("test", []byte(yml), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Filter.CallStatuses[0] != "missed" || len(c.RetrySchedule) != 2 || !c.AllowPrivate {
		t.Fatalf("loaded %+v", c)
	}
	out, err := config.Print(&c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
		t.Fatalf("config.Print shows the secret:\n%s", out)
	}
}
