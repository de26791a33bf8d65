package lake

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

type metrics struct {
	rows, files, bytes, skipped, flushErrors, indexedFiles, indexErrors prometheus.Counter
	flushSeconds                                                        prometheus.Histogram
}

// newMetrics builds the lake's metrics and registers them with reg, when
// not nil. A second lake on the same registry shares the first one's.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var err error
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "callstream", Subsystem: "lake", Name: name, Help: help})
		c, e := telemetry.RegisterOrReuse(reg, c)
		err = errors.Join(err, e)
		return c
	}
	m := &metrics{
		rows:         counter("rows_written_total", "Rows written to renamed Parquet files."),
		files:        counter("files_written_total", "Parquet files renamed into place."),
		bytes:        counter("bytes_written_total", "Bytes of Parquet files renamed into place."),
		skipped:      counter("rows_skipped_total", "Redelivered events acknowledged without writing: their offset is already in a file."),
		flushErrors:  counter("flush_errors_total", "Files that failed to write; their events are redelivered."),
		indexedFiles: counter("indexed_files_total", "Existing files whose offsets were read to skip redeliveries."),
		indexErrors:  counter("index_errors_total", "Existing files whose offsets could not be read; their events may be written again."),
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "callstream", Subsystem: "lake", Name: "flush_seconds",
		Help: "Time to write, sync and rename one file.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	h, e := telemetry.RegisterOrReuse(reg, h)
	m.flushSeconds = h
	if err = errors.Join(err, e); err != nil {
		return nil, fmt.Errorf("lake: register metrics: %w", err)
	}
	return m, nil
}
