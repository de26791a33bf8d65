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
// Runtime.Run runs each on a lane of its own (lane.go): a subscription to
// the calls topic in the plug-in's consumer group, callstream-<name>, so
// each plug-in sees every event and scales by adding processes, and one to
// its retry topic (see Replay below). The bus is the caller's choice
// through RuntimeDeps.Subscribe: kafkabus in Kafka mode (callstream
// consume), the embedded SQLite log in embedded mode (callstream run).
// State is FileState in embedded mode, SharedState on a compacted topic in
// Kafka mode. Run's phases (start, subscribe, deliver, drain, commit,
// close) are methods of Runtime, in that order.
//
// # The batch path
//
// A lane takes batches from the bus: up to Tuning.BatchSize messages, or
// what arrived within Tuning.BatchWait of the first, natively from a bus
// that implements BatchSubscriber: a delivery.Batch, with one channel
// operation and one goroutine per batch, and no watermill message, metadata
// map or ack channel per record (a record's headers are read from the bus's
// own record when asked for, and a whole message is made only for the DLQ).
// The verdicts of a batch are given at once, with Settle. Every batch goes
// through the same steps, each written once (lane.go, settle.go,
// poison.go):
//
//  1. decode: the ce_type header's major version must be v1
//     (ErrUnknownVersion), the payload JSON (ErrNotJSON) matching
//     schemas/call_event.v1.json (ErrSchema); a message that fails is
//     poisoned without reaching the plug-in. The others are sorted by
//     topic, partition and offset.
//  2. settle: the plug-in gets the batch (HandleBatch, or Handle for each
//     delivery in order), with panics recovered. Failures are classified
//     (errors.go): Permanent ones poison their deliveries at once;
//     Transient ones (and network errors) are retried with backoff for as
//     long as it takes, the lane reported paused
//     (callstream_consumer_paused, Runtime.Ready) and nothing
//     dead-lettered; other errors are retried Config.MaxRetries times, and
//     then the deliveries still failing are split in halves until the one
//     at fault is alone, which is poisoned after its own retries.
//     *ItemErrors fail single items; only those are handed over again.
//  3. dead-letter: a poisoned message is published to callstream.dlq.v1
//     with the schemas.DLQ*Metadata keys (reason, plug-in, original
//     topic, partition and offset, time) and its payload, metadata and key
//     unchanged. A failed publish is retried with backoff: the message is
//     acknowledged only once its copy is in the DLQ. A message too large
//     even for the DLQ (schemas.ErrTooLarge) is recorded in the plug-in's
//     state (Undeliverables) and callstream_consumer_undeliverable_total,
//     and acknowledged: its partition never loops on it.
//  4. verdicts: every message is acked, in batch order, once handled or
//     dead-lettered; at shutdown what is not done is nacked.
//
// Metrics per plug-in: callstream_consumer_messages_total{plugin,outcome}
// (handled, poisoned, failed), callstream_consumer_processing_seconds
// (batch delivery to acknowledgement), callstream_consumer_batch_size,
// callstream_consumer_failed_attempts_total, callstream_consumer_paused,
// and callstream_consumer_lag, sampled from the group's committed offsets.
//
// # Delivery semantics
//
// At least once. A message is acknowledged only after the plug-in's
// HandleBatch holding it returned nil, or after its copy is in the DLQ; the
// bus commits offsets only up to the contiguous acknowledged prefix of each
// partition. So a crash loses nothing, but can deliver again what was
// handled and not yet committed: sinks must be idempotent by event_id. With
// Tuning.Concurrency 1 (the default) a plug-in gets a partition's events in
// order, one batch after the other; with more, batches are handled
// concurrently, so sinks that keep the latest revision compare revisions.
//
// Graceful shutdown (ctx cancelled): the lanes stop taking batches,
// Flusher plug-ins are asked to flush what they hold, and the batches in
// flight get Config.CloseTimeout to finish and be acknowledged; then the
// subscriptions commit what was acknowledged and close, Runner plug-ins are
// stopped and Closer plug-ins closed. What was not acknowledged by then is
// delivered again next time.
//
// # Replay
//
// ReplayDLQ (callstream dlq replay) puts each dead-lettered message, after
// a fix, on the retry topic of the plug-in that failed it
// (callstream.retry.<plugin>.v1, read in group callstream-<plugin>.retry),
// never on the calls topic: no other plug-in sees it twice, and a webhook
// endpoint's failure is retried for that endpoint alone.
package consumers
