package sqlitebus_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/sqlitebus"
)

// Environment of the process TestCrash starts (this test binary again).
const (
	crashChildEnv = "SQLITEBUS_CRASH_CHILD"
	crashPathEnv  = "SQLITEBUS_CRASH_PATH"
	crashRunEnv   = "SQLITEBUS_CRASH_RUN"
	crashModeEnv  = "SQLITEBUS_CRASH_MODE" // work or drain
)

// The crash child's consumer groups: one acking single messages out of
// order, one acking batches out of order.
var crashGroups = []string{"single", "batch"}

// lineWriter writes whole lines to stdout, one write each, so a SIGKILL
// never leaves half a line and lines of goroutines never interleave. A line
// is in the pipe (the parent's ground truth) once Write returns.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = fmt.Fprintf(l.w, format+"\n", args...)
}

// TestCrashChild is the process of TestCrash: it publishes batches and
// consumes them in two groups, reporting on stdout "P run from to" after a
// Publish of messages run-from..run-to returned, and "A group offset"
// before it acks a message, until it is killed (work) or until both groups
// have committed everything (drain).
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("the process of TestCrash")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	out := &lineWriter{w: os.Stdout}
	b, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: os.Getenv(crashPathEnv), RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	run := os.Getenv(crashRunEnv)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var mu sync.Mutex // guards rng
	shuffle := func(ms []*message.Message) {
		mu.Lock()
		rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		mu.Unlock()
	}
	ack := func(group string, ms []*message.Message) {
		for _, m := range ms {
			out.printf("A %s %d", group, offsetOf(t, m))
			m.Ack()
		}
	}

	single, err := b.Subscriber(sqlitebus.SubscriberConfig{ConsumerGroup: "single", MaxInFlight: 32})
	if err != nil {
		t.Fatal(err)
	}
	ch1, err := single.Subscribe(ctx, "calls")
	if err != nil {
		t.Fatal(err)
	}
	batched, err := b.Subscriber(sqlitebus.SubscriberConfig{ConsumerGroup: "batch", MaxInFlight: 100})
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := batched.SubscribeBatches(ctx, "calls", 50, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	// Acks come out of order, and now and then one message is held for a
	// while as later ones are acked (a slow item): a commit that passed it
	// would show at a kill.
	slow := func(group string, m *message.Message, held time.Duration) {
		time.AfterFunc(held, func() { ack(group, []*message.Message{m}) })
	}
	go func() { // up to 32 in flight, each acked after a random delay
		defer wg.Done()
		for m := range ch1 {
			mu.Lock()
			d := time.Duration(rng.IntN(4000)) * time.Microsecond
			mu.Unlock()
			if offsetOf(t, m)%64 == 0 {
				d = 300 * time.Millisecond
			}
			slow("single", m, d)
		}
	}()
	go func() { // batches acked in random order, in two halves
		defer wg.Done()
		for b := range ch2 {
			batch := b.Messages(ctx)
			shuffle(batch)
			var rest []*message.Message
			for _, m := range batch {
				if offsetOf(t, m)%97 == 0 {
					slow("batch", m, 200*time.Millisecond)
					continue
				}
				rest = append(rest, m)
			}
			half := len(rest) / 2
			ack("batch", rest[:half])
			time.Sleep(3 * time.Millisecond) // a sink's write
			ack("batch", rest[half:])
		}
	}()
	out.printf("ready")

	if os.Getenv(crashModeEnv) == "drain" {
		deadline := time.Now().Add(2 * time.Minute)
		for ctx.Err() == nil {
			if time.Now().After(deadline) {
				t.Fatal("the groups did not commit the end within 2 minutes")
			}
			done := true
			for _, g := range crashGroups {
				lag, err := b.Lag(ctx, "calls", g)
				if err != nil {
					t.Fatal(err)
				}
				done = done && lag == 0
			}
			if done {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		out.printf("drained")
		return
	}
	pub := b.Publisher()
	for seq := 0; ctx.Err() == nil; {
		mu.Lock()
		n := 1 + rng.IntN(50)
		mu.Unlock()
		msgs := make([]*message.Message, n)
		for i := range msgs {
			id := fmt.Sprintf("%s-%d", run, seq+i)
			msgs[i] = message.NewMessage(id, []byte(id))
		}
		if err := pub.Publish("calls", msgs...); err != nil {
			t.Fatal(err)
		}
		out.printf("P %s %d %d", run, seq, seq+n-1)
		seq += n
		time.Sleep(time.Millisecond)
	}
}

// crashTruth is what the parent learned from the children's stdout.
type crashTruth struct {
	published map[string]bool             // ids whose Publish returned
	acked     []map[string]map[int64]bool // per run: group -> offsets acked (or about to be)
}

func (c *crashTruth) read(t *testing.T, run int, r io.Reader, ready chan<- struct{}) {
	sc := bufio.NewScanner(r)
	acked := map[string]map[int64]bool{}
	for _, g := range crashGroups {
		acked[g] = map[int64]bool{}
	}
	c.acked[run] = acked
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "ready":
			close(ready)
		case len(f) == 4 && f[0] == "P":
			from, err1 := strconv.Atoi(f[2])
			to, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil {
				t.Errorf("bad line %q", sc.Text())
				continue
			}
			for i := from; i <= to; i++ {
				c.published[fmt.Sprintf("%s-%d", f[1], i)] = true
			}
		case len(f) == 3 && f[0] == "A":
			o, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || acked[f[1]] == nil {
				t.Errorf("bad line %q", sc.Text())
				continue
			}
			acked[f[1]][o] = true
		}
	}
}

