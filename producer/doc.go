// Package producer polls the Unpod call-logs API and publishes every call
// as an event on the calls topic (DESIGN.md sections 3 and 4): once per
// content, in revision order, without loss and without duplicates, across
// crashes, and without Kafka transactions.
//
// # Windows and the rescan ladder
//
// Progress is counted in time windows of creation_time, never in pages.
// Each organization has a [Checkpoint]: one frontier per rung of the rescan
// ladder (Config.RescanAges, default 0s, 2m, 10m, 30m, 2h). Rung i has read
// every creation time before its frontier at an age of at least settle_lag
// + age i. At every poll, with one "now" for the whole poll, the lowest rung
// that lags its target (now - settle_lag - age) by a step of
// max(poll_interval, age/4) reads the window [frontier, target), split into
// max_window pieces; rung 0 reads whatever has closed. Older slices change
// rarely, so the higher rungs read them in larger windows: every slice is
// re-read at each age a, at most 1.25·a + poll_interval after it closed. A
// read of [s, e) made at time T also serves every rung whose frontier lies
// in [s, e), up to T - settle_lag - age, so after a downtime the higher
// rungs do not re-read what rung 0 just read.
//
// A window is paged with page_size (1,000 by default; a server that clamps
// it is detected on page 1) and counts as read only when count stayed the
// same on every page and every counted record was seen; otherwise it is read
// again, up to max_window_reads times, after which it is accepted and
// reported (a warning and callstream_producer_window_reads_total{result=
// "inconsistent"}): the next rung reads the slice again anyway. Pages are
// fetched ahead and batches published while the next page is prepared.
//
// # Freshness
//
// A call's freshness is the time from when the API shows it to when the
// bus acknowledged its event (callstream_event_freshness_seconds, from its
// creation_time). Three things set it, each in its own file:
//
//   - The recent re-read (recent.go): every poll first reads page 1 of the
//     last recent_rescan (30m) before the settle lag. The API lists newest
//     first, so that page holds the newest page_size records of the span,
//     and a late record, an update or a page shift is published at the next
//     poll instead of at the next rung. When the span fits in the page the
//     read counts as the read of the span: rung 0 and the rungs younger than
//     recent_rescan need no request of their own.
//   - Adaptive polling (cadence.go): poll_interval (2s) while an org's polls
//     publish something or it catches up, doubling after each empty poll up
//     to idle_poll_interval (10s), and never more than org_request_budget
//     (3,600) requests an org an hour on average.
//   - The settle lag, now 0. It kept rung 0 from closing a window before
//     the API showed all of it; a record the API shows a little after its
//     creation_time (or behind a slower clock) is now found by the next
//     poll's recent re-read, so a settle lag would only add its length to
//     every call. Measured on the simulator (TestBenchFreshness, 30 calls a
//     minute with late records, updates and page shifts): records the API
//     showed late reached the topic p50 1.7 s, p99 5.8 s after they
//     appeared, the ones it showed at once p99 7.1 s, against p99 19m and
//     60s with the previous poll 30s, settle lag 30s and ladder
//     0s/5m/30m/2h.
//
// # API cost
//
// Requests per organization per hour at the defaults, counted by the
// simulator (TestBenchFreshness): about 450 for an org with a call a
// minute (idle polls back off to 10 s; one request a poll covers rung 0
// and the young rungs), about 1,280 at 30 calls a minute, and 3,600 for a
// busy org of 1,000 calls a minute, held there by org_request_budget
// (page 1 of the recent span plus rung 0's window every ~2 s, and the
// rungs' own pages). The catch-up of the first hour (lookback) costs one
// request per 1,000 calls of it, at once: the budget's bucket holds a
// quarter of an hour of requests. The previous defaults cost 160 to 180.
// The client's rate_limit (5 requests a second for all orgs of a process)
// stays the ceiling: five busy orgs use it up, so raise it, lower
// org_request_budget, or run one producer per few orgs.
// The periodic completeness audit adds audit_span/1h requests per
// organization every audit_interval: 24 an hour with the defaults (see
// below).
//
// # Completeness audit
//
// Every audit_interval (1h; 0 disables) the producer compares, for each
// organization and each closed hour (one every rung has read, ending at or
// before the lowest frontier) of the last audit_span (24h), the API's count
// (one request with page_size=1) with the distinct calls it published, and
// exports the shortfall as callstream_audit_missing_calls{org}. Published
// calls are counted per organization and hour of creation time when they
// first enter the dedup memory, from an acknowledged batch or from the
// events topic read back; the restore brings back every call created at or
// after the lowest frontier, so the hours from there on are counted whole
// across restarts. Without an EventLog the audit is off. audit.go holds the
// argument; `callstream audit` compares the sinks as well.
//
// # Identity and the dedup gate
//
// [Identify] gives each record its call_key (the API id, else "k_" and a
// digest of org, numbers, type and creation time) and content_hash (a
// digest of every normalised field); an event's event_id is [EventID],
// the UUIDv5 of org, call_key, revision and content_hash, so the same
// revision read twice has the same id and every revision has its own, even
// when a call's content goes back to an earlier version (A, B, A gives
// three ids). The gate, [Memory], remembers per call a 16-byte digest of
// org and call_key, the first 8 bytes of the latest content hash, the
// revision and the creation minute: about 80 bytes of heap per call with
// the map's overhead. A record whose content hash equals the remembered
// one is dropped; a different one is published as
// callstream.call.updated.v1 with the next revision. Memory is updated
// only after the bus acknowledged a batch, and calls created before every
// rung's frontier are forgotten: no read can reach them again.
//
// # Dead letters
//
// Nothing the API sends is dropped. A record that cannot be decoded, whose
// call_status no mapping knows (unpod.status_map extends the default
// mapping), whose creation_time lies outside the window it was served for,
// or whose event is over max_message_bytes (or that the bus refuses as too
// large) goes to Deps.DLQTopic with its raw bytes, the org and the reason,
// counted in callstream_producer_dead_lettered_total{org,reason} and
// logged once per kind; a raw record over dlq_max_message_bytes is stored
// by reference to the API (its first bytes, size and sha256). The rest of
// the page is published, and the window counts the dead letters as read,
// so it completes. Each is dead-lettered once: the producer remembers them
// (by a digest of org and raw bytes, saved in the org's checkpoint) until
// no rung reads their window again. [Producer.Replay] runs such a record
// through decoding, the gate and publishing once its cause is fixed. The
// DLQ record's metadata are described at DLQKindMetadata.
//
// # State, restore and exactly once
//
// The checkpoint is saved every save_interval, after the acknowledgements it
// relies on: frontiers move only once every batch of a window was
// acknowledged. With Kafka the state lives in the compacted topic
// callstream.producer-state.v1, one record per organization, and the dedup
// memory is not saved at all: it is rebuilt from the events topic, whose
// values carry org, call_key and revision, and every normalised field, from
// which the content hash is computed again. To know where to start
// reading, each checkpoint keeps samples (rung 0 frontier, end offsets of the
// events topic taken while rung 0 stood there, before any later window was
// published). Every event of a call created at or after a sample's frontier
// was published after the sample, so reading from the offsets of the newest
// sample at or below the lowest frontier restores everything a future read
// can meet. An organization's first sample is saved before its first event
// is published, so an organization without a saved sample has nothing on
// the topic. The offsets read at every save (taken before the checkpoint is
// copied) are merged in, taking the lower offset of each partition.
// Partitions are read back concurrently, with a decoder-free scan of the
// normalised fields that copies nothing, and the content hash of each is
// computed again: 180,000 to 210,000 events a second on the shared 2-core
// test machine (TestBenchMemoryAndRebuild, which prints it beside reading
// the topic alone), so a million remembered calls come back in about 5
// seconds.
//
// The argument, for a crash at any point: a window whose events were
// acknowledged but whose frontier was not saved is read again after the
// restart; its events are on the topic at or after the restore offsets, so
// the rebuilt memory holds them and the gate drops them. A batch that failed
// part-way may have written some events: the producer then reads the topic
// back from the latest sample before it publishes anything else for that
// organization. A window that was never acknowledged is not in the memory
// and is published again, with the same event ids. Revisions of a call are
// published by one goroutine in order, under the call_key as Kafka key, so
// they land in one partition in order.
//
// Limits of the argument: kafka-go has no idempotent producer, so a batch
// that the broker wrote but whose acknowledgement was lost is written again
// by the Writer's own retry. A dead letter acknowledged less than
// save_interval before a crash can be dead-lettered once more after it.
//
// # One owner per organization
//
// The guarantee needs exactly one producer polling an organization at a
// time: two would each publish what the other has not yet published. With
// Kafka, every `callstream produce` joins one consumer group
// (producer.group_id) through [Ownership] (kafkabus.GroupOwner) and
// consumes nothing: the group protocol only shares out the partitions of
// the compacted topic producer-orgs.v1 (producer.org_partitions of them).
// An organization belongs to the partition murmur2(handle) mod N, so a
// producer polls exactly the organizations of the partitions it is
// assigned, and N bounds how many producers have work: the others are
// standbys, ready, that take over on a rebalance. Each assignment is a
// [Lease] with the group's generation id.
//
// On assignment the producer loads the organization's checkpoint (what the
// previous owner saved last) and reads the events topic back from its
// samples, as after a crash, before the first poll; the generation is
// recorded in the checkpoint (owner_generation). On revocation (another
// producer joins or leaves, or this one lost the coordinator) the
// organization's loop finishes or abandons its batch in flight, the state
// is saved and the organization forgotten before the producer rejoins: the
// coordinator hands the partition to another producer only once every
// member rejoined (or the rebalance timeout, three session timeouts,
// passed). A producer that dies without leaving keeps its organizations
// until group_session_timeout; the new owner then reads back what the dead
// one published, saved or not.
//
// Fencing: a producer paused longer than the session timeout (GC, SIGSTOP,
// a partition) has lost its organizations without knowing it. Before each
// poll and each batch the producer checks that its lease holds: its context
// is not done (kafka-go ends it when a heartbeat is refused) and the
// coordinator answers a heartbeat of its generation; a refusal (rebalance in
// progress, unknown member, illegal generation) ends the lease without
// publishing. The check asks every time: a confirmation remembered from
// before a pause would vouch for a generation that ended during it.
//
// What the check cannot see is a pause that begins after it succeeded and
// before the broker wrote the batch (a SIGSTOP in the middle of a publish):
// the batch would then reach the broker after the new owner's events. The
// broker closes that window: the check returns when it asked the
// coordinator, the batch's records carry that moment
// (schemas.FencedAtMetadata, the Kafka record timestamp), and `callstream
// produce` sets the calls topic's message.timestamp.before.max.ms to half
// the session timeout. The coordinator hands the organization
// over no sooner than a full session timeout after that confirmation, so a
// batch sent after the hand-over is older than the topic allows and the
// broker refuses all of it (kafkabus.ErrLate; the producer then finds its
// lease lost). This assumes the producers' and brokers' clocks agree to
// within half the session timeout. Dead letters are
// not fenced, and a stale owner's periodic save may write its older
// checkpoint over the new owner's: safe, the next restore only reads more.
//
// `callstream backfill` must still not be run on a range a running producer
// rescans. Embedded mode (`callstream run`) has one owner and no group.
//
// # Discovery
//
// Without org_handles the organizations endpoint is read again every
// discovery_interval (on the producer's clock): new organizations start
// being polled (by their owner), vanished ones stop and are saved; a failed
// or empty answer keeps the list. An explicit list is never re-read.
//
// # Embedded mode
//
// `callstream run` publishes on the embedded durable bus (pkg/sqlitebus),
// whose log is the EventLog, and keeps the checkpoint in a local file
// ([FileStore]): the restore works exactly as with Kafka. Without an
// EventLog (a bus that keeps nothing), the dedup memory itself (32 bytes a
// call) is saved in the state instead. Deps.OnEvent sees every
// acknowledged event and [Producer.Stats] gives totals for a summary line.
//
// # Failures
//
// 400, 401, 403, a 404 on page 1 (or one naming the organization) and a
// redirect (the API client follows none, so the token stays with its
// origin) pause only the organization concerned, with an error log naming
// it and exponential backoff from org_backoff to org_backoff_max; the
// window is not counted as read. A 404 on a later page (Django REST
// Framework's "Invalid page.") means the count shrank while paging: the
// window is read again. A 429 that outlasted the client's own retries
// pauses the organization for the server's Retry-After, capped at an hour
// (and logged when capped). 5xx, 429 and network errors are retried inside
// the API client first. A page over the client's body limit
// (unpod.max_body_bytes) is read again in pages half as large. On SIGTERM
// the producer finishes the batch in flight, saves its state and returns.
package producer
