package lake

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/schemas"
)

var base = time.Date(2026, 2, 8, 0, 30, 0, 0, time.UTC)

func newLake(t *testing.T, cfg Config) *Lake {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	l, err := New(cfg, consumers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestFileName(t *testing.T) {
	tests := []struct {
		key   partKey
		first int64
		want  string
	}{
		{partKey{partition: 0}, 0, "part-0-0000000000.parquet"},
		{partKey{partition: 12}, 1234567, "part-12-0001234567.parquet"},
		{partKey{partition: 3}, 123456789012, "part-3-123456789012.parquet"},
		{partKey{tag: retryTag, partition: 0}, 5, "part-r0-0000000005.parquet"},
	}
	for _, tt := range tests {
		got := fileName(tt.key, tt.first)
		if got != tt.want {
			t.Errorf("fileName(%v, %d) = %q, want %q", tt.key, tt.first, got, tt.want)
		}
		k, f, ok := parseFileName(got)
		if !ok || k != tt.key || f != tt.first {
			t.Errorf("parseFileName(%q) = %v, %d, %v", got, k, f, ok)
		}
	}
	for _, bad := range []string{"part-0.parquet", "part-x-1.parquet", "part-0-1.parquet.tmp", ".part-0-1.parquet.123.tmp",
		"part--1-2.parquet", "x-0-1.parquet", "part-local-0000000005.parquet", "part-r-1.parquet"} {
		if _, _, ok := parseFileName(bad); ok {
			t.Errorf("parseFileName(%q) accepted a name the lake never writes", bad)
		}
	}
}

func TestDirectoryLayout(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	tests := []struct {
		name    string
		org     string
		created time.Time
		hourly  bool
		want    string
	}{
		{"utc day", "unpod", time.Date(2026, 2, 7, 23, 59, 59, 0, time.UTC), false, "call_logs/org=unpod/dt=2026-02-07"},
		{"next day", "unpod", time.Date(2026, 2, 8, 0, 0, 0, 0, time.UTC), false, "call_logs/org=unpod/dt=2026-02-08"},
		{"local zone converted to UTC", "unpod", time.Date(2026, 2, 8, 2, 0, 0, 0, ist), false, "call_logs/org=unpod/dt=2026-02-07"},
		{"hourly", "acme", time.Date(2026, 2, 7, 5, 57, 0, 0, time.UTC), true, "call_logs/org=acme/dt=2026-02-07/hour=05"},
		{"slash escaped", "a/../b", time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC), false, "call_logs/org=a%2F..%2Fb/dt=2026-02-07"},
		{"equals and colon escaped", "k=v:1", time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC), false, "call_logs/org=k%3Dv%3A1/dt=2026-02-07"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyOf(tt.org, tt.created, tt.hourly).path(); got != filepath.FromSlash(tt.want) {
				t.Fatalf("path = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTwoDaysTwoDirectories writes events of one partition whose creation
// times fall on two UTC days and checks they land in two dt= directories,
// whatever order they arrive in.
func TestTwoDaysTwoDirectories(t *testing.T) {
	l := newLake(t, Config{})
	day1 := time.Date(2026, 2, 7, 23, 59, 0, 0, time.UTC)
	events := genEvents(40, []string{"unpod"}, 1, base, 1)
	for i := range events {
		events[i].CreationTime = day1.Add(time.Duration(i%2) * 2 * time.Minute) // 23:59 or 00:01
	}
	ds := deliveriesOf(events)
	handleAll(t, context.Background(), l, ds)
	files := readLake(t, l.cfg.Dir)
	checkExactlyOnce(t, files, events)
	dirs := map[string]int{}
	for _, f := range files {
		dirs[filepath.ToSlash(filepath.Dir(f.rel))] += len(f.rows)
		for _, r := range f.rows {
			want := "dt=" + r.CreationTime.UTC().Format(time.DateOnly)
			if !strings.Contains(f.rel, want) {
				t.Errorf("row created %s is in %s", r.CreationTime, f.rel)
			}
		}
	}
	if dirs["org=unpod/dt=2026-02-07"] != 20 || dirs["org=unpod/dt=2026-02-08"] != 20 || len(dirs) != 2 {
		t.Fatalf("rows by directory = %v, want 20 in each of two days", dirs)
	}
}

// TestRoundTrip checks every column survives the trip to Parquet and back,
// file names carry the partition and first offset, and the footer records
// the offset range.
func TestRoundTrip(t *testing.T) {
	for _, c := range []string{"zstd", "snappy"} {
		t.Run(c, func(t *testing.T) { testRoundTrip(t, c) })
	}
}

func testRoundTrip(t *testing.T, compression string) {
	l := newLake(t, Config{MaxFileRows: 1000, Compression: compression})
	events := genEvents(500, []string{"unpod", "acme", "globex"}, 3, base, 2)
	var ds []consumers.Delivery
	for i, e := range events {
		ds = append(ds, delivery(e, i%3, int64(1000+i/3)))
	}
	handleAll(t, context.Background(), l, ds)
	files := readLake(t, l.cfg.Dir)
	checkExactlyOnce(t, files, events)
	if got := fileCodec(t, filepath.Join(l.cfg.Dir, tableDir, files[0].rel)); !strings.EqualFold(got, compression) {
		t.Errorf("files compressed with %s, want %s", got, compression)
	}
	byID := map[string]schemas.CallEvent{}
	for _, e := range events {
		byID[e.EventID] = e
	}
	for _, f := range files {
		key, first, ok := parseFileName(filepath.Base(f.rel))
		partition := key.partition
		if !ok {
			t.Fatalf("unexpected file %s", f.rel)
		}
		if f.rows[0].KafkaOffset != first {
			t.Errorf("%s: first row offset %d, name says %d", f.rel, f.rows[0].KafkaOffset, first)
		}
		last, offsets, err := fileOffsets(filepath.Join(l.cfg.Dir, tableDir, f.rel), true)
		if err != nil {
			t.Fatal(err)
		}
		if last != f.rows[len(f.rows)-1].KafkaOffset || len(offsets) != len(f.rows) {
			t.Errorf("%s: footer last %d, %d offsets; rows end at %d, %d rows", f.rel, last, len(offsets), f.rows[len(f.rows)-1].KafkaOffset, len(f.rows))
		}
		for i, r := range f.rows {
			if i > 0 && r.KafkaOffset <= f.rows[i-1].KafkaOffset {
				t.Errorf("%s: rows not sorted by offset", f.rel)
			}
			if r.KafkaPartition != partition {
				t.Errorf("%s: row of partition %d", f.rel, r.KafkaPartition)
			}
			e := byID[r.EventID]
			if !strings.Contains(f.rel, "org="+e.Org+string(filepath.Separator)) {
				t.Errorf("event of %s in %s", e.Org, f.rel)
			}
			if r.CallKey != e.CallKey || int(r.Revision) != e.Revision || r.SourceNumber != e.SourceNumber ||
				r.DestinationNumber != e.DestinationNumber || r.CallType != e.CallType || r.CallStatus != e.CallStatus ||
				!r.CreationTime.Equal(e.CreationTime) || !r.ObservedAt.Equal(e.ObservedAt) ||
				int64(r.CallDurationSeconds) != e.CallDurationSeconds || r.EndReason != e.EndReason || string(r.Raw) != string(e.Raw) ||
				!eqTime(r.StartTime, e.StartTime) || !eqTime(r.EndTime, e.EndTime) || (r.CallID == nil) != (e.CallID == nil) {
				t.Fatalf("row differs from event:\n row   %+v\n event %+v", r, e)
			}
		}
	}
}

// fileCodec returns the compression codec of a file's first column chunk.
func fileCodec(t *testing.T, path string) string {
	return openParquet(t, path).Metadata().RowGroups[0].Columns[0].MetaData.Codec.String()
}

// openParquet opens a Parquet file for the test's lifetime.
func openParquet(t *testing.T, path string) *parquet.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

func eqTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func TestRotation(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		n         int
		spread    time.Duration // between consecutive creation times
		wantFiles int
	}{
		{"rows", Config{MaxFileRows: 10, MaxBufferedRows: 1000}, 35, time.Second, 4},
		{"bytes", Config{MaxFileBytes: 2000, MaxBufferedRows: 1000}, 30, time.Second, 0},
		// Minutes 0 to 10 span exactly the limit and stay in one file: 33
		// rows make three files of 11 (files of 10 would make four).
		{"event time span", Config{MaxFileSpan: 10 * time.Minute, MaxBufferedRows: 1000}, 33, time.Minute, 3},
		{"buffered rows", Config{MaxBufferedRows: 20}, 30, time.Second, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLake(t, tt.cfg)
			events := genEvents(tt.n, []string{"unpod"}, 1, base, 3)
			start := time.Date(2026, 2, 7, 1, 0, 0, 0, time.UTC)
			ctx := context.Background()
			done := make(chan error, len(events))
			for i := range events {
				events[i].CreationTime = start.Add(time.Duration(i) * tt.spread)
				d := delivery(events[i], 0, int64(i))
				// One at a time, so rotation sees the offsets in order.
				go func() { done <- l.Handle(ctx, d) }()
				waitPending(t, l, i+1)
			}
			l.Flush()
			for range events {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			files := readLake(t, l.cfg.Dir)
			checkExactlyOnce(t, files, events)
			if tt.wantFiles > 0 && len(files) != tt.wantFiles {
				t.Fatalf("%d files, want %d", len(files), tt.wantFiles)
			}
			for _, f := range files {
				if len(f.rows) > l.cfg.MaxFileRows {
					t.Errorf("%s has %d rows, more than %d", f.rel, len(f.rows), l.cfg.MaxFileRows)
				}
				if span := f.rows[len(f.rows)-1].CreationTime.Sub(f.rows[0].CreationTime); span > l.cfg.MaxFileSpan {
					t.Errorf("%s spans %s of event time", f.rel, span)
				}
			}
			if tt.name == "bytes" && len(files) < 2 {
				t.Fatalf("%d files for ~%d bytes of rows with MaxFileBytes %d", len(files), 30*400, tt.cfg.MaxFileBytes)
			}
		})
	}
}

// waitPending waits until n rows were appended (open, flushing or written).
func waitPending(t *testing.T, l *Lake, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		got := 0
		for _, p := range l.parts {
			got += len(p.pending) + len(p.covered)
		}
		l.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d rows appended after 30s", n)
}

// TestIdleFileClosed checks that Run closes a file nobody adds to, so a
// quiet partition's events are acknowledged in bounded time.
func TestIdleFileClosed(t *testing.T) {
	l := newLake(t, Config{IdleClose: 50 * time.Millisecond, MaxFileAge: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	events := genEvents(3, []string{"unpod"}, 1, base, 4)
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	defer hcancel()
	start := time.Now()
	for i, e := range events {
		if err := l.Handle(hctx, delivery(e, 0, int64(i))); err != nil {
			t.Fatalf("Handle of event %d: %v (idle file never closed?)", i, err)
		}
	}
	if time.Since(start) < 3*50*time.Millisecond {
		t.Fatalf("Handle returned before the idle timeout: acknowledged before the file was renamed?")
	}
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
}

// TestHandleReturnsOnlyAfterRename checks the ack contract: no Handle
// returns while its row is not yet in a renamed file.
func TestHandleReturnsOnlyAfterRename(t *testing.T) {
	l := newLake(t, Config{})
	events := genEvents(5, []string{"unpod"}, 1, base, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	for i, e := range events {
		if err := l.Handle(ctx, delivery(e, 0, int64(i))); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Handle = %v before any file was written, want the context's error", err)
		}
	}
	if files := readLake(t, l.cfg.Dir); len(files) != 0 {
		t.Fatalf("files written before rotation: %v", files)
	}
	// The rows stayed buffered: redelivering them writes each once.
	var ds []consumers.Delivery
	for i, e := range events {
		ds = append(ds, delivery(e, 0, int64(i)), delivery(e, 0, int64(i)))
	}
	handleAll(t, context.Background(), l, ds)
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
	// And once written, a redelivery is acknowledged at once and writes nothing.
	if err := l.Handle(context.Background(), ds[0]); err != nil {
		t.Fatal(err)
	}
	l.Flush()
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
}

// TestCrashRedeliveryNoDuplicates replays the case where a partition's file
// for one org was renamed while an earlier-starting file for another org was
// still open: the committed offset stays before both, so a crash redelivers
// rows already in the renamed files. File boundaries differ on the second
// run (a new config here; timing in real life), so the rewrite would get
// other names. Without the index of covered offsets the same events land in
// two files, which this test must detect.
func TestCrashRedeliveryNoDuplicates(t *testing.T) {
	for _, index := range []bool{true, false} {
		name := "with index"
		if !index {
			name = "without index (must find duplicates)"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			events := genEvents(31, []string{"x"}, 1, base, 6)
			sameHour(events)
			events[0].Org = "y" // offset 0: a quiet org whose file stays open
			ds := make([]consumers.Delivery, len(events))
			for i, e := range events {
				ds[i] = delivery(e, 0, int64(i))
			}

			// Run 1: files of 5 rows for org x; y's file never closes.
			l1, err := New(Config{Dir: dir, MaxFileRows: 5, MaxBufferedRows: 1000}, consumers.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			l1.noIndex = !index
			ctx1, crash := context.WithCancel(context.Background())
			acked := make(chan int64, len(ds))
			for i, d := range ds[:21] {
				go func() {
					if l1.Handle(ctx1, d) == nil {
						acked <- int64(i)
					}
				}()
				waitPending(t, l1, i+1)
			}
			l1.waitWriting()
			crash() // a SIGKILL: nothing more is written, y's file is lost
			if files := readLake(t, dir); len(files) != 4 {
				t.Fatalf("run 1 wrote %d files, want 4 of org x", len(files))
			}
			// The bus commits only the contiguous acked prefix: offset 0 was
			// never acked, so everything is redelivered.

			// Run 2: bigger files, all events redelivered from offset 0.
			l2, err := New(Config{Dir: dir, MaxFileRows: 7, MaxBufferedRows: 1000}, consumers.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			l2.noIndex = !index
			handleAll(t, context.Background(), l2, ds)
			l2.Close()

			seen := countEvents(readLake(t, dir))
			dups := 0
			for _, e := range events {
				if seen[e.EventID] == 0 {
					t.Fatalf("event at offset lost")
				}
				if seen[e.EventID] > 1 {
					dups++
				}
			}
			if index && dups > 0 {
				t.Fatalf("%d events written twice after the crash", dups)
			}
			if !index && dups == 0 {
				t.Fatalf("without the index no duplicate appeared: this test cannot catch the bug it is for")
			}
		})
	}
}

// TestNoPositionIsPermanent: a delivery without a bus position cannot be
// named in a file, so it is refused for good (dead-lettered) instead of
// being acknowledged on a promise the lake cannot keep after a crash.
func TestNoPositionIsPermanent(t *testing.T) {
	l := newLake(t, Config{})
	e := genEvents(1, []string{"unpod"}, 1, base, 8)[0]
	if err := l.Handle(context.Background(), consumers.Delivery{Event: e}); !consumers.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
	if files := readLake(t, l.cfg.Dir); len(files) != 0 {
		t.Fatalf("%d files written for an event without a position", len(files))
	}
}

// TestRetryTopicHasFilesOfItsOwn: offsets of the retry topic are its own,
// so its events go to files of their own, and an offset of the retry topic
// is never taken for the same offset of the calls topic.
func TestRetryTopicHasFilesOfItsOwn(t *testing.T) {
	l := newLake(t, Config{IdleClose: 50 * time.Millisecond})
	events := genEvents(2, []string{"unpod"}, 1, base, 9)
	sameHour(events)
	calls := delivery(events[0], 0, 7)
	retried := delivery(events[1], 0, 7)
	retried.Position.Topic = l.retry
	handleAll(t, context.Background(), l, []consumers.Delivery{calls, retried})
	files := readLake(t, l.cfg.Dir)
	checkExactlyOnce(t, files, events)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.rel))
	}
	slices.Sort(names)
	if len(names) != 2 || names[0] != "part-0-0000000007.parquet" || names[1] != "part-r0-0000000007.parquet" {
		t.Fatalf("files %v, want one per source", names)
	}
}

// TestFactory: the registered factory builds a lake plug-in of that name.
func TestFactory(t *testing.T) {
	f := Factory(Config{Dir: t.TempDir()})
	p, err := f.New(consumers.Deps{})
	if err != nil || f.Name != "lake" || p.Name() != "lake" {
		t.Fatalf("Factory: %v %v", f.Name, err)
	}
	_ = p.(consumers.Closer).Close()
}

// TestStaleTempFilesRemoved checks a crash's leftovers go away at start and
// are never read as data.
func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, tableDir, "org=unpod", "dt=2026-02-07")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(sub, ".part-0-0000000000.parquet.123.tmp")
	fresh := filepath.Join(sub, ".part-0-0000000009.parquet.456.tmp")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	_ = os.Chtimes(old, past, past)
	newLake(t, Config{Dir: dir})
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temporary file (maybe another writer's) removed: %v", err)
	}
}

// TestParquetSchema pins the column types the data team relies on.
func TestParquetSchema(t *testing.T) {
	s := parquet.SchemaOf(Row{}).String()
	for _, want := range []string{
		"optional binary call_id (STRING)",
		"int64 creation_time (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"optional int64 start_time (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"int32 call_duration_seconds",
		"binary raw (STRING)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("schema lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, " org ") || strings.Contains(s, " dt ") {
		t.Errorf("schema has a partition column; it belongs to the path:\n%s", s)
	}
}

// TestWriteFailureRedelivered makes a directory impossible to create: the
// file fails, its handlers return an error (so the runtime retries rather
// than acknowledges), and once the disk is fixed the retry writes each
// event once.
func TestWriteFailureRedelivered(t *testing.T) {
	l := newLake(t, Config{})
	events := genEvents(10, []string{"unpod"}, 1, base, 9)
	sameHour(events)
	blocker := filepath.Join(l.cfg.Dir, tableDir, "org=unpod")
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ds := make([]consumers.Delivery, len(events))
	errs := make(chan error, len(ds))
	for i, e := range events {
		ds[i] = delivery(e, 0, int64(i))
		go func() { errs <- l.Handle(context.Background(), ds[i]) }()
	}
	waitPending(t, l, len(ds))
	l.Flush()
	for range ds {
		if err := <-errs; err == nil {
			t.Fatal("Handle acknowledged an event whose file failed to write")
		}
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	handleAll(t, context.Background(), l, ds)
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
}

// TestDamagedFileDoesNotBlock checks a file that cannot be read while
// indexing is logged and skipped instead of failing every event.
func TestDamagedFileDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, tableDir, "org=unpod", "dt=2026-02-07")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, fileName(partKey{}, 0)), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLake(t, Config{Dir: dir})
	events := genEvents(5, []string{"acme"}, 1, base, 10)
	ds := deliveriesOf(events)
	handleAll(t, context.Background(), l, ds)
	var got []schemas.CallEvent
	for _, f := range readLakeSkipping(t, dir, "org=unpod") {
		for _, r := range f.rows {
			got = append(got, schemas.CallEvent{EventID: r.EventID})
		}
	}
	if len(got) != len(events) {
		t.Fatalf("%d rows written next to a damaged file, want %d", len(got), len(events))
	}
}

// TestConfigLoads checks the config section works with pkg/config: YAML
// keys, the CALLSTREAM_LAKE_DIR variable, and every field documented.
func TestConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := config.LoadYAML("test", []byte("hour_partition: true\nmax_file_rows: 10\nidle_close: 2s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CALLSTREAM_LAKE_DIR": "/data/lake"}
	if err := config.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != "/data/lake" || !cfg.HourPartition || cfg.MaxFileRows != 10 || cfg.IdleClose != 2*time.Second || cfg.Compression != "zstd" {
		t.Fatalf("config = %+v", cfg)
	}
	err := config.Walk(&cfg, func(f config.Field) error {
		if f.Doc == "" {
			return fmt.Errorf("field %s has no doc", f.Path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPruneThenRedeliver forgets covered offsets (a tiny budget makes the
// lake prune often) and then redelivers everything: the forgotten offsets
// must be read back from disk and skipped, not written again.
func TestPruneThenRedeliver(t *testing.T) {
	l := newLake(t, Config{MaxBufferedRows: 8})
	events := genEvents(200, []string{"unpod", "acme"}, 1, base, 12)
	ds := deliveriesOf(events)
	for i := 0; i < len(ds); i += 20 {
		handleAll(t, context.Background(), l, ds[i:i+20])
	}
	l.mu.Lock()
	floor := l.parts[partKey{}].floor
	l.mu.Unlock()
	if floor <= 0 || floor == math.MaxInt64 {
		t.Fatalf("floor %d: nothing was pruned, the test proves nothing", floor)
	}
	handleAll(t, context.Background(), l, ds)
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
}
