package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

func TestConsumeAndDLQUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantOut  string
	}{
		{"consume needs brokers", []string{"consume"}, nil, 2, "set KAFKA_BROKERS"},
		{"unknown --only plug-in", []string{"consume", "--only", "nope"}, map[string]string{"KAFKA_BROKERS": "127.0.0.1:1"}, 2, `unknown plug-in "nope"; known plug-ins:`},
		{"dlq needs a verb", []string{"dlq"}, nil, 2, "dlq replay"},
		{"negative limit", []string{"dlq", "replay", "--limit", "-1"}, nil, 2, "--limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := &env{stdout: &out, stderr: &out, lookupEnv: func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }}
			code := runMain(context.Background(), e, tt.args)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("code %d (want %d), output %q (want it to contain %q)", code, tt.wantCode, out.String(), tt.wantOut)
			}
		})
	}
}

// TestDLQReplayEmpty runs the command against the real broker on an empty
// DLQ: it reports an empty backlog and succeeds. Replay itself is tested in
// package consumers (TestReplayDLQ).
func TestDLQReplayEmpty(t *testing.T) {
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkabus.EnsureTopics(ctx, kcfg, consumers.NewTopics(prefix).Outputs(nil)...); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"KAFKA_BROKERS": strings.Join(kcfg.Brokers, ","), "CALLSTREAM_TOPIC_PREFIX": prefix}
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	code := runMain(ctx, e, []string{"dlq", "replay", "--log-level", "warn"})
	if code != 0 || !strings.Contains(out.String(), "backlog 0, read 0, replayed 0") {
		t.Fatalf("code %d, output %q", code, out.String())
	}
}

// countingPlugin counts the events it is given.
type countingPlugin struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *countingPlugin) Name() string { return "counting" }
func (c *countingPlugin) Handle(_ context.Context, d consumers.Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[d.Event.EventID] = true
	return nil
}
func (c *countingPlugin) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// TestConsumeKafka runs `callstream consume` as wired for production (the
// registry aside) against the real broker: a plug-in gets the events
// published to the calls topic, /readyz reports ready, and the process
// stops cleanly on cancel.
func TestConsumeKafka(t *testing.T) {
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	topics := consumers.NewTopics(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topics.Calls, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = kcfg
	pub, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 20
	for i := 0; i < n; i++ {
		e := callEvent(i)
		data, _ := json.Marshal(&e)
		msg := message.NewMessage(e.EventID, data)
		msg.Metadata.Set(schemas.HeaderType, e.Type())
		msg.Metadata.Set(schemas.KeyMetadata, e.CallKey)
		if err := pub.Publish(topics.Calls, msg); err != nil {
			t.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	vars := map[string]string{
		"KAFKA_BROKERS":           strings.Join(kcfg.Brokers, ","),
		"CALLSTREAM_TOPIC_PREFIX": prefix,
		"CALLSTREAM_GROUP_PREFIX": prefix + "group-",
		"CALLSTREAM_HTTP_LISTEN":  addr,
	}
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &syncWriter{w: &out}, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	cfg, _, err := loadConfig(e, "consume", []string{"--log-level", "warn"}, []string{"kafka", "consumers"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingPlugin{seen: map[string]bool{}}
	registry := []consumers.Factory{{Name: p.Name(), New: func(consumers.Deps) (consumers.Plugin, error) { return p, nil }}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consume(runCtx, e, cfg, registry) }()

	deadline := time.Now().Add(60 * time.Second)
	for p.count() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.count() != n {
		t.Fatalf("plug-in got %d of %d events", p.count(), n)
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d while consuming", resp.StatusCode)
	}
	// The status page of a consume process shows its plug-ins and no
	// producer.
	var snap struct {
		Process  string   `json:"process"`
		Producer bool     `json:"producer"`
		Plugins  []string `json:"plugins"`
	}
	resp, err = http.Get("http://" + addr + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || snap.Process != "callstream consume" || snap.Producer ||
		len(snap.Plugins) != 1 || snap.Plugins[0] != p.Name() {
		t.Fatalf("/status.json = %d %+v (%v); want the consume process with plug-in %s only", resp.StatusCode, snap, err, p.Name())
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("consume did not stop")
	}
}

// syncWriter lets the logger and the test share a buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// callEvent is a valid call event numbered i.
func callEvent(i int) schemas.CallEvent {
	key := fmt.Sprintf("call-%04d", i)
	created := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return schemas.CallEvent{
		EventID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String(), Org: "acme", CallKey: key, Revision: 1,
		SourceNumber: "+911234567890", DestinationNumber: "+919876543210", CallType: schemas.CallInbound,
		CallStatus: schemas.StatusCompleted, CreationTime: created, EndReason: "caller_hangup",
		ObservedAt: created.Add(time.Minute), Raw: json.RawMessage(`{"id":"` + key + `"}`),
	}
}
