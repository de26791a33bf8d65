package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// genEvents makes n realistic call events (no API id, so call_key is a
// digest, as with the current API) for the given orgs, with creation times
// spread over days days ending at base, about one in ten a second revision.
func genEvents(n int, orgs []string, days int, base time.Time, seed uint64) []schemas.CallEvent {
	rng := rand.New(rand.NewPCG(seed, 7))
	ns := uuid.MustParse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
	statuses := []string{schemas.StatusCompleted, schemas.StatusCompleted, schemas.StatusCompleted, schemas.StatusMissed, schemas.StatusFailed}
	reasons := map[string]string{schemas.StatusCompleted: "caller_hangup", schemas.StatusMissed: "no_answer", schemas.StatusFailed: "network_error"}
	out := make([]schemas.CallEvent, 0, n)
	var prev []schemas.CallEvent
	span := time.Duration(days) * 24 * time.Hour
	for len(out) < n {
		if len(prev) > 0 && rng.IntN(10) == 0 {
			// A later revision of an earlier call: same key, new content.
			i := rng.IntN(len(prev))
			prev[i].Revision++
			e := prev[i]
			e.CallStatus = schemas.StatusCompleted
			e.EndReason = "customer-ended-call"
			e.ObservedAt = e.ObservedAt.Add(5 * time.Minute)
			e.EventID = uuid.NewSHA1(ns, []byte(e.Org+e.CallKey+strconv.Itoa(e.Revision))).String()
			out = append(out, e)
			continue
		}
		org := orgs[rng.IntN(len(orgs))]
		// Creation times advance with the stream, a minute of jitter, as
		// the producer reads time windows in order.
		at := base.Add(-span + time.Duration(int64(span)/int64(n)*int64(len(out))))
		created := at.Add(time.Duration(rng.Int64N(int64(time.Minute)))).Truncate(time.Millisecond)
		src := fmt.Sprintf("+9198%08d", rng.IntN(5000))
		dst := fmt.Sprintf("+9180%08d", rng.IntN(20))
		typ := schemas.CallInbound
		if rng.IntN(3) == 0 {
			typ = schemas.CallOutbound
			src, dst = dst, src
		}
		status := statuses[rng.IntN(len(statuses))]
		e := schemas.CallEvent{
			Org: org, Revision: 1, SourceNumber: src, DestinationNumber: dst, CallType: typ,
			CallStatus: status, CreationTime: created.UTC(), EndReason: reasons[status],
			ObservedAt: created.Add(2 * time.Minute).UTC(),
		}
		raw := map[string]any{
			"source_number": src, "destination_number": dst, "call_type": typ, "call_status": status,
			"creation_time": created.UTC().Format(time.RFC3339Nano), "start_time": nil, "end_time": nil,
			"call_duration": 0, "end_reason": e.EndReason,
		}
		if status == schemas.StatusCompleted {
			st := created.Add(time.Duration(rng.IntN(20)) * time.Second).UTC()
			et := st.Add(time.Duration(rng.IntN(600)) * time.Second).UTC()
			e.StartTime, e.EndTime = &st, &et
			e.CallDurationSeconds = int64(et.Sub(st) / time.Second)
			raw["start_time"], raw["end_time"], raw["call_duration"] = st.Format(time.RFC3339), et.Format(time.RFC3339), e.CallDurationSeconds
		}
		sum := sha256.Sum256([]byte(org + "|" + src + "|" + dst + "|" + typ + "|" + created.UTC().Format(time.RFC3339Nano) + strconv.Itoa(len(out))))
		e.CallKey = hex.EncodeToString(sum[:16])
		e.EventID = uuid.NewSHA1(ns, []byte(e.Org+e.CallKey+"1")).String()
		e.Raw, _ = json.Marshal(raw)
		out = append(out, e)
		prev = append(prev, e)
	}
	return out
}

// sameHour puts every event's creation time within one hour, so only the
// rotation under test splits files.
func sameHour(events []schemas.CallEvent) {
	for i := range events {
		events[i].CreationTime = time.Date(2026, 2, 7, 5, 0, i%60, 0, time.UTC)
	}
}

// delivery wraps an event as the runtime hands it over from Kafka.
func delivery(e schemas.CallEvent, partition int, offset int64) consumers.Delivery {
	msg := message.NewMessage(e.EventID, nil)
	pos := schemas.Position{Topic: "test.calls", Partition: int32(partition), Offset: offset}
	schemas.SetPosition(msg.Metadata, pos)
	return consumers.NewDelivery(e, msg)
}

// deliveriesOf wraps events as deliveries of partition 0 at offsets 0, 1, ...
func deliveriesOf(events []schemas.CallEvent) []consumers.Delivery {
	ds := make([]consumers.Delivery, len(events))
	for i, e := range events {
		ds[i] = delivery(e, 0, int64(i))
	}
	return ds
}

// handleAll calls Handle for every delivery at once, as the router does,
// flushing the open files until every call returned, and fails the test on
// any error.
func handleAll(t *testing.T, ctx context.Context, l *Lake, ds []consumers.Delivery) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(ds))
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Handle(ctx, d); err != nil {
				errs <- err
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	deadline := time.After(30 * time.Second)
	for waiting := true; waiting; {
		l.Flush()
		select {
		case <-done:
			waiting = false
		case <-deadline:
			t.Fatal("handlers still waiting after 30s")
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(errs)
	for err := range errs {
		t.Fatalf("Handle: %v", err)
	}
}

// lakeFile is one renamed file read back.
type lakeFile struct {
	rel  string // relative to <root>/call_logs
	rows []Row
}

// readLake reads every Parquet file under root back with parquet-go and
// fails on temporary files left in place of finished ones.
func readLake(t testing.TB, root string) []lakeFile {
	t.Helper()
	var files []lakeFile
	base := filepath.Join(root, tableDir)
	err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == base {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		rows, err := parquet.ReadFile[Row](path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		rel, _ := filepath.Rel(base, path)
		files = append(files, lakeFile{rel: rel, rows: rows})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files
}

// countEvents counts each event_id over all files.
func countEvents(files []lakeFile) map[string]int {
	seen := make(map[string]int)
	for _, f := range files {
		for _, r := range f.rows {
			seen[r.EventID]++
		}
	}
	return seen
}

// checkExactlyOnce fails unless every event is in the lake exactly once.
func checkExactlyOnce(t testing.TB, files []lakeFile, events []schemas.CallEvent) {
	t.Helper()
	seen := countEvents(files)
	missing, dup := 0, 0
	for _, e := range events {
		switch n := seen[e.EventID]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	total := 0
	for _, n := range seen {
		total += n
	}
	if missing > 0 || dup > 0 || total != len(events) {
		t.Fatalf("%d events: %d missing, %d duplicated, %d rows in %d files", len(events), missing, dup, total, len(files))
	}
}

// readLakeSkipping is readLake without the directories under skip.
func readLakeSkipping(t testing.TB, root, skip string) []lakeFile {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(root, tableDir)
	err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, path)
		if d.IsDir() && rel == skip {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		target := filepath.Join(dir, tableDir, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.Link(path, target)
	})
	if err != nil {
		t.Fatal(err)
	}
	return readLake(t, dir)
}
