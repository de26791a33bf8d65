// Package testenv hands integration tests the real services that `make test`
// starts: a Kafka broker and a PostgreSQL server.
//
// Outside `make test` (a plain `go test ./...` on a laptop) a missing service
// skips the test with a message that says how to run it. When
// CALLSTREAM_INTEGRATION=1 is set, as `make test` and CI do, a missing or
// unreachable service fails the test instead: integration tests are never
// silently skipped there.
package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Required reports whether integration services must be present.
func Required() bool { return os.Getenv("CALLSTREAM_INTEGRATION") == "1" }

func missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s; run `make test`, which starts the local services", what)
	if Required() {
		t.Fatal("integration service missing: " + msg)
	}
	t.Skip(msg)
}

// Kafka returns the brokers of the real Kafka cluster named by KAFKA_BROKERS,
// after checking that it answers a metadata request.
func Kafka(t testing.TB) []string {
	t.Helper()
	env := strings.TrimSpace(os.Getenv("KAFKA_BROKERS"))
	if env == "" {
		missing(t, "KAFKA_BROKERS is not set")
	}
	brokers := strings.Split(env, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		t.Fatalf("Kafka at %s does not answer a metadata request: %v", env, err)
	}
	return brokers
}

// Postgres returns the DSN of the real PostgreSQL server named by
// CALLSTREAM_TEST_POSTGRES_DSN.
func Postgres(t testing.TB) string {
	t.Helper()
	dsn := strings.TrimSpace(os.Getenv("CALLSTREAM_TEST_POSTGRES_DSN"))
	if dsn == "" {
		missing(t, "CALLSTREAM_TEST_POSTGRES_DSN is not set")
	}
	return dsn
}

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topic returns a topic name unique to this test run, so tests sharing one
// broker never see each other's records.
func Topic(t testing.TB, name string) (topic string) {
	t.Helper()
	base := unsafeTopicChars.ReplaceAllString(t.Name()+"."+name, "_")
	if len(base) > 180 {
		base = base[:180]
	}
	topic = fmt.Sprintf("test.%s.%d-%06d", base, time.Now().UnixNano(), rand.IntN(1_000_000))
	deleteTopicsAfter(t, func(n string) bool { return n == topic })
	return topic
}

// deleteTopicsAfter deletes, when the test ends, the topics of the shared
// broker that match: every Kafka client fetches the metadata of all topics,
// and thousands of leftovers slow every test after them. Best effort.
func deleteTopicsAfter(t testing.TB, match func(string) bool) {
	brokers := strings.TrimSpace(os.Getenv("KAFKA_BROKERS"))
	if brokers == "" {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := &kafka.Client{Addr: kafka.TCP(strings.Split(brokers, ",")...), Timeout: 5 * time.Second}
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			t.Logf("testenv: list topics to delete: %v", err)
			return
		}
		var names []string
		for _, tp := range md.Topics {
			if match(tp.Name) {
				names = append(names, tp.Name)
			}
		}
		if len(names) == 0 {
			return
		}
		if _, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names}); err != nil {
			t.Logf("testenv: delete %d test topics: %v", len(names), err)
		}
	})
}

// Prefix returns a topic prefix unique to this test run, for components that
// derive several topic names (calls, dlq, alerts, state) from one prefix.
func Prefix(t testing.TB) string {
	t.Helper()
	prefix := Topic(t, "") + "."
	deleteTopicsAfter(t, func(n string) bool { return strings.HasPrefix(n, prefix) })
	return prefix
}

// KafkaConfig returns the kafkabus settings of the real broker (see Kafka).
func KafkaConfig(t testing.TB) kafkabus.Config {
	t.Helper()
	cfg := kafkabus.DefaultConfig()
	cfg.Brokers = Kafka(t)
	return cfg
}

// KafkaSubscribers builds consumer-group subscribers on cfg's cluster as
// callstream consume does: from the first offset of a new group, metrics
// on reg (which may be nil). Its signature is the consumer runtime's
// RuntimeDeps.Subscribe.
func KafkaSubscribers(cfg kafkabus.Config, reg prometheus.Registerer) func(group string, maxInFlight int) (message.Subscriber, error) {
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config, sc.Registerer = cfg, reg
	sc.InitialOffset = kafkabus.OffsetFirst
	return kafkabus.Subscribers(sc, watermill.NopLogger{})
}
