package kafkabus_test

import (
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// suitePartitions is the partition count of every topic the suite makes:
// several, so the suite exercises multi-partition groups and the merge of
// partition readers without a group.
const suitePartitions = 4

var unsafeGroupChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

func testLogger() watermill.LoggerAdapter {
	if os.Getenv("KAFKABUS_DEBUG") == "1" {
		return watermill.NewStdLogger(true, false)
	}
	return watermill.NopLogger{}
}

// newPubSub builds a Publisher and a Subscriber for the given group (empty =
// no group) with test-friendly timings.
func newPubSub(t *testing.T, brokers []string, group string, maxInFlight int, marshaler interface {
	kafkabus.Marshaler
	kafkabus.Unmarshaler
}) (*kafkabus.Publisher, *kafkabus.Subscriber) {
	t.Helper()
	pc := kafkabus.DefaultPublisherConfig()
	pc.Brokers = brokers
	pc.Marshaler = marshaler
	pub, err := kafkabus.NewPublisher(pc, testLogger())
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Brokers = brokers
	sc.ConsumerGroup = group
	sc.MaxInFlight = maxInFlight
	sc.Unmarshaler = marshaler
	sc.NackResendSleep = 10 * time.Millisecond
	sc.HeartbeatInterval = 250 * time.Millisecond
	sc.SessionTimeout = 6 * time.Second
	sc.RebalanceTimeout = 5 * time.Second
	sc.TopicPartitions = suitePartitions
	sc.TopicReplicationFactor = 1
	sub, err := kafkabus.NewSubscriber(sc, testLogger())
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	return pub, sub
}

// groupFor names one consumer group per suite test: every Pub/Sub a suite
// test builds shares it (as the suite expects), and tests running in
// parallel do not trigger each other's rebalances.
func groupFor(t *testing.T) string {
	return "kafkabus-suite-" + unsafeGroupChars.ReplaceAllString(t.Name(), "_")
}

// payloadKeyMarshaler keys each record by its payload, so the suite's
// ordering test (messages typed by payload) can check Kafka's real promise:
// order per key.
type payloadKeyMarshaler struct{ kafkabus.DefaultMarshaler }

func (m payloadKeyMarshaler) Marshal(topic string, msg *message.Message) (kmsg kafka.Message, err error) {
	kmsg, err = m.DefaultMarshaler.Marshal(topic, msg)
	if err == nil && kmsg.Key == nil {
		kmsg.Key = append([]byte(nil), msg.Payload...)
	}
	return kmsg, err
}

func suiteTopic(t *testing.T) func(tests.TestContext) string {
	prefix := testenv.Topic(t, "")
	deleteTopicsAfter(t, testenv.Kafka(t), prefix)
	return func(tctx tests.TestContext) string { return prefix + string(tctx.TestID) }
}

// TestPubSubSuite runs watermill's universal suite against the real broker
// with consumer groups and strict (MaxInFlight=1) delivery.
//
// GuaranteedOrder is claimed because Kafka orders per partition and strict
// mode keeps that order: the suite's ordering test sends messages of 16
// types without a key, so the records are keyed by payload here (as
// callstream keys by call_key) and spread over suitePartitions partitions.
// The test also checks (TestNoAck) that nothing more is delivered before an
// Ack. TestReconnect is skipped by the suite itself: it needs a command that
// restarts the broker, and the shared broker must not be restarted.
func TestPubSubSuite(t *testing.T) {
	brokers := testenv.Kafka(t)
	newPS, newPSInGroup := groupedPubSub(brokers)
	tests.TestPubSub(t, groupedFeatures(t), newPS, newPSInGroup)
}

// TestPubSubSuiteNoGroup runs the suite with subscribers outside any group:
// every subscriber reads every partition from the first offset, so new
// subscribers see old messages.
//
// ForceShort: without a group every subscriber reads the whole topic, so
// the full-size TestConcurrentSubscribe (50 subscribers x 5000 messages)
// pushes 250k deliveries through one acking reader and takes ~30 s alone,
// and TestContinueAfterSubscribeClose re-reads from the start on each of its
// 20 attempts. The short sizes exercise the same paths; the grouped suite
// above runs at full size.
func TestPubSubSuiteNoGroup(t *testing.T) {
	brokers := testenv.Kafka(t)
	features := tests.Features{
		ConsumerGroups:                   false,
		ExactlyOnceDelivery:              false,
		GuaranteedOrder:                  false,
		Persistent:                       true,
		NewSubscriberReceivesOldMessages: true,
		ForceShort:                       true,
		GenerateTopicFunc:                suiteTopic(t),
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, brokers, "", 1, kafkabus.DefaultMarshaler{})
		},
		nil,
	)
}

// TestPubSubStress runs watermill's stress test (the whole grouped suite
// STRESS_TEST_COUNT times in parallel, 10 by default). It is not part of the
// default run: ten parallel suites put ~10x the load of TestPubSubSuite on
// the shared broker and the 2-core CI machine. Run it with
//
//	CALLSTREAM_STRESS=1 KAFKA_BROKERS=127.0.0.1:9092 go test ./pkg/kafkabus -run TestPubSubStress -timeout 30m
func TestPubSubStress(t *testing.T) {
	if os.Getenv("CALLSTREAM_STRESS") != "1" {
		t.Skip("stress test: set CALLSTREAM_STRESS=1")
	}
	brokers := testenv.Kafka(t)
	newPS, newPSInGroup := groupedPubSub(brokers)
	tests.TestPubSubStressTest(t, groupedFeatures(t), newPS, newPSInGroup)
}

// groupedFeatures are the features the grouped suite runs with.
func groupedFeatures(t *testing.T) tests.Features {
	return tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     true,
		Persistent:          true,
		GenerateTopicFunc:   suiteTopic(t),
	}
}

// groupedPubSub returns the suite's constructors: strict delivery
// (MaxInFlight 1), records keyed by payload, a consumer group per test or
// the one the suite names.
func groupedPubSub(brokers []string) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, brokers, groupFor(t), 1, payloadKeyMarshaler{})
		}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newPubSub(t, brokers, group, 1, payloadKeyMarshaler{})
		}
}
