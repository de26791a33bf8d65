package producer

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ladder without 0s", func(c *Config) { c.RescanAges = []time.Duration{time.Minute} }, "starting with 0s"},
		{"ladder not increasing", func(c *Config) { c.RescanAges = []time.Duration{0, time.Hour, time.Minute} }, "strictly increasing"},
		{"ladder repeats", func(c *Config) { c.RescanAges = []time.Duration{0, time.Minute, time.Minute} }, "strictly increasing"},
		{"zero poll", func(c *Config) { c.PollInterval = 0 }, "poll_interval"},
		{"negative settle", func(c *Config) { c.SettleLag = -time.Second }, "settle_lag"},
		{"zero page size", func(c *Config) { c.PageSize = 0 }, "page_size"},
		{"empty org", func(c *Config) { c.Orgs = []string{"acme", " "} }, "empty handle"},
		{"bad sim clock", func(c *Config) { c.SimClock = "fast" }, "sim_clock"},
		{"zero discovery", func(c *Config) { c.DiscoveryInterval = 0 }, "discovery_interval"},
		{"no group", func(c *Config) { c.GroupID = "" }, "group_id"},
		{"no org partitions", func(c *Config) { c.OrgPartitions = 0 }, "org_partitions"},
		{"short session", func(c *Config) { c.GroupSessionTimeout = 2 * time.Second }, "group_session_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSimClock(t *testing.T) {
	origin := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := ParseSimClock("60x@2026-01-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	c.wall = func() time.Time { return origin.Add(10 * time.Second) }
	if got, want := c.Now(), origin.Add(10*time.Minute); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
	if got := c.Wall(time.Minute); got != time.Second {
		t.Errorf("Wall(1m) = %v, want 1s", got)
	}
	back, err := ParseSimClock(c.String())
	if err != nil || back.speed != 60 || !back.origin.Equal(origin) {
		t.Errorf("round trip of %q: %+v %v", c.String(), back, err)
	}
	var real Clock
	if real.String() != "" || real.Wall(time.Minute) != time.Minute || time.Since(real.Now()) > time.Second {
		t.Error("the zero Clock is not real time")
	}
}
