// Package webhooks is the consumer plug-in that delivers call events to
// subscribers' URLs, signed as the Standard Webhooks specification says,
// with the delivery guarantees of the best webhook senders (Svix, Convoy).
//
// # Subscriptions
//
// Endpoints are listed in the plug-in's config section:
//
//	webhooks:
//	  endpoints:
//	    - name: billing              # stable: keys the queue, metrics, logs
//	      url: https://billing.example.com/hooks/calls
//	      secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]  # several during a rotation
//	      filter:                    # empty lists match everything
//	        event_types: [callstream.call.created.v1, callstream.call.updated.v1]
//	        call_statuses: [missed, failed]
//	        call_types: [inbound]
//	        orgs: [acme]
//	      rate_limit: 50             # deliveries per second, 0 = unlimited
//	      timeout: 10s
//	      concurrency: 8
//	      queue_size: 2000           # in memory; more spills to the state store
//	      spill_bytes: 268435456     # bodies spilled before back-pressure
//	      headers: {X-Team: billing} # values are masked when printed
//	  retry_schedule: [5s, 5m, 30m, 2h, 5h, 10h, 10h]
//	  allow_loopback: false
//	  allow_private: false
//	  allow_link_local: false
//	  https_only: true
//	  breaker_failures: 10
//	  breaker_cooldown: 30s
//	  disable_after: 120h
//
// A secret is "whsec_" followed by the base64 of 24 to 64 random bytes.
// During a rotation list the new and the old secret: every delivery is
// signed with each, so a receiver holding either accepts it.
//
// # What a receiver gets
//
// Each delivery is a POST whose body is the event JSON exactly as it was on
// the calls topic (schemas/call_event.v1.json), with these headers:
//
//	webhook-id         the event's event_id; the same on every retry, so
//	                   receivers deduplicate on it
//	webhook-timestamp  Unix seconds of this attempt
//	webhook-signature  "v1,<base64 HMAC-SHA256>" of "<id>.<timestamp>.<body>"
//	                   under each active secret, space-separated
//	content-type       application/json
//
// A receiver written in Go verifies a request with Verify, on the raw body
// and before parsing it:
//
//	body, _ := io.ReadAll(r.Body)
//	err := webhooks.Verify(secret, r.Header.Get("webhook-id"),
//		r.Header.Get("webhook-timestamp"), body,
//		r.Header.Get("webhook-signature"), time.Now(), 5*time.Minute)
//
// Any Standard Webhooks library verifies the same requests.
//
// # Retries
//
// Only a 2xx answer is a success. Anything else (a status, a timeout, a
// refused connection) is retried after the next delay of retry_schedule,
// jittered by retry_jitter; the default is close to Svix's: immediately,
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. 429 and 503 with Retry-After
// wait at least that long (up to max_retry_after). 410 Gone disables the
// endpoint. A response header "webhook-delivery: abort-message" stops the
// retries of that message. Redirects are never followed. A delivery that is
// still failing after the last retry goes to the DLQ topic with the last
// status and error in its reason.
//
// # Isolation
//
// Each endpoint has its own queue and its own workers (concurrency), so a
// slow, failing or hanging endpoint never delays the others. Events of one
// call (one call_key) reach an endpoint in revision order: only the oldest
// undelivered event of a call is attempted, while other calls go on.
//
// An endpoint holds at most queue_size events in memory. When its queue is
// full, its further events spill to the durable queue in the state store
// (spill.go): they are saved there, in arrival order, by the same flush
// that acknowledges them, and read back, oldest first, as the endpoint's
// queue drains. While an endpoint has spilled events its new events spill
// behind them, so nothing overtakes. Memory stays bounded by queue_size
// (and one chunk of spilled events read ahead) however long the backlog,
// and the spill survives restarts like the rest of the queue. Only when an
// endpoint's spill holds spill_bytes of bodies does HandleBatch wait for it
// to drain: back-pressure on the consumer, never loss, and the outage an
// endpoint may have at the incoming rate before it slows the others down;
// the circuit breaker and disable_after bound it. In Kafka mode the state
// store keeps its values in memory as well as in its topic, so there the
// spill costs memory too: size spill_bytes accordingly.
//
// Spilling was chosen over pausing the endpoint and catching it up from the
// calls topic later: a plug-in cannot re-read a topic from an offset (the
// runtime owns the subscriptions), and parking the events on the retry
// topic instead would make a hanging endpoint's backlog circulate there or
// block that topic, and the replays for healthy endpoints with it. The
// durable queue is already where an event is made durable before it is
// acknowledged, so the spill needs no second path: an event is spilled by
// the same flush that queues it for the other endpoints.
//
// Each endpoint has a circuit breaker: after breaker_failures consecutive
// failures it opens for breaker_cooldown, then lets one probe through. An
// endpoint that has failed without a single success for disable_after is
// disabled; so is one that answers 410. A disabled endpoint's queued and
// future events go to the DLQ, to be replayed once it is fixed. The
// disabled state survives restarts; changing the endpoint's URL (or name)
// re-enables it.
//
// # Dead letters and replay
//
// A delivery that goes to the DLQ carries schemas.DLQEndpointMetadata, the
// endpoint's name, beside the handler, reason, time, org and the position
// (topic, partition, offset) the event was consumed at. A targeted replay
// puts it back on this plug-in's retry topic with
// schemas.ReplayEndpointMetadata set to that name: such an event is queued
// for that endpoint only (its filter chose it the first time), never for
// the others, so no endpoint that acknowledged it gets it twice. A replay
// naming an endpoint no longer configured is a permanent error naming it.
//
// # Durability
//
// The plug-in is a consumers.BatchHandler. HandleBatch does not wait for
// delivery. It puts each event of the batch in the queue of every matching
// endpoint (or in its spill), then waits until those changes are saved in
// the plug-in's StateStore, and only then returns nil and lets the runtime
// commit the offsets: one save, one fsync, for the whole batch (plus one
// per endpoint that spills). Concurrent calls share saves too; Handle, for
// one event, is a batch of one. A failed save fails the batch with a
// transient error (the store is at fault, not the events), so the runtime
// delivers it again and never dead-letters it for that. The queue is saved
// as a snapshot plus a log of changes (journal.go); the snapshot is
// rewritten when the log outgrows it, so saved state stays bounded by the
// queues' sizes and the spills. Spilled bodies are saved once, in chunks of
// their own, and never copied into snapshots, which hold only where each
// endpoint's spill starts and ends. Retry counts and due times are saved
// too, so after a restart the schedule continues where it was. A graceful
// stop ends with a snapshot; a crash replays the log written since the last
// one.
//
// In Kafka mode the store is the runtime's compacted state topic. Each
// member of the webhooks consumer group keeps its own queue there: give
// each a stable, distinct instance name (a StatefulSet pod name), since a
// queue is resumed only by an instance of the same name. With one member,
// leave instance empty.
//
// Delivery is at least once: an attempt that succeeded just before a crash,
// before its completion was saved, is made again after the restart, with
// the same webhook-id.
//
// # Safety
//
// Destinations are checked on the address actually dialled, after name
// resolution, so a hostname that resolves (or re-resolves) to a refused
// range fails: loopback, private (RFC 1918, fc00::/7, 100.64.0.0/10) and
// link-local (169.254.0.0/16, including cloud metadata, and fe80::/10)
// addresses are refused unless allow_loopback, allow_private or
// allow_link_local is set. Proxies from the environment are ignored.
// https_only refuses http URLs. Response bodies are read up to
// max_response_bytes. Secrets never appear in logs, errors, metrics or a
// printed configuration: signing secrets and header values are masked when
// printed; an endpoint's URL is printed with its credentials and token-like
// query values masked (config.MaskURL), as is a redirect's target in an
// error; and a response body quoted in an error has the endpoint's own
// header values, URL values and secrets masked, in case the receiver echoes
// the request.
package webhooks
