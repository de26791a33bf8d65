package lake

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/consumers"
)

// TestTuningUsesTheBudget: the bus may hand over twice as many messages as
// the open files can hold (the others wait in files being written), in
// batches of at most 1,000 handled concurrently, one batch left as
// headroom.
func TestTuningUsesTheBudget(t *testing.T) {
	for _, budget := range []int{1, 20, 1000, 1999, 2000, 2500, 50_000} {
		l := newLake(t, Config{MaxBufferedRows: budget})
		got := l.Tuning()
		size := min(1000, budget)
		if got.MaxInFlight != 2*budget || got.BatchSize != size {
			t.Errorf("budget %d: tuning %+v, want MaxInFlight %d, BatchSize %d", budget, got, 2*budget, size)
		}
		want := max(1, 2*budget/size-1)
		if got.Concurrency != want {
			t.Errorf("budget %d: Concurrency %d, want %d (batches that fit, less one)", budget, got.Concurrency, want)
		}
	}
}

// TestPressureWritesTheBiggestFiles: when half the in-flight budget sits
// in open files, the biggest are written until at most a quarter remains,
// and the small ones stay open to grow.
func TestPressureWritesTheBiggestFiles(t *testing.T) {
	// Budget 40: pressure at 20 open rows, relieved down to 10. Files of
	// 10, 5, 3 and 2 rows: writing the 10 leaves exactly 10, so only it goes.
	l := newLake(t, Config{MaxBufferedRows: 40, MaxFileAge: time.Hour, IdleClose: time.Hour})
	sizes := map[string]int{"a": 10, "b": 5, "c": 3, "d": 2}
	var orgs []string
	for org, n := range sizes {
		for range n {
			orgs = append(orgs, org)
		}
	}
	// The biggest org's last row comes last, so no file is written before
	// the twentieth row.
	slices.SortFunc(orgs, func(x, y string) int { return strings.Compare(y, x) })
	events := genEvents(len(orgs), []string{"x"}, 1, base, 21)
	sameHour(events)
	var wg sync.WaitGroup
	for i := range events {
		events[i].Org = orgs[i]
		d := delivery(events[i], 0, int64(i))
		wg.Add(1)
		go func() { defer wg.Done(); _ = l.Handle(context.Background(), d) }()
		waitPending(t, l, i+1)
		if i < len(events)-1 {
			if n := writtenOrWriting(l); n != 0 {
				t.Fatalf("after %d of 20 rows, %d files written: pressure came before half the budget", i+1, n)
			}
		}
	}
	l.waitWriting()
	var written []string
	for _, f := range readLake(t, l.cfg.Dir) {
		written = append(written, strings.TrimPrefix(filepath.Dir(filepath.Dir(f.rel)), "org="))
	}
	if !slices.Equal(written, []string{"a"}) {
		t.Fatalf("pressure wrote the files of %v, want only the biggest (a)", written)
	}
	l.Flush()
	wg.Wait()
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
}

// writtenOrWriting counts files handed to a writer or renamed.
func writtenOrWriting(l *Lake) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.writing)
	for _, p := range l.parts {
		n += len(p.files)
	}
	return n
}

// TestCloseExpired drives the clock by hand: a file is written once it was
// idle for idle_close, or open for max_file_age however busy, and not a
// moment before.
func TestCloseExpired(t *testing.T) {
	const idle, age = 10 * time.Second, time.Minute
	t0 := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		lastWrite time.Duration // after t0, when the file was opened
		at        time.Duration // when Run looks
		closed    bool
	}{
		{"idle just short", 0, idle - time.Nanosecond, false},
		{"idle exactly", 0, idle, true},
		{"busy, young", 55 * time.Second, 59 * time.Second, false},
		{"busy, exactly max age", 55 * time.Second, age, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLake(t, Config{IdleClose: idle, MaxFileAge: age})
			var mu sync.Mutex
			now := t0
			l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			set := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }
			events := genEvents(2, []string{"unpod"}, 1, base, 22)
			sameHour(events)
			done := make(chan error, 2)
			for i, e := range events {
				if i == 1 {
					set(tt.lastWrite)
				}
				d := delivery(e, 0, int64(i))
				go func() { done <- l.Handle(context.Background(), d) }()
				waitPending(t, l, i+1)
			}
			set(tt.at)
			l.closeExpired()
			l.waitWriting()
			if got := len(readLake(t, l.cfg.Dir)) == 1; got != tt.closed {
				t.Fatalf("file written = %v, want %v", got, tt.closed)
			}
			l.Flush()
			for range events {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFooterNamesTheSource: each file's footer says which topic, partition
// and offsets it holds, so a file can be traced to the bus without reading
// its rows.
func TestFooterNamesTheSource(t *testing.T) {
	l := newLake(t, Config{})
	events := genEvents(3, []string{"unpod"}, 1, base, 23)
	sameHour(events)
	var ds []consumers.Delivery
	for i, e := range events {
		ds = append(ds, delivery(e, 4, int64(70+i)))
	}
	handleAll(t, context.Background(), l, ds)
	files := readLake(t, l.cfg.Dir)
	if len(files) != 1 {
		t.Fatalf("%d files, want 1", len(files))
	}
	want := map[string]string{
		metaSchema: "call_event.v1", metaTopic: "test.calls", metaPartition: "4", metaFirst: "70", metaLast: "72",
	}
	pf := openParquet(t, filepath.Join(l.cfg.Dir, tableDir, files[0].rel))
	for k, v := range want {
		if got, _ := pf.Lookup(k); got != v {
			t.Errorf("footer %s = %q, want %q", k, got, v)
		}
	}
}

// TestFlushMetrics: a written file counts its rows and bytes, a failed one
// counts as a flush error and nothing else.
func TestFlushMetrics(t *testing.T) {
	l := newLake(t, Config{})
	events := genEvents(4, []string{"unpod", "acme"}, 1, base, 24)
	sameHour(events)
	// A file where acme's directory goes makes acme's file fail.
	if err := os.MkdirAll(filepath.Join(l.cfg.Dir, tableDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.cfg.Dir, tableDir, "org=acme"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var ds []consumers.Delivery
	wantRows := 0
	for i, e := range events {
		ds = append(ds, delivery(e, 0, int64(i)))
		if e.Org == "unpod" {
			wantRows++
		}
	}
	errs := make(chan error, len(ds))
	for _, d := range ds {
		go func() { errs <- l.Handle(context.Background(), d) }()
	}
	waitPending(t, l, len(ds))
	l.Flush()
	for range ds {
		<-errs
	}
	files := readLake(t, l.cfg.Dir)
	if len(files) != 1 || wantRows == 0 || wantRows == len(ds) {
		t.Fatalf("%d files, %d of %d rows for unpod: the test needs one good and one failing file", len(files), wantRows, len(ds))
	}
	if got := testutil.ToFloat64(l.metrics.files); got != 1 {
		t.Errorf("files_written_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.metrics.flushErrors); got != 1 {
		t.Errorf("flush_errors_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.metrics.rows); got != float64(wantRows) {
		t.Errorf("rows_written_total %v, want %d", got, wantRows)
	}
	st, err := os.Stat(filepath.Join(l.cfg.Dir, tableDir, files[0].rel))
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(l.metrics.bytes); got != float64(st.Size()) {
		t.Errorf("bytes_written_total %v, want the file's size", got)
	}
}
