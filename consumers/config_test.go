package consumers

import (
	"reflect"
	"strings"
	"testing"
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
		// In flight: at least the batches handled at once plus one filling.
		{"handler takes defaults", newRecorder("r"), Tuning{MaxInFlight: 100, BatchSize: 50, BatchWait: cfg.BatchWait, Concurrency: 1}},
		{"two batches' worth in flight", newBatchRecorder("b", Tuning{BatchSize: 10}),
			Tuning{MaxInFlight: 20, BatchSize: 10, BatchWait: cfg.BatchWait, Concurrency: 1}},
		{"concurrent batches need more", newBatchRecorder("b", Tuning{BatchSize: 10, Concurrency: 4}),
			Tuning{MaxInFlight: 50, BatchSize: 10, BatchWait: cfg.BatchWait, Concurrency: 4}},
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
