// Package kafkabus is a watermill message.Publisher and message.Subscriber
// on segmentio/kafka-go, plus the Kafka plumbing the rest of callstream
// shares: one Config that builds correctly secured kafka-go pieces (Dialer,
// Transport, Client), topic creation (EnsureTopic) and the offset helpers
// the producer's exactly-once restore relies on (EndOffsets, OffsetsAt,
// ReadRange).
//
// # Publishing
//
// Publish(topic, msgs...) hands all msgs to one kafka-go Writer call, so a
// multi-message Publish is one batch per partition, and concurrent Publish
// calls from many goroutines share batches too. It returns only after the
// broker acknowledged every message to all in-sync replicas (RequiredAcks:
// RequireAll). A partial batch waits at most BatchTimeout (default 5 ms;
// kafka-go's own default of 1 s is a latency trap) before it is sent.
//
// The record key is the message's schemas.KeyMetadata ("partition_key") value;
// callstream sets it to the event's call_key. Partitions are chosen with
// kafka-go's Murmur2Balancer, the same hash (murmur2 of the key, positive,
// modulo the partition count) as the Java client's default partitioner, so
// a Java producer sends a key to the same partition. librdkafka (and the
// clients built on it) match only when configured with
// partitioner=murmur2_random; their default, consistent_random, hashes with
// CRC32. A message without a key goes to a random partition. Every other metadata entry becomes a Kafka header of
// the same name (CloudEvents binary mode: the producer sets ce_id, ce_type,
// ... as metadata); the message UUID travels in the header
// "_watermill_message_uuid", as in watermill-kafka.
//
// # Subscribing
//
// With a ConsumerGroup, each Subscribe call is one member of that group (a
// kafka-go Reader with GroupID); members of one group share the partitions.
// Without a group, a subscription reads every partition of the topic (as it
// was at Subscribe time) from InitialOffset and commits nothing.
//
// Delivery is at least once. A record's offset is committed only after its
// message was acked (FetchMessage, then CommitMessages; never ReadMessage,
// which commits first). A Nack delivers the same record again after
// NackResendSleep. With CommitInterval 0 (the default) acked offsets are
// committed right away, one commit request at a time, everything acked
// meanwhile riding on the next; a positive CommitInterval commits on that
// period instead (and on Close), which saves work at high rates.
//
// MaxInFlight bounds the messages delivered and not yet acked per
// subscription:
//
//   - MaxInFlight = 1 (default, strict): the next record is handed out
//     only after the current one is acked, so records reach the handler in
//     partition order and a Nack holds back everything after it. A
//     rebalance or restart may replay records from the last committed
//     offset (a key's recent records can repeat), but a record is never
//     delivered before an earlier, unacked record of its partition.
//   - MaxInFlight = N > 1 (pipelined): up to N messages are outstanding;
//     acks may come in any order. Per partition only the prefix of fetched
//     records that is entirely acked is committed, so a commit never passes
//     an unacked record; a Nacked record is delivered again while later ones
//     go on. Order is not kept. This suits batching sinks whose handler
//     blocks until its batch is durable (the watermill Router runs each
//     message's handler in its own goroutine).
//
// Delivered messages carry their position (topic, partition and offset under
// the keys schemas.PositionOf reads), schemas.TimestampMetadata (the record
// timestamp, RFC 3339 with nanoseconds, UTC), schemas.KeyMetadata (the
// record key, when it has one) and every Kafka header. Each message's
// context is canceled once it is acked or nacked, or when its subscription
// stops.
//
// # Close and rebalances
//
// Subscriber.Close (or canceling the Subscribe context) stops delivery,
// closes the message channels before it returns, commits every offset
// whose prefix was acked before that, and leaves the group. A message
// delivered but not acked by then is not committed: the next member gets it
// again; a late Ack of it is ignored. In a rebalance kafka-go drops the
// records it buffered for the old assignment, and the new owner of a
// partition starts at its committed offset, so nothing unacked is skipped.
// The cost of at-least-once is duplicates: records acked but not yet
// committed when a member dies or loses a partition are delivered again,
// and a late ack from a member that lost the partition may commit an older
// offset than the new owner did (more duplicates, never a gap). Sinks are
// therefore idempotent by event_id.
//
// Publisher.Close waits for Publish calls under way, flushes pending
// batches and closes the connections.
//
// # Security
//
// Config.TLS enables TLS (optional CA file, client certificate, and an
// insecure-skip-verify switch for tests). Config.SASL selects PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512; the password is tagged secret and never
// appears in errors or logs.
package kafkabus
