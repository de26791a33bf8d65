package consumers

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	reg := []Factory{
		factoryOf(newRecorder("storage")),
		factoryOf(newRecorder("alerting")),
		factoryOf(newRecorder("webhooks")),
	}
	tests := []struct {
		name    string
		enabled []string
		only    []string
		want    []string
		wantErr string
	}{
		{name: "default runs all in registration order", want: []string{"storage", "alerting", "webhooks"}},
		{name: "enabled subset", enabled: []string{"webhooks", "storage"}, want: []string{"storage", "webhooks"}},
		{name: "only wins over enabled", enabled: []string{"storage"}, only: []string{"alerting"}, want: []string{"alerting"}},
		{name: "comma list and spaces", only: []string{" storage , alerting,"}, want: []string{"storage", "alerting"}},
		{name: "unknown in only", only: []string{"storage", "lake"}, wantErr: `--only names unknown plug-in "lake"; known plug-ins: alerting, storage, webhooks`},
		{name: "unknown in enabled", enabled: []string{"nope"}, wantErr: `enabled names unknown plug-in "nope"`},
		{name: "blank only means enabled", enabled: []string{"alerting"}, only: []string{" ", ""}, want: []string{"alerting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(reg, tt.enabled, tt.only)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, len(got))
			for i, f := range got {
				names[i] = f.Name
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Fatalf("selected %v, want %v", names, tt.want)
			}
		})
	}
}

func TestSelectRejectsBadRegistry(t *testing.T) {
	tests := map[string][]Factory{
		"duplicate":  {factoryOf(newRecorder("a")), factoryOf(newRecorder("a"))},
		"empty name": {{Name: "", New: factoryOf(newRecorder("x")).New}},
		"no New":     {{Name: "x"}},
	}
	for name, reg := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Select(reg, nil, nil); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestTuning(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInFlight, cfg.BatchSize = 4, 50
	tests := []struct {
		name   string
		plugin Plugin
		want   Tuning
	}{
		// In flight: at least the batches handled at once, one waiting and
		// one filling.
		{"handler takes defaults", newRecorder("r"), Tuning{MaxInFlight: 150, BatchSize: 50, BatchWait: cfg.BatchWait, Concurrency: 1}},
		{"three batches' worth in flight", newBatchRecorder("b", Tuning{BatchSize: 10}),
			Tuning{MaxInFlight: 30, BatchSize: 10, BatchWait: cfg.BatchWait, Concurrency: 1}},
		{"concurrent batches need more", newBatchRecorder("b", Tuning{BatchSize: 10, Concurrency: 4}),
			Tuning{MaxInFlight: 60, BatchSize: 10, BatchWait: cfg.BatchWait, Concurrency: 4}},
		{"the runtime's in-flight when larger", newBatchRecorder("b", Tuning{BatchSize: 1}),
			Tuning{MaxInFlight: 4, BatchSize: 1, BatchWait: cfg.BatchWait, Concurrency: 1}},
		{"explicit in-flight kept when larger", newBatchRecorder("b", Tuning{MaxInFlight: 500, BatchSize: 10}),
			Tuning{MaxInFlight: 500, BatchSize: 10, BatchWait: cfg.BatchWait, Concurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cfg.tuning(tt.plugin); got != tt.want {
				t.Fatalf("tuning = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGroupID(t *testing.T) {
	if got := DefaultConfig().GroupID("storage"); got != "callstream-storage" {
		t.Fatalf("GroupID = %q", got)
	}
}

// TestWithDefaults: zero and negative settings take the defaults, so a
// Config built by hand works; set values are kept; max_retries 0 means
// no retry; a retry ceiling below the first wait is raised.
func TestWithDefaults(t *testing.T) {
	d := DefaultConfig()
	with := func(edit func(*Config)) Config { c := d; edit(&c); return c }
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, with(func(c *Config) { c.MaxRetries = 0 })},
		{"negative", Config{
			MaxRetries: -1, RetryInitialInterval: -1, RetryMaxInterval: -1, MaxInFlight: -1, BatchSize: -1,
			BatchWait: -1, CloseTimeout: -1, LagInterval: -1,
		}, with(func(c *Config) { c.MaxRetries = 0 })},
		{"set values kept", Config{
			GroupPrefix: "x-", MaxRetries: 2, RetryInitialInterval: time.Second, RetryMaxInterval: time.Second,
			MaxInFlight: 7, BatchSize: 3, BatchWait: time.Second, CloseTimeout: time.Minute, LagInterval: time.Minute,
		}, Config{
			GroupPrefix: "x-", MaxRetries: 2, RetryInitialInterval: time.Second, RetryMaxInterval: time.Second,
			MaxInFlight: 7, BatchSize: 3, BatchWait: time.Second, CloseTimeout: time.Minute, LagInterval: time.Minute,
		}},
		{"ceiling below the first wait", with(func(c *Config) { c.RetryInitialInterval, c.RetryMaxInterval = time.Minute, time.Second }),
			with(func(c *Config) { c.RetryInitialInterval, c.RetryMaxInterval = time.Minute, time.Minute })},
		{"ceiling below the default ceiling", with(func(c *Config) { c.RetryInitialInterval, c.RetryMaxInterval = time.Second, time.Millisecond }),
			with(func(c *Config) { c.RetryInitialInterval, c.RetryMaxInterval = time.Second, d.RetryMaxInterval })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("withDefaults(%+v)\n got  %+v\n want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRetryGroupID(t *testing.T) {
	c := Config{GroupPrefix: "team-"}
	if got := c.RetryGroupID("lake"); got != "team-lake.retry" {
		t.Fatalf("RetryGroupID = %q", got)
	}
	if got := (Config{}).GroupID("lake"); got != "callstream-lake" {
		t.Fatalf("GroupID without a prefix = %q, want the default prefix", got)
	}
}
