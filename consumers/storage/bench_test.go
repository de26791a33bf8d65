package storage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// benchEvents returns n events over n*4/5 calls: most calls once, a fifth
// with a second revision, in delivery order (revision 2 after revision 1).
func benchEvents(n int) []schemas.CallEvent {
	calls := n * 4 / 5
	out := make([]schemas.CallEvent, 0, n)
	// Calls are created 10 ms apart, as a busy org's would be.
	at := func(ev schemas.CallEvent, i int) schemas.CallEvent {
		ev.CreationTime = ev.CreationTime.Add(time.Duration(i) * 10 * time.Millisecond)
		return ev
	}
	for i := range calls {
		out = append(out, at(callEvent(fmt.Sprintf("bench-%08d", i), 1), i))
		if len(out) < n && i%4 == 3 {
			out = append(out, at(callEvent(fmt.Sprintf("bench-%08d", i-3), 2), i-3))
		}
	}
	for len(out) < n {
		out = append(out, callEvent(fmt.Sprintf("bench-x-%08d", len(out)), 1))
	}
	return out[:n]
}

// TestBenchHandleBatch prints the storage consumer's write throughput with
// HandleBatch called directly (no broker), into SQLite and into PostgreSQL
// for a few batch sizes: events/s, CPU time per event in this process and,
// for PostgreSQL, in the server's processes serving it (same machine), and
// the p50/p99 batch latency. In the same run, on the same events, it prints
// the baselines: plain inserts of the same rows, without upsert, into a
// table of the same columns and indexes (the ceiling: HandleBatch/this is
// what the upsert costs), and for PostgreSQL the staged upsert filled by
// pgx.CopyFrom and the unnest INSERT this package used before COPY.
//
//	CALLSTREAM_BENCH=1 CALLSTREAM_TEST_POSTGRES_DSN=... go test -run TestBenchHandleBatch -v ./consumers/storage
func TestBenchHandleBatch(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the benchmark")
	}
	const n = 100_000
	evs := benchEvents(n)
	ds := make([]consumers.Delivery, len(evs))
	for i, ev := range evs {
		ds[i] = consumers.Delivery{Event: ev}
	}
	type variant struct {
		name string
		// writer returns how to write a batch into s.
		writer func(t testing.TB, s *Store) batchWriter
	}
	handleBatch := variant{"HandleBatch", func(_ testing.TB, s *Store) batchWriter { return s.HandleBatch }}
	variants := map[string][]variant{
		DialectSQLite: {
			handleBatch,
			{"plain INSERT 1 row/stmt (baseline)", func(t testing.TB, s *Store) batchWriter { return sqlitePlainInsert(t, s, 1) }},
			{"plain INSERT 256 rows/stmt (baseline)", func(t testing.TB, s *Store) batchWriter { return sqlitePlainInsert(t, s, 256) }},
		},
		DialectPostgres: {
			handleBatch,
			{"plain CopyFrom (baseline)", pgPlainCopy},
			{"staged upsert via pgx.CopyFrom", pgxCopyUpsert},
			{"unnest INSERT (before COPY)", pgUnnestUpsert},
		},
	}
	for _, d := range dialects() {
		for _, size := range []int{500, 2000, 5000} {
			var base float64
			for _, v := range variants[d.name] {
				t.Run(fmt.Sprintf("%s/batch=%d/%s", d.name, size, v.name), func(t *testing.T) {
					dsn := d.dsn(t)
					app := fmt.Sprintf("storage-bench-%d", time.Now().UnixNano())
					if d.name == DialectPostgres {
						dsn += "&application_name=" + app
					}
					s := openStore(t, dsn)
					write := v.writer(t, s)
					var lat []time.Duration
					server0 := serverCPU(t, s, app)
					cpu0 := testenv.CPUTime()
					start := time.Now()
					for i := 0; i < len(ds); i += size {
						b := time.Now()
						if err := write(context.Background(), ds[i:min(i+size, len(ds))]); err != nil {
							t.Fatalf("%s: %v", v.name, err)
						}
						lat = append(lat, time.Since(b))
					}
					el, cpu := time.Since(start), testenv.CPUTime()-cpu0
					server := serverCPU(t, s, app) - server0
					p50, p99 := percentiles(lat)
					rate := float64(n) / el.Seconds()
					ratio := ""
					if v.name == handleBatch.name {
						base = rate
					} else if base > 0 {
						ratio = fmt.Sprintf("  HandleBatch/this %.2f", base/rate)
					}
					serverFigure := ""
					if server > 0 {
						serverFigure = fmt.Sprintf("  server %.1f CPU-µs/event", float64(server.Microseconds())/n)
					}
					fmt.Printf("BENCH storage %-8s batch=%-5d %-38s events=%d  %8.0f events/s  %5.1f CPU-µs/event in this process%s  batch p50=%v p99=%v%s\n",
						d.name, size, v.name, n, rate, float64(cpu.Microseconds())/n, serverFigure,
						p50.Round(time.Microsecond), p99.Round(time.Microsecond), ratio)
				})
			}
		}
	}
}

