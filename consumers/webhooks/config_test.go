package webhooks

import (
	"strings"
	"testing"

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
