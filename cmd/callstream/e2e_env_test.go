package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers/webhooks"
	"github.com/callstream/callstream/pkg/kafkabus"
)

// The pieces of the end-to-end test and benchmark: the callstream binary run
// as real processes, a private Kafka broker the test may stop, a PostgreSQL
// schema of its own, and a webhook receiver that checks signatures.

// e2eGoBuild builds the callstream binary (this package) into bin.
func e2eGoBuild(bin string) error {
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return fmt.Errorf("build callstream: %w\n%s", err, out)
	}
	return nil
}

// e2eRepoRoot is the module root, two levels above this package.
func e2eRepoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// e2eBroker is a single-node Kafka of the test's own, started with
// deploy/kafka/kafka.sh on free ports and a data directory in the test's
// temporary directory, so the test may stop it without disturbing the
// shared broker other packages' tests use.
type e2eBroker struct {
	script, port, data string
	Addr               string
}

// e2eStartBroker starts a private broker and stops it when the test ends.
func e2eStartBroker(t testing.TB) *e2eBroker {
	t.Helper()
	b := &e2eBroker{
		script: filepath.Join(e2eRepoRoot(t), "deploy", "kafka", "kafka.sh"),
		port:   fmt.Sprint(e2eFreePortPair(t)),
		data:   t.TempDir(),
	}
	b.Addr = "127.0.0.1:" + b.port
	t.Cleanup(func() {
		if err := b.Down(); err != nil {
			t.Errorf("stop the private broker: %v", err)
		}
	})
	if err := b.Up(); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *e2eBroker) run(verb string) error {
	cmd := exec.Command(b.script, verb)
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+b.port, "KAFKA_DATA_DIR="+b.data, "KAFKA_HEAP=512m", "KAFKA_START_TIMEOUT=120")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafka.sh %s (port %s): %w\n%s", verb, b.port, err, out)
	}
	return nil
}

// Up starts the broker (again, on the same data) and waits until it answers.
func (b *e2eBroker) Up() error { return b.run("up") }

// Down stops the broker and waits for its process to end.
func (b *e2eBroker) Down() error { return b.run("down") }

// e2eFreePortPair returns a free port p with p+1 free too: kafka.sh puts
// the controller listener on the next port.
func e2eFreePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		ln.Close()
		if err == nil {
			ln2.Close()
			return p
		}
	}
	t.Fatal("no pair of free ports found")
	return 0
}

// e2eProc is one callstream process. Every start appends to the same log
// file; an exit the test did not ask for is recorded.
type e2eProc struct {
	t    testing.TB
	name string
	bin  string
	args []string
	env  []string
	log  string

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	exitErr    error
	expected   bool // the test stopped it
	unexpected []string
	starts     int
}

func newE2EProc(t testing.TB, dir, name, bin string, env []string, args ...string) *e2eProc {
	p := &e2eProc{t: t, name: name, bin: bin, args: args, env: env, log: filepath.Join(dir, name+".log")}
	t.Cleanup(func() { p.Kill() })
	return p
}

// Start starts the process; it must not be running.
func (p *e2eProc) Start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	fmt.Fprintf(f, "=== start %d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected, p.exitErr = cmd, done, false, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.exitErr = err
		if !p.expected {
			p.unexpected = append(p.unexpected, fmt.Sprintf("start %d exited on its own: %v", p.starts, err))
		}
		close(done)
	}()
}

// Kill sends SIGKILL and waits for the process to end; no-op when stopped.
func (p *e2eProc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return
	}
	p.expected = true
	p.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

// Stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *e2eProc) Stop(timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s is not running", p.name)
	}
	p.expected = true
	p.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
	if p.exitErr != nil {
		return fmt.Errorf("%s after SIGTERM: %w", p.name, p.exitErr)
	}
	return nil
}

