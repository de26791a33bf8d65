package lake

import (
	"strings"
	"testing"
	"time"
)

// TestWithDefaults pins how each setting is filled in: zero and negative
// values take the default, set values are kept, and a file never holds
// more than half the in-flight budget (the pressure rule writes every open
// file at half, so a larger file could never fill).
func TestWithDefaults(t *testing.T) {
	d := DefaultConfig()
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero takes every default", Config{}, d},
		{"negative takes the default", Config{
			MaxFileRows: -1, MaxFileBytes: -1, MaxFileSpan: -1, IdleClose: -1, MaxFileAge: -1,
			MaxBufferedRows: -1, RowGroupRows: -1, FlushWorkers: -1,
		}, d},
		{"set values kept", Config{
			Dir: "/lake", Compression: "snappy", HourPartition: true, MaxFileRows: 10, MaxFileBytes: 1 << 10,
			MaxFileSpan: time.Minute, IdleClose: time.Second, MaxFileAge: 2 * time.Second,
			MaxBufferedRows: 100, RowGroupRows: 5, FlushWorkers: 3,
		}, Config{
			Dir: "/lake", Compression: "snappy", HourPartition: true, MaxFileRows: 10, MaxFileBytes: 1 << 10,
			MaxFileSpan: time.Minute, IdleClose: time.Second, MaxFileAge: 2 * time.Second,
			MaxBufferedRows: 100, RowGroupRows: 5, FlushWorkers: 3,
		}},
		{"file rows capped at half the budget", Config{MaxFileRows: 60, MaxBufferedRows: 100}, func() Config {
			c := d
			c.MaxFileRows, c.MaxBufferedRows = 50, 100
			return c
		}()},
		{"exactly half is kept", Config{MaxFileRows: 50, MaxBufferedRows: 100}, func() Config {
			c := d
			c.MaxFileRows, c.MaxBufferedRows = 50, 100
			return c
		}()},
		{"a budget of one still writes files", Config{MaxBufferedRows: 1}, func() Config {
			c := d
			c.MaxFileRows, c.MaxBufferedRows = 1, 1
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("withDefaults(%+v)\n got  %+v\n want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestDefaultsNeedNoCap: the documented defaults are the effective ones
// (docs/configuration.md prints DefaultConfig).
func TestDefaultsNeedNoCap(t *testing.T) {
	d := DefaultConfig()
	if d.MaxFileRows > d.MaxBufferedRows/2 {
		t.Fatalf("default max_file_rows %d is above half of max_buffered_rows %d: the documented default is not the one used",
			d.MaxFileRows, d.MaxBufferedRows)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config refused: %v", err)
	}
	err := Config{Compression: "lzo"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `"lzo"`) {
		t.Fatalf("Validate(lzo) = %v, want an error naming the codec", err)
	}
}

// TestExpiryTick: Run looks often enough that a file closes at most a
// quarter of its timeout late, within [10ms, 1s].
func TestExpiryTick(t *testing.T) {
	tests := []struct {
		idle, age, want time.Duration
	}{
		{2 * time.Second, 30 * time.Second, 500 * time.Millisecond},       // a quarter of the idle timeout
		{2 * time.Second, 400 * time.Millisecond, 100 * time.Millisecond}, // the shorter one decides
		{time.Millisecond, time.Hour, 10 * time.Millisecond},              // floor
		{time.Hour, time.Hour, time.Second},                               // ceiling
	}
	for _, tt := range tests {
		if got := expiryTick(tt.idle, tt.age); got != tt.want {
			t.Errorf("expiryTick(%s, %s) = %s, want %s", tt.idle, tt.age, got, tt.want)
		}
	}
}

// TestDefaultsAsDocumented: DefaultConfig closes files after 5 s idle or
// 30 s open and bounds their event-time span by a day, as its doc says.
func TestDefaultsAsDocumented(t *testing.T) {
	d := DefaultConfig()
	if d.IdleClose != 5*time.Second || d.MaxFileAge != 30*time.Second || d.MaxFileSpan != 24*time.Hour {
		t.Fatalf("idle_close %s, max_file_age %s, max_file_span %s; want 5s, 30s, 24h", d.IdleClose, d.MaxFileAge, d.MaxFileSpan)
	}
	if d.MaxFileBytes != 64<<20 || d.MaxFileRows != 25_000 || d.Compression != "zstd" || d.Dir != "./.callstream/lake" {
		t.Fatalf("defaults %+v, want files of 25,000 rows or 64 MiB, zstd, under ./.callstream/lake", d)
	}
}
