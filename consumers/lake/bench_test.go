package lake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// TestBenchLake prints the lake's throughput (events/s into renamed Parquet
// files) three ways: in-process alone (Handle called as the router does),
// from the real broker through the real consumer runtime (kafkabus,
// router, decode and validation), and from the real broker through the
// minimal driver of the crash test; with events per CPU-second, which the
// shared machine's load does not skew, and the bytes per event on disk with
// and without the raw column (per column too). Run with CALLSTREAM_BENCH=1
// and KAFKA_BROKERS; CALLSTREAM_LAKE_BENCH_EVENTS sets the event count
// (default 300000).
func TestBenchLake(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("benchmark: set CALLSTREAM_BENCH=1")
	}
	n := 300_000
	if v := os.Getenv("CALLSTREAM_LAKE_BENCH_EVENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	const partitions = 6
	orgs := []string{"unpod", "acme", "globex", "initech"}
	events := genEvents(n, orgs, 1, base, 31)

	t.Run("in-process", func(t *testing.T) {
		l := newLake(t, Config{IdleClose: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = l.Run(ctx) }()
		sem := make(chan struct{}, l.Tuning().MaxInFlight)
		var wg sync.WaitGroup
		start, cpu0 := time.Now(), testenv.CPUTime()
		for i := range events {
			d := delivery(events[i], i%partitions, int64(i/partitions))
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := l.Handle(ctx, d); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		report(t, "in-process", l.cfg.Dir, n, el, testenv.CPUTime()-cpu0)
	})

	brokers := testenv.Kafka(t)
	topics := consumers.NewTopics(testenv.Prefix(t))
	topic := topics.Calls
	createTopic(t, brokers, topic, partitions)
	pstart := time.Now()
	produce(t, brokers, topic, events)
	t.Logf("produced %d events in %s (%.0f events/s, not part of the lake figures)", n, time.Since(pstart).Round(time.Millisecond), float64(n)/time.Since(pstart).Seconds())

	t.Run("runtime", func(t *testing.T) { runtimeBench(t, brokers, topics, n) })

	t.Run("kafka", func(t *testing.T) {
		l := newLake(t, Config{IdleClose: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		go func() { _ = l.Run(ctx) }()
		dr := &driver{brokers: brokers, topic: topic, group: topic + ".lake", partitions: partitions,
			maxInFlight: l.Tuning().MaxInFlight, stopAfter: n}
		start, cpu0 := time.Now(), testenv.CPUTime()
		got, err := dr.run(ctx, l)
		el, cpu := time.Since(start), testenv.CPUTime()-cpu0
		if err != nil || got != n {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
		report(t, "kafka", l.cfg.Dir, n, el, cpu)
	})
}

// runtimeBench measures the lake inside the real consumer runtime on Kafka
// (kafkabus in pipelined mode, router, decode and validation middlewares):
// events/s from the broker into renamed files.
func runtimeBench(t *testing.T, brokers []string, topics consumers.Topics, n int) {
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	if err := kafkabus.EnsureTopics(context.Background(), kcfg, topics.Outputs(nil)...); err != nil {
		t.Fatal(err)
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = kcfg
	pub, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cfg := consumers.DefaultConfig()
	cfg.GroupPrefix = "bench-" + topics.Prefix
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	rt, err := consumers.New(cfg, consumers.RuntimeDeps{
		Registerer: reg, Topics: topics, Publisher: pub,
		Plugins:   []consumers.Factory{Factory(Config{Dir: dir, IdleClose: time.Second})},
		Subscribe: testenv.KafkaSubscribers(kcfg, reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start, cpu0 := time.Now(), testenv.CPUTime()
	go func() { done <- rt.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for written(t, reg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events written after 5 minutes", written(t, reg), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	el, cpu := time.Since(start), testenv.CPUTime()-cpu0
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	report(t, "runtime", dir, n, el, cpu)
	plain, _ := testenv.PlainConsume(t, brokers, topics.Calls, "plain-"+topics.Calls, n)
	fmt.Printf("BENCH lake runtime baseline: plain kafka-go fetch+commit of the same topic %.0f events/s; the runtime at %.0f%%\n",
		plain, 100*float64(n)/el.Seconds()/plain)
}

// written reads callstream_lake_rows_written_total from reg.
func written(t *testing.T, reg *prometheus.Registry) int {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "callstream_lake_rows_written_total" {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// report prints events/s and bytes per event, total and without raw.
func report(t *testing.T, name, dir string, n int, el, cpu time.Duration) {
	t.Helper()
	var total, raw int64
	files := 0
	perColumn := map[string]int64{}
	err := filepath.WalkDir(filepath.Join(dir, tableDir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, _ := f.Stat()
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			return err
		}
		files++
		total += st.Size()
		col, _ := pf.Schema().Lookup("raw")
		for _, rg := range pf.Metadata().RowGroups {
			raw += rg.Columns[col.ColumnIndex].MetaData.TotalCompressedSize
			for _, c := range rg.Columns {
				perColumn[strings.Join(c.MetaData.PathInSchema, ".")] += c.MetaData.TotalCompressedSize
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BENCH lake %-10s %8d events in %7s: %9.0f events/s (%.0f events per CPU-second, load %s); %d files; %.1f bytes/event on disk, %.1f without raw\n",
		name, n, el.Round(time.Millisecond), float64(n)/el.Seconds(), float64(n)/cpu.Seconds(), testenv.LoadAvg(), files, float64(total)/float64(n), float64(total-raw)/float64(n))
	cols := make([]string, 0, len(perColumn))
	var inColumns int64
	for c, b := range perColumn {
		cols = append(cols, fmt.Sprintf("%s %.1f", c, float64(b)/float64(n)))
		inColumns += b
	}
	sort.Strings(cols)
	fmt.Printf("BENCH lake %-10s bytes/event by column: %s; footers and headers %.1f\n", name, strings.Join(cols, ", "), float64(total-inColumns)/float64(n))
}

// BenchmarkHandle measures Handle alone, in-process, with the default
// configuration; b.N events spread over 6 partitions.
func BenchmarkHandle(b *testing.B) {
	events := genEvents(min(b.N, 200_000), []string{"unpod", "acme"}, 1, base, 41)
	l, err := New(Config{Dir: b.TempDir(), IdleClose: 100 * time.Millisecond}, consumers.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	sem := make(chan struct{}, l.Tuning().MaxInFlight)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range b.N {
		d := delivery(events[i%len(events)], i%6, int64(i/6))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = l.Handle(ctx, d)
		}()
	}
	wg.Wait()
}
