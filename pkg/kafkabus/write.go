package kafkabus

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// write writes records, retrying only what the broker certainly did not
// append.
//
// kafka-go's Writer retries every temporary error itself, and some of those
// come after the broker appended the batch: a connection reset or a timeout
// while the acknowledgement is on its way, REQUEST_TIMED_OUT and
// NOT_ENOUGH_REPLICAS_AFTER_APPEND. Without an idempotent producer (kafka-go
// has none) such a retry writes the batch twice, and Publish reports success,
// so the caller cannot know. The writer therefore makes one attempt, and
// write retries (up to MaxAttempts) only the records refused before the
// append; on any other error it returns, and the caller, which knows what
// the records are, learns what landed (the producer reads the topic back
// before it publishes for that org again).
func (p *Publisher) write(ctx context.Context, topic string, records []kafka.Message) error {
	wait := backoff.NewExponentialBackOff()
	wait.InitialInterval, wait.MaxInterval, wait.MaxElapsedTime = 100*time.Millisecond, time.Second, 0
	pending := records
	for attempt := 1; ; attempt++ {
		err := p.writer.WriteMessages(ctx, pending...)
		if err == nil {
			return nil
		}
		retry, ok := refusedRecords(pending, err)
		if !ok || attempt >= p.cfg.MaxAttempts {
			return err
		}
		if errors.Is(err, kafka.UnknownTopicOrPartition) && !p.refreshTopic(ctx, topic) {
			return err
		}
		p.metrics.errors.WithLabelValues("publish_retry").Inc()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait.NextBackOff()):
		}
		pending = retry
	}
}

// refusedRecords returns the records of a failed write that may be written
// again, and false when some record's fate is unknown (it may have been
// appended) or the error is not one a retry can mend.
func refusedRecords(records []kafka.Message, err error) ([]kafka.Message, bool) {
	var we kafka.WriteErrors
	if !errors.As(err, &we) || len(we) != len(records) {
		return records, refusedBeforeAppend(err)
	}
	var retry []kafka.Message
	for i, e := range we {
		switch {
		case e == nil: // written
		case refusedBeforeAppend(e):
			retry = append(retry, records[i])
		default:
			return nil, false
		}
	}
	return retry, len(retry) > 0
}

// refusedBeforeAppend reports whether err means the broker did not append
// the batch: it answered with an error it checks before appending, or no
// connection was made. Timeouts, resets and end of file are not: the
// request may have reached the log.
func refusedBeforeAppend(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.UnknownTopicOrPartition,
			kafka.NotEnoughReplicas, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch:
			return true
		}
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
