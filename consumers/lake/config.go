package lake

import "time"

// Config configures the lake consumer. Zero fields take DefaultConfig's values.
type Config struct {
	Dir             string        `yaml:"dir" env:"CALLSTREAM_LAKE_DIR" flag:"lake-dir" doc:"Root directory of the lake; files go under <dir>/call_logs/org=<org>/dt=<YYYY-MM-DD>/."`
	HourPartition   bool          `yaml:"hour_partition" doc:"Add an hour=<HH> directory level below dt=, for orgs with many calls a day."`
	Compression     string        `yaml:"compression" doc:"Parquet compression codec: zstd or snappy."`
	MaxFileRows     int           `yaml:"max_file_rows" doc:"A file is closed when it holds this many rows; at most half of max_buffered_rows."`
	MaxFileBytes    int64         `yaml:"max_file_bytes" doc:"A file is closed when its rows hold about this many bytes before compression."`
	MaxFileSpan     time.Duration `yaml:"max_file_span" doc:"A file is closed before a row whose creation_time would make the file span more than this."`
	IdleClose       time.Duration `yaml:"idle_close" doc:"A file that received no row for this long is closed."`
	MaxFileAge      time.Duration `yaml:"max_file_age" doc:"A file is closed this long after it was opened, however busy, so no event waits longer to be acknowledged."`
	MaxBufferedRows int           `yaml:"max_buffered_rows" doc:"Rows held in open files across all partitions: at half of it the biggest open files are written. The bus is asked for twice as many unacknowledged messages, so new files fill while full ones are written."`
	RowGroupRows    int           `yaml:"row_group_rows" doc:"Most rows in one Parquet row group."`
	FlushWorkers    int           `yaml:"flush_workers" doc:"Files written to disk at the same time."`
}

// DefaultConfig returns the defaults: a local directory, zstd, files of at
// most 25,000 rows (half the in-flight budget) or 64 MiB, closed after 5 s
// idle or 30 s open. The event-time span limit defaults to a day, which the
// dt= directories already bound; lower it to keep files time-clustered.
func DefaultConfig() Config {
	return Config{
		Dir:             "./.callstream/lake",
		Compression:     "zstd",
		MaxFileRows:     25_000,
		MaxFileBytes:    64 << 20,
		MaxFileSpan:     24 * time.Hour,
		IdleClose:       5 * time.Second,
		MaxFileAge:      30 * time.Second,
		MaxBufferedRows: 50_000,
		RowGroupRows:    50_000,
		FlushWorkers:    2,
	}
}

// Validate reports the first setting New would refuse.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults fills zero fields from DefaultConfig and rejects bad values.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Dir == "" {
		c.Dir = d.Dir
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.MaxFileRows <= 0 {
		c.MaxFileRows = d.MaxFileRows
	}
	if c.MaxFileBytes <= 0 {
		c.MaxFileBytes = d.MaxFileBytes
	}
	if c.MaxFileSpan <= 0 {
		c.MaxFileSpan = d.MaxFileSpan
	}
	if c.IdleClose <= 0 {
		c.IdleClose = d.IdleClose
	}
	if c.MaxFileAge <= 0 {
		c.MaxFileAge = d.MaxFileAge
	}
	if c.MaxBufferedRows <= 0 {
		c.MaxBufferedRows = d.MaxBufferedRows
	}
	if c.RowGroupRows <= 0 {
		c.RowGroupRows = d.RowGroupRows
	}
	if c.FlushWorkers <= 0 {
		c.FlushWorkers = d.FlushWorkers
	}
	if _, err := codec(c.Compression); err != nil {
		return c, err
	}
	if c.MaxFileRows > c.MaxBufferedRows/2 {
		// Open files are all written once they hold half the in-flight
		// budget, so no file grows beyond that.
		c.MaxFileRows = max(c.MaxBufferedRows/2, 1)
	}
	return c, nil
}
