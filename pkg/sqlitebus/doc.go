// Package sqlitebus is the durable, replayable bus of embedded mode: a
// watermill message.Publisher and message.Subscriber on one SQLite file
// (modernc.org/sqlite, no cgo) in the state directory, with consumer groups,
// committed offsets and the offset helpers of pkg/kafkabus. It keeps the
// promises Kafka mode keeps: a Publish returns only once its messages are on
// disk, a group's committed offset survives restarts and only ever covers
// acknowledged messages, and any offset can be read again.
//
// # Log
//
// A topic is one partition (partition 0) and one table, created on its first
// publish or subscribe; its INTEGER PRIMARY KEY is the offset, so appends go
// to the end of one B-tree and retention cuts a range off its start.
// Offsets start at 0 and grow by one per message, as in Kafka. Each row
// keeps the UUID, the payload, the record key (schemas.KeyMetadata) in a
// column of its own, every other metadata entry as a JSON object, and a
// timestamp: when the bus stored it, never earlier than the topic's newest
// (a clock stepping back repeats the last timestamp), so timestamps grow
// with offsets and OffsetsAt is a binary search. A topic the file does not
// have reads as an empty one (EndOffsets {0: 0}).
//
// # Publishing
//
// Publish(topic, msgs...) writes all msgs in one transaction, with
// consecutive offsets, and returns after the commit in WAL mode with
// synchronous=FULL: the WAL is fsynced, so a power cut right after Publish
// returns loses none of them (the producer saves its checkpoint then). A
// message larger than Config.MaxMessageBytes (payload, UUID, metadata keys
// and values; default 1 MiB, Kafka's default, at most 64 MiB) fails the whole
// call with an error wrapping schemas.ErrTooLarge before anything is
// written.
//
// # One writer
//
// Every write of the process (Publish calls, the commits of every group,
// retention) goes through one goroutine on one connection, so they never
// fight each other for SQLite's single write lock. Writes that queue while a
// transaction commits share the next one (group commit: one fsync for
// several Publish calls and commits). Offset commits are lazy: the writer
// holds a transaction of commits alone up to 10 ms for a Publish to join, so
// a producer publishing back to back pays nothing for the four groups
// committing behind it. Transactions begin IMMEDIATE (_txlock=immediate), so
// a lock held by another process is met at BEGIN and waited for
// (busy_timeout, Config.BusyTimeout), then retried with backoff until
// Config.LockTimeout (default 2 minutes); a Publish that gives up says the
// file is locked and has written nothing. Reads (subscriptions, the offset
// helpers) use a separate pool of read-only connections; in WAL mode they
// are blocked neither by the writer nor by another process's lock.
//
// # Subscribing
//
// A Subscriber has one consumer group (or none) and a MaxInFlight budget;
// Subscribe hands out single messages, SubscribeBatches batches of up to
// maxMessages in offset order, or what arrived within linger of the first
// (a delivery.Batch, with no watermill message per record). Either way each
// message gets its own verdict (Ack or Nack, or its place in the batch's
// Settle):
//
//   - up to MaxInFlight messages are unacked at once (over all batches of
//     a subscription); acks may come in any order;
//   - the committed offset of a group advances only over the acknowledged
//     prefix (the idea of kafkabus's commitTracker), in one UPDATE per
//     commit round: everything acked while a commit is written rides on the
//     next one. Commits are durable (the same fsynced transactions);
//   - a Nack delivers that message again after NackResendSleep, in a later
//     batch, while later messages go on; it holds its slot meanwhile;
//   - with MaxInFlight 1 (the default) the next message is handed out only
//     after the current one is acked: strict offset order, a nacked message
//     before anything after it.
//
// Delivered messages carry the UUID as published, their position
// (schemas.SetPosition: topic, partition 0, offset), schemas.TimestampMetadata,
// schemas.KeyMetadata when they have a key and every stored metadata entry.
// Each message's context carries the Subscribe context's values and is
// canceled once the message is acked, nacked, or its subscription stops. A
// payload is shared by the deliveries of a message to every group: do not
// modify it in place.
//
// A subscription runs three goroutines, however many messages it has out: a
// deliverer, an acker and (with a group) a committer. The acker watches the
// oldest outstanding message directly (so in-order acks, and every ack in
// strict mode, are seen at once) and the others by a scan every 5 ms, which
// is how late an out-of-order ack may free its slot; it never delays a
// commit, which waits for the prefix anyway.
//
// A group starts at its committed offset. A group without one is placed, at
// Subscribe, at offset 0 (InitialOffset first: the oldest message retention
// kept) or at the end offset (last), and that is stored at once, so a
// message published after Subscribe returns is never skipped, even by a
// group that restarts before its first commit. Without a group a
// subscription reads from InitialOffset and commits nothing. As Kafka gives
// a partition to one member of a group, one subscription of a group reads a
// topic at a time in a process: another one of the same group waits,
// delivering nothing, and takes over from the committed offset when the
// first stops.
//
// New messages are noticed in two ways. A Publish through this Bus wakes its
// subscriptions at once, and those near the end read the new messages from
// an in-memory tail cache of what this Bus just wrote (up to 32768 messages
// or 32 MiB per topic), with no query and no metadata decoding per group.
// Messages another process writes to the file (`callstream dlq replay`
// beside `callstream run`) are found by polling, every Config.PollInterval
// (default 200 ms) while a subscription is idle.
//
// Canceling the Subscribe context, Subscriber.Close and Bus.Close stop
// delivery, commit what was acked before, then close the channel. Messages
// delivered but not acked by then are not committed: the next subscription
// of the group gets them again; a late Ack of one is ignored. Bus.Close
// then waits for Publish calls under way, stops the writer and closes the
// file.
//
// # Offsets
//
// EndOffsets, OffsetsAt and ReadRange serve the producer's exactly-once
// restore as their kafkabus namesakes do (by topic, partition 0 only);
// CommittedOffsets and Lag serve lag reporting, SetCommitted replay (move a
// group back, or forward, while it is not subscribed in this process).
//
// # Retention
//
// A background loop (every Config.RetentionInterval, default 1 minute; or
// ApplyRetention) deletes the messages of a topic that are older than
// Config.Retention (the producer's lookback horizon plus a margin, so its
// restore can still read them) and that every group of the topic has
// committed past, a few thousand per transaction. Groups count from their
// first Subscribe; a group with no subscription in this process that has not
// subscribed, committed or unsubscribed for Config.GroupRetention (default
// 7 days, Kafka's offsets.retention.minutes) stops holding messages back (a
// plug-in that was switched off must not keep the file growing). A topic
// that no group ever subscribed to keeps every message: that is the DLQ of
// embedded mode, which only `callstream dlq replay` reads (without a group),
// so a dead-lettered message stays until it was replayed and a group
// consumed past it, or forever; retry topics are read by their plug-in's
// group and trimmed like the calls topic. Deleted pages are reused by
// SQLite, so a file under steady traffic stops growing; it is never
// vacuumed, and the WAL is truncated to 64 MiB after checkpoints.
//
// # Why not watermill-sql
//
// watermill-sql's Subscriber (v4.1.2, pkg/sql/subscriber.go) runs each
// SELECT in a transaction that it keeps open while it hands the rows out one
// at a time, waiting for each message's ack before the next, and writes the
// offset in the same transaction. On SQLite, which has one writer, that
// transaction must hold the write lock (BEGIN IMMEDIATE; a deferred one
// fails its upgrade with SQLITE_BUSY_SNAPSHOT when the producer wrote
// meanwhile), so the producer and every consumer group take turns on the
// lock, and a batch sink never has more than one message. Measured on this
// 2-core machine (shared, load average 2-4) with a SQLite schema and
// offsets adapter of our own (the MySQL ones with SQLite syntax; WAL,
// synchronous=FULL, 700-byte messages, four groups acking at once): 4-10k
// messages/s per group consumed, and Publish falling from 115-140k
// messages/s alone to 4-30k while the groups consume. This package, in
// TestBenchThroughput on the same machine: 74-109k messages/s published in
// calls of 1,000 (plain SQLite INSERTs of the same rows: 64-117k) and 42-54k
// per group end to end with four groups at once, publishing, consuming,
// acking and committing (the same work in plain SQL: 28-43k).
//
// # Limits
//
//   - One partition per topic: no parallelism inside a group (embedded mode
//     runs one process anyway); per-key order is total order.
//   - One process owns the file: it runs the consumer groups. Other
//     processes may publish to it and read it (dlq replay, lag), through
//     the same locking, but two processes subscribing the same group would
//     both deliver every message and overwrite each other's commits.
//   - At least once: after a crash, messages acked but not yet committed
//     are delivered again; sinks are idempotent by event_id.
//   - A power cut loses no Publish that returned and no commit that was
//     written (the WAL is fsynced at every commit), provided the disk honours
//     fsync; it can lose a Publish still under way (its caller never saw it
//     succeed) and acks not yet committed (delivered again). A process crash
//     (SIGKILL) loses the same, no more.
//   - A write waits at most LockTimeout for a file locked by another
//     process; Close may wait as long for the last commits.
package sqlitebus