// WaitLog waits up to timeout for want in the log of the current start.
func (p *e2eProc) WaitLog(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.log)
		run := string(data)
		if i := strings.LastIndex(run, "=== start "); i >= 0 {
			run = run[i:]
		}
		if strings.Contains(run, want) {
			return nil
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			defer p.mu.Unlock()
			return fmt.Errorf("%s: %q not in its log within %s of its start %d", p.name, want, timeout, p.starts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Unexpected lists the exits the test did not cause.
func (p *e2eProc) Unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// e2eNoise marks log lines that a loaded machine and the injected faults
// produce by the hundred; Tail leaves them out so that the lines that
// explain a failure fit.
var e2eNoise = []string{`msg="watermill: kafka-go reader"`, `msg="unpod request failed, retrying"`}

// Tail returns the last n lines of the process's log, noise left out.
func (p *e2eProc) Tail(n int) string {
	data, _ := os.ReadFile(p.log)
	var lines []string
	skipped := 0
next:
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		for _, noise := range e2eNoise {
			if strings.Contains(l, noise) {
				skipped++
				continue next
			}
		}
		lines = append(lines, l)
	}
	return fmt.Sprintf("(%d kafka-go reader and API retry lines left out)\n", skipped) +
		strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// e2eNewSecret returns a fresh whsec_ signing secret.
func e2eNewSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// e2eReceiver is a webhook endpoint that verifies every delivery, records
// when each webhook-id was first accepted and, to exercise retries, refuses
// the first attempt of about one event in failOneIn.
type e2eReceiver struct {
	secret    string
	failOneIn uint32 // 0 never refuses
	URL       string

	mu       sync.Mutex
	first    map[string]time.Time // webhook-id -> first 2xx answer
	created  map[string]time.Time // webhook-id -> the event's creation_time
	attempts map[string]int
	accepted int // 2xx answers, redeliveries included
	refused  int // injected failures
	problems []string
}

func e2eStartReceiver(t testing.TB, secret string, failOneIn uint32) *e2eReceiver {
	t.Helper()
	r := &e2eReceiver{secret: secret, failOneIn: failOneIn, first: map[string]time.Time{}, created: map[string]time.Time{}, attempts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.URL = "http://" + ln.Addr().String() + "/hooks/calls"
	return r
}

func (r *e2eReceiver) problem(format string, args ...any) {
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func (r *e2eReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhooks.Verify(r.secret, id, req.Header.Get("webhook-timestamp"), body, req.Header.Get("webhook-signature"), now, 5*time.Minute); err != nil {
		r.problem("webhook-id %q: signature does not verify: %v", id, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.EventID != id {
		r.problem("webhook-id %q: body's event_id is %q (%v)", id, ev.EventID, err)
		http.Error(w, "id mismatch", http.StatusBadRequest)
		return
	}
	r.attempts[id]++
	if r.failOneIn > 0 && r.attempts[id] == 1 {
		h := fnv.New32a()
		h.Write([]byte(id))
		if h.Sum32()%r.failOneIn == 0 {
			r.refused++
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
	}
	r.accepted++
	if _, ok := r.first[id]; !ok {
		r.first[id] = now
		if c, ok := e2eCreationTime(body); ok {
			r.created[id] = c
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// Snapshot returns the first-acceptance times, the count of 2xx answers and
// of injected refusals, and the problems seen.
func (r *e2eReceiver) Snapshot() (first map[string]time.Time, accepted, refused int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first = make(map[string]time.Time, len(r.first))
	for k, v := range r.first {
		first[k] = v
	}
	return first, r.accepted, r.refused, append([]string(nil), r.problems...)
}

// e2eGroupLag returns how many records of topic the consumer group has not
// committed yet, over every partition.
func e2eGroupLag(ctx context.Context, cfg kafkabus.Config, topic, group string) (int64, error) {
	ends, err := kafkabus.EndOffsets(ctx, cfg, topic)
	if err != nil {
		return 0, err
	}
	client, err := cfg.Client()
	if err != nil {
		return 0, err
	}
	defer func() {
		if tr, ok := client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}()
	ids := make([]int, 0, len(ends))
	for p := range ends {
		ids = append(ids, p)
	}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return 0, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	if res.Error != nil {
		return 0, fmt.Errorf("committed offsets of %s: %w", group, res.Error)
	}
	committed := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("committed offset of %s partition %d: %w", group, p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for p, end := range ends {
		lag += end - max(committed[p], 0)
	}
	return lag, nil
}

// e2eReadTopic returns every record of topic, in offset order per partition.
func e2eReadTopic(t testing.TB, cfg kafkabus.Config, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out []kafka.Message
	if err := kafkabus.ReadRange(ctx, cfg, topic, nil, func(m kafka.Message) error {
		out = append(out, m)
		return nil
	}); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

// e2eHeader returns a record header's value.
func e2eHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// e2ePercentiles returns the p-th percentiles (0..100) of sorted durations.
func e2ePercentiles(sorted []time.Duration, ps ...float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(sorted) == 0 {
		return out
	}
	for i, p := range ps {
		k := int(p/100*float64(len(sorted))+0.5) - 1
		out[i] = sorted[min(max(k, 0), len(sorted)-1)]
	}
	return out
}

// CPU is the CPU time (user and system) the running process used so far,
// from /proc; 0 when it is not running or the system does not say.
func (p *e2eProc) CPU() time.Duration {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th fields after it.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, _ := strconv.ParseInt(f, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