// TestCrash kills a process that publishes and consumes with SIGKILL at
// random moments, five times, then lets one drain the log, and checks the
// guarantees against what the process reported before each kill:
//   - every message whose Publish returned is in the log, exactly once;
//   - a group's committed offset never passes a message it did not ack;
//   - every message at or past the committed offset at a kill is delivered
//     (and acked) again by a later run: nothing acked-but-uncommitted is
//     lost;
//   - in the end both groups have acked every message and committed the end.
func TestCrash(t *testing.T) {
	const kills = 5
	path := t.TempDir() + "/bus.db"
	truth := &crashTruth{published: map[string]bool{}, acked: make([]map[string]map[int64]bool, kills+1)}
	type atKill struct{ committed, end map[string]int64 }
	var states []atKill
	for run := 0; run <= kills; run++ {
		mode := "work"
		if run == kills {
			mode = "drain"
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashPathEnv+"="+path,
			crashRunEnv+"="+fmt.Sprintf("r%d", run), crashModeEnv+"="+mode)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() }) // never leave a child behind
		ready := make(chan struct{})
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			truth.read(t, run, stdout, ready)
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d not ready: %s", run, stderr.String())
		}
		if mode == "drain" {
			<-readDone
			if err := cmd.Wait(); err != nil {
				t.Fatalf("drain run: %v\n%s", err, stderr.String())
			}
			break
		}
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-readDone
		_ = cmd.Wait()

		// The file as the kill left it.
		b := openBus(t, sqlitebus.Config{Path: path, RetentionInterval: -1})
		st := atKill{committed: map[string]int64{}, end: map[string]int64{}}
		end, err := b.EndOffsets(context.Background(), "calls")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range crashGroups {
			st.committed[g], st.end[g] = committed(t, b, "calls", g), end[0]
			for o := int64(0); o < st.committed[g]; o++ {
				if !truthAcked(truth, g, o, run) {
					t.Fatalf("after kill %d group %s committed %d, but offset %d was never acked", run+1, g, st.committed[g], o)
				}
			}
		}
		checkLog(t, b, truth)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
		t.Logf("kill %d: %d published, end %d, committed %v", run+1, len(truth.published), end[0], st.committed)
	}

	b := openBus(t, sqlitebus.Config{Path: path, RetentionInterval: -1})
	end, _ := b.EndOffsets(context.Background(), "calls")
	checkLog(t, b, truth)
	for _, g := range crashGroups {
		if c := committed(t, b, "calls", g); c != end[0] {
			t.Errorf("group %s committed %d after the drain, want the end %d", g, c, end[0])
		}
		for o := int64(0); o < end[0]; o++ {
			if !truthAcked(truth, g, o, kills) {
				t.Fatalf("group %s never acked offset %d of %d: lost", g, o, end[0])
			}
		}
		for k, st := range states {
			for o := st.committed[g]; o < st.end[g]; o++ {
				if !ackedAfter(truth, g, o, k) {
					t.Fatalf("offset %d (at or past group %s's commit %d at kill %d) was not delivered again", o, g, st.committed[g], k+1)
				}
			}
		}
	}
	t.Logf("after %d kills and a drain: %d messages, all acked by both groups", kills, end[0])
}

// truthAcked reports whether group acked offset o in runs 0..upto.
func truthAcked(c *crashTruth, group string, o int64, upto int) bool {
	for r := 0; r <= upto; r++ {
		if c.acked[r] != nil && c.acked[r][group][o] {
			return true
		}
	}
	return false
}

// ackedAfter reports whether group acked offset o in a run after run k.
func ackedAfter(c *crashTruth, group string, o int64, k int) bool {
	for r := k + 1; r < len(c.acked); r++ {
		if c.acked[r] != nil && c.acked[r][group][o] {
			return true
		}
	}
	return false
}

// checkLog checks that every reported publish is in the log, once.
func checkLog(t *testing.T, b *sqlitebus.Bus, c *crashTruth) {
	t.Helper()
	seen := map[string]int{}
	for _, v := range readAll(t, b, "calls", nil) {
		seen[v]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %s is in the log %d times", id, n)
		}
	}
	for id := range c.published {
		if seen[id] != 1 {
			t.Fatalf("message %s was acknowledged by Publish but is not in the log (%d in the log)", id, len(seen))
		}
	}
}
