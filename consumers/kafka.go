package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/kafkabus"
)

// KafkaSubscribe returns a RuntimeDeps.Subscribe function for Kafka mode:
// each plug-in gets its own kafkabus Subscriber in consumer group
// cfg.GroupID(plugin), reading from the first offset when the group has
// none, with the plug-in's MaxInFlight.
func KafkaSubscribe(kcfg kafkabus.Config, cfg Config, reg prometheus.Registerer, logger *slog.Logger) func(string, Tuning) (message.Subscriber, error) {
	return func(plugin string, t Tuning) (message.Subscriber, error) {
		sc := kafkabus.DefaultSubscriberConfig()
		sc.Config = kcfg
		sc.ConsumerGroup = cfg.GroupID(plugin)
		sc.InitialOffset = kafkabus.OffsetFirst
		sc.MaxInFlight = t.MaxInFlight
		sc.Registerer = reg
		sub, err := kafkabus.NewSubscriber(sc, WatermillLogger(logger.With("plugin", plugin)))
		if err != nil {
			return nil, fmt.Errorf("consumers: subscriber for %s: %w", plugin, err)
		}
		return sub, nil
	}
}

// EnsureKafkaTopics creates the topics the consumers publish to, the DLQ and
// the alerts topic, when missing. The calls topic is the producer's to
// create, with its partition count.
func EnsureKafkaTopics(ctx context.Context, kcfg kafkabus.Config, topics Topics) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The topics plug-ins publish to: the publisher does not create topics.
	for _, name := range []string{topics.DLQ, topics.Alerts} {
		if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: name}); err != nil {
			return fmt.Errorf("consumers: %w", err)
		}
	}
	return nil
}