// serverCPU is the CPU time the PostgreSQL server processes of application
// app have used, read from /proc when the server runs on this machine (as
// the test server does); 0 for SQLite or when it cannot be read. The
// server's work competes with the consumer's for the same cores.
func serverCPU(t testing.TB, s *Store, app string) time.Duration {
	db, ok := s.db.(*postgresDB)
	if !ok {
		return 0
	}
	rows, err := db.pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		t.Fatalf("list server processes: %v", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatalf("list server processes: %v", err)
	}
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0 // another machine's server
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th, in clock ticks.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	// Linux reports these in USER_HZ, 100 per second on every supported
	// architecture.
	return time.Duration(ticks) * 10 * time.Millisecond
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// TestBenchFromBroker prints the storage consumer's throughput end to end:
// events already on the calls topic (4 partitions) of the real broker, read
// by the consumer runtime and kafkabus Subscriber, written by HandleBatch,
// offsets committed. The clock starts when the first row is stored, so
// group join and migrations are not counted.
//
//	CALLSTREAM_BENCH=1 KAFKA_BROKERS=127.0.0.1:9092 CALLSTREAM_TEST_POSTGRES_DSN=... go test -run TestBenchFromBroker -v ./consumers/storage
func TestBenchFromBroker(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the benchmark")
	}
	brokers := testenv.Kafka(t)
	const n = 100_000
	evs := benchEvents(n)
	calls := map[string]bool{}
	for _, ev := range evs {
		calls[ev.CallKey] = true
	}
	for _, d := range dialects() {
		for _, size := range []int{2000} {
			t.Run(fmt.Sprintf("%s/batch=%d", d.name, size), func(t *testing.T) {
				dsn := d.dsn(t)
				prefix := testenv.Prefix(t)
				topics := createTopics(t, brokers, prefix, 4)
				publish(t, brokers, topics.Calls, evs)
				plain, _ := testenv.PlainConsume(t, brokers, topics.Calls, "plain-"+topics.Calls, n)
				reg := prometheus.NewRegistry()
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				cpu0 := testenv.CPUTime()
				go func() {
					done <- runConsumer(ctx, brokers, prefix, dsn, size, slog.New(slog.DiscardHandler), reg)
				}()
				// Progress from the metrics, not the database: polling the
				// table would cost the consumer CPU.
				handled := func() float64 { _, sum := counterSum(t, reg, "callstream_storage_events_total"); return sum }
				waitMetric(t, 2*time.Minute, "first batch", func() bool { return handled() > 0 })
				start := time.Now()
				waitMetric(t, 5*time.Minute, "every event handled", func() bool { return handled() >= n })
				el, cpu := time.Since(start), testenv.CPUTime()-cpu0
				cancel()
				if err := <-done; err != nil {
					t.Errorf("consumer: %v", err)
				}
				batches, events := histogramCount(t, reg, "callstream_consumer_batch_size")
				fmt.Printf("BENCH storage %-8s from broker batch=%-5d events=%d  %8.0f events/s  %8.0f events/CPU-s of this process  mean batch %.0f events | plain kafka-go fetch+commit %.0f events/s, ratio %.0f%%\n",
					d.name, size, n, float64(n)/el.Seconds(), float64(n)/cpu.Seconds(), events/max(batches, 1), plain, 100*float64(n)/el.Seconds()/plain)
			})
		}
	}
}

// histogramCount returns the observation count and sum of a histogram.
func histogramCount(t testing.TB, reg *prometheus.Registry, name string) (count, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			count += float64(m.GetHistogram().GetSampleCount())
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return count, sum
}

// counterSum returns the number of series and the sum of a counter family.
func counterSum(t testing.TB, reg *prometheus.Registry, name string) (series int, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			sum += m.GetCounter().GetValue()
		}
	}
	return series, sum
}

func waitMetric(t testing.TB, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s not reached", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkHandleBatch measures one batch of 2,000 new calls per iteration
// into each dialect and reports events/s, beside the baselines of
// TestBenchHandleBatch. With -benchmem, allocs/op divided by 2,000 is the
// allocations per event.
//
//	go test -run '^$' -bench BenchmarkHandleBatch -benchmem ./consumers/storage
func BenchmarkHandleBatch(b *testing.B) {
	const size = 2000
	variants := map[string][]struct {
		name   string
		writer func(t testing.TB, s *Store) batchWriter
	}{
		DialectSQLite: {
			{"HandleBatch", func(_ testing.TB, s *Store) batchWriter { return s.HandleBatch }},
			{"plain-insert-1", func(t testing.TB, s *Store) batchWriter { return sqlitePlainInsert(t, s, 1) }},
			{"plain-insert-256", func(t testing.TB, s *Store) batchWriter { return sqlitePlainInsert(t, s, 256) }},
		},
		DialectPostgres: {
			{"HandleBatch", func(_ testing.TB, s *Store) batchWriter { return s.HandleBatch }},
			{"plain-copy", pgPlainCopy},
			{"pgx-copy-upsert", pgxCopyUpsert},
			{"unnest", pgUnnestUpsert},
		},
	}
	for _, d := range dialects() {
		for _, v := range variants[d.name] {
			b.Run(d.name+"/"+v.name, func(b *testing.B) {
				s := openStore(b, d.dsn(b))
				write := v.writer(b, s)
				batches := make([][]consumers.Delivery, 0, b.N)
				for i := range b.N {
					evs := make([]schemas.CallEvent, size)
					for j := range evs {
						evs[j] = callEvent(fmt.Sprintf("bb-%06d-%04d", i, j), 1)
					}
					batches = append(batches, deliveries(evs...))
				}
				b.ResetTimer()
				cpu0 := testenv.CPUTime()
				for i := range b.N {
					if err := write(context.Background(), batches[i]); err != nil {
						b.Fatal(err)
					}
				}
				cpu := testenv.CPUTime() - cpu0
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
				// On a shared machine CPU time per event says more than wall time.
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*size), "CPU-µs/event")
			})
		}
	}
}
