// Package consumers is where call events fan out: the runtime every
// callstream consumer plugs into.
//
// # Writing a plug-in
//
// A plug-in is a name, its own config section and a handler. Its package
// exports a Factory that closes over the config section; cmd/callstream
// lists the factories in one place (plugins.go), so adding a consumer
// touches no other consumer:
//
//	package counter
//
//	type Config struct {
//		Orgs []string `yaml:"orgs" doc:"Organizations to count; empty counts all."`
//	}
//
//	func Factory(cfg Config) consumers.Factory {
//		return consumers.Factory{Name: "counter", New: func(d consumers.Deps) (consumers.Plugin, error) {
//			return &plugin{cfg: cfg, log: d.Logger}, nil
//		}}
//	}
//
//	type plugin struct {
//		cfg Config
//		log *slog.Logger
//	}
//
//	func (p *plugin) Name() string { return "counter" }
//
//	func (p *plugin) Handle(ctx context.Context, d consumers.Delivery) error {
//		p.log.Info("call", "org", d.Event.Org, "status", d.Event.CallStatus)
//		return nil // acknowledged; an error is retried, consumers.Permanent(err) goes to the DLQ at once
//	}
//
// A sink that writes in transactions implements BatchHandler instead of
// Handler and returns an *ItemErrors to fail single items. A plug-in may
// also implement Tuner (delivery settings), Runner (background work, run
// for the life of the runtime), Flusher (release held deliveries at
// shutdown) and Closer (called once, last). Deps gives it
// a logger, a Prometheus registerer, a publisher (for the alerts topic or
// its own), the topic names and a small durable StateStore.
//
// # Running plug-ins
//
// New selects the plug-ins (Config.Enabled, Config.Only) and builds them;
// Runtime.Run runs them on one watermill Router, one handler per plug-in on
// the calls topic. What a handler reads from is the caller's choice through
// RuntimeDeps.Subscribe: on Kafka (callstream consume) KafkaSubscribe gives
// each plug-in its own consumer group, callstream-<name>, so each sees every
// event and scales by adding processes; in embedded mode (callstream run)
// every plug-in subscribes to the in-process GoChannel, wrapped in
// SharedSubscriber. State is FileState in embedded mode, TopicState (a
// compacted topic) on Kafka.
//
// # The middleware chain
//
// Every plug-in gets the same chain, outermost first:
//
//  1. panic recovery: a panic in the runtime's own code nacks the message.
//  2. metrics: callstream_consumer_messages_total{plugin,outcome} (handled,
//     poisoned, failed), callstream_consumer_processing_seconds (delivery
//     to acknowledgement, retries and batching included), and the
//     callstream_consumer_lag gauge, sampled from the group's committed
//     offsets; callstream_consumer_failed_attempts_total counts every failed
//     attempt and callstream_consumer_batch_size the batches.
//  3. poison queue: a message that failed for good is published to
//     callstream.dlq.v1 with the DLQ*Metadata keys (reason, plug-in,
//     original topic, partition and offset, time) and its payload, metadata
//     and key unchanged, then acknowledged. If the DLQ publish fails, the
//     message is nacked: nothing is dropped.
//  4. decode and validate: the ce_type header's major version must be v1
//     (ErrUnknownVersion), the payload must be JSON (ErrNotJSON) matching
//     schemas/call_event.v1.json (ErrSchema). Such messages go to the DLQ
//     without retries and never reach a plug-in.
//  5. retry: exponential backoff with jitter (cenkalti/backoff),
//     Config.MaxRetries times; Permanent errors are not retried. When
//     shutdown starts, waiting retries give up and the message is nacked,
//     not poisoned.
//  6. panic recovery: a panicking plug-in counts as a failing one (retried,
//     then poisoned with the panic as the reason).
//
// For a BatchHandler the innermost step hands the delivery to a batcher,
// which gathers the Router's concurrent deliveries into batches of up to
// BatchSize, or whatever arrived within BatchWait, sorted by partition and
// offset, and answers each delivery only after HandleBatch returned.
//
// # Delivery semantics
//
// At least once. A message is acknowledged only after its handler (or the
// HandleBatch call holding it) returned nil, or after its copy is in the
// DLQ; on Kafka, offsets are committed only up to the contiguous
// acknowledged prefix of each partition. So a crash loses nothing, but can
// deliver again what was handled and not yet committed: sinks must be
// idempotent by event_id. With MaxInFlight 1 a partition's events arrive
// in order; with more (and for batch plug-ins) they are handled
// concurrently, so sinks that keep the latest revision compare revisions.
//
// Graceful shutdown (ctx cancelled): the Router stops taking messages,
// Flusher plug-ins are asked to flush what they hold, and the Router waits
// up to Config.CloseTimeout for the messages in flight; their batches finish
// and are acknowledged, then the subscriptions commit what was
// acknowledged and close, Runner plug-ins are stopped and Closer plug-ins
// closed. What was not acknowledged by then is delivered again next time.
//
// ReplayDLQ (callstream dlq replay) puts dead-lettered messages back on
// their original topic after a fix; every consumer group sees them again.
package consumers
