package sqlitebus_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/sqlitebus"
)

// Environment of the process that locks the file for TestExclusiveLock.
const (
	lockChildEnv = "SQLITEBUS_LOCK_CHILD"
	lockPathEnv  = "SQLITEBUS_LOCK_PATH"
	lockHoldEnv  = "SQLITEBUS_LOCK_HOLD"
)

// TestLockChild is the other process of TestExclusiveLock: it opens the
// file with its own SQLite connection, takes an exclusive lock (BEGIN
// EXCLUSIVE), says "locked", holds it, and lets go. A backup, a long
// writer or an sqlite3 shell does the same.
func TestLockChild(t *testing.T) {
	if os.Getenv(lockChildEnv) != "1" {
		t.Skip("the locking process of TestExclusiveLock")
	}
	hold, err := time.ParseDuration(os.Getenv(lockHoldEnv))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+os.Getenv(lockPathEnv)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	time.Sleep(hold)
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("unlocked")
}

// lockFile starts TestLockChild on path and returns once it holds the lock;
// the returned channel is closed when the child has exited.
func lockFile(t *testing.T, path string, hold time.Duration) (lockedAt time.Time, exited <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"=1", lockPathEnv+"="+path, lockHoldEnv+"="+hold.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	locked := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "locked" {
				locked <- time.Now()
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case at := <-locked:
		return at, done
	case <-done:
		t.Fatalf("the locking process ended without taking the lock: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the locking process did not take the lock")
	}
	return time.Time{}, nil
}

// TestExclusiveLock: while another process holds an exclusive lock on the
// file for longer than busy_timeout, Publish waits (retrying with backoff)
// and then succeeds, consumers go on reading, and nothing is lost; with a
// LockTimeout shorter than the lock, Publish fails with an error saying so
// and writes nothing.
func TestExclusiveLock(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry()
	const hold = 3 * time.Second
	b := openBus(t, sqlitebus.Config{BusyTimeout: 200 * time.Millisecond, LockTimeout: 30 * time.Second, Registerer: reg})
	pub := b.Publisher()
	publish(t, pub, "calls", simple("before", 5)...)
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 100}).Subscribe(ctx, "calls")
	if err != nil {
		t.Fatal(err)
	}

	lockedAt, exited := lockFile(t, pathOf(b), hold)
	published := make(chan error, 1)
	go func() { published <- pub.Publish("calls", simple("during", 10)...) }()
	// Readers are not blocked by the lock (WAL): the group gets what was
	// there before.
	for i := range 5 {
		m := receive(t, ch, time.Second)
		if m.UUID != fmt.Sprintf("before-uuid-%d", i) {
			t.Fatalf("got %s, want before-uuid-%d", m.UUID, i)
		}
		m.Ack()
	}
	select {
	case err := <-published:
		t.Fatalf("Publish returned (%v) while the file was locked", err)
	case <-time.After(hold / 2):
	}
	if err := <-published; err != nil {
		t.Fatalf("Publish after the lock: %v", err)
	}
	if waited := time.Since(lockedAt); waited < hold-200*time.Millisecond {
		t.Fatalf("Publish returned %s after the lock was taken, before it was released (%s)", waited, hold)
	}
	<-exited
	if n := counterValue(t, reg, "sqlitebus_errors_total", "op", "busy"); n == 0 {
		t.Error("no busy attempt counted: the lock was not in the way")
	}
	for i := range 10 {
		m := receive(t, ch, 5*time.Second)
		if m.UUID != fmt.Sprintf("during-uuid-%d", i) {
			t.Fatalf("got %s, want during-uuid-%d", m.UUID, i)
		}
		m.Ack()
	}
	waitCommitted(t, b, "calls", "g", 15)
	if got := readAll(t, b, "calls", nil); len(got) != 15 {
		t.Fatalf("log holds %d messages, want 15", len(got))
	}

	// A lock held past LockTimeout fails the Publish, cleanly.
	impatient := openBus(t, sqlitebus.Config{Path: pathOf(b), BusyTimeout: 100 * time.Millisecond, LockTimeout: 500 * time.Millisecond})
	_, exited = lockFile(t, pathOf(b), 2*time.Second)
	start := time.Now()
	err = impatient.Publisher().Publish("calls", simple("refused", 3)...)
	if err == nil {
		t.Fatal("Publish succeeded while the file was locked past LockTimeout")
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("Publish failed only after %s with LockTimeout 500ms", took)
	}
	t.Logf("Publish past LockTimeout: %v", err)
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the file is locked", err)
	}
	<-exited
	if end, _ := b.EndOffsets(ctx, "calls"); end[0] != 15 {
		t.Fatalf("end %v after a failed Publish, want 15: nothing may be half written", end)
	}
}
