package webhooks

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
)

// snapshotFailStore is a fileStore whose snapshot saves (header and parts)
// fail while failing is set, like a disk that refuses the larger writes.
type snapshotFailStore struct {
	*fileStore
	failing atomic.Bool
}

func (s *snapshotFailStore) Save(ctx context.Context, key string, value []byte) error {
	if s.failing.Load() && strings.Contains(key, snapshotKey) {
		return errors.New("injected: snapshot write refused")
	}
	return s.fileStore.Save(ctx, key, value)
}

// A failed snapshot save reaches the waiters of that flush.
func TestJournalSnapshotSaveErrorReachesWaiters(t *testing.T) {
	j, store, _, _ := loadedJournal(t)
	ctx := context.Background()
	// The first flush after load is a snapshot (forceSnap): fail it.
	store.fail.Store(1)
	w := j.append(op{K: opAdd, ID: "x", Eps: []string{"a"}})
	j.flush(ctx)
	if err := w.wait(ctx); err == nil {
		t.Fatal("waiter of a failed snapshot save got no error: an event not durable would be acknowledged")
	}
	if !j.forceSnap {
		t.Fatal("a failed snapshot must be retried as a snapshot")
	}
}

// The plug-in does not acknowledge an event whose queue entry could not be
// saved because the snapshot save failed: Handle returns an error (the
// runtime delivers the message again), never a permanent one, since the
// state store is at fault, not the message. Once the store works again the
// redelivered event is acknowledged and delivered.
func TestSnapshotSaveFailureIsNotAcknowledged(t *testing.T) {
	var release atomic.Bool
	l := newListener(t, func(int, *http.Request, []byte) int {
		if release.Load() {
			return http.StatusOK
		}
		return 0 // hang: the event stays queued
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Timeout: 200 * time.Millisecond})
	cfg.RetrySchedule = []time.Duration{time.Hour}
	store := &snapshotFailStore{fileStore: newFileStore(t)}
	store.failing.Store(true) // the first save after start is a snapshot
	d := newDLQ(t)
	p := start(t, cfg, store, d)
	ev := testEvent(1, "c1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.Handle(ctx, delivery(t, ev))
	if err == nil {
		t.Fatal("Handle acknowledged an event whose snapshot save failed")
	}
	if !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("error %q does not say the queue snapshot failed", err)
	}
	if consumers.IsPermanent(err) {
		t.Fatalf("a state store failure is not the message's fault, yet the error is permanent: %v", err)
	}
	// The store works again; the runtime delivers the message again and
	// this time it is acknowledged, so it must be durable: a crash right
	// after (nothing saved from now on) keeps it.
	store.failing.Store(false)
	handle(t, p.Plugin, ev)
	store.frozen.Store(true)
	p.stop(t)
	store.frozen.Store(false)
	release.Store(true)
	p2 := start(t, cfg, store, d)
	eventually(t, 5*time.Second, "the acknowledged event after the restart", func() bool { return l.successes()[ev.EventID] == 1 })
	p2.stop(t)
}
