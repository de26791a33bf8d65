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
//	      queue_size: 2000
//	      headers: {X-Team: billing}
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
// Each endpoint has its own queue (queue_size events) and its own workers
// (concurrency), so a slow, failing or hanging endpoint never delays the
// others. Events of one call (one call_key) reach an endpoint in revision
// order: only the oldest undelivered event of a call is attempted, while
// other calls go on. When an endpoint's queue is full, Handle waits for room:
// that is back-pressure on the Kafka consumer, never loss. queue_size is
// therefore the outage an endpoint may have at the incoming rate before it
// slows the others down; the circuit breaker and disable_after bound it.
//
// Each endpoint has a circuit breaker: after breaker_failures consecutive
// failures it opens for breaker_cooldown, then lets one probe through. An
// endpoint that has failed without a single success for disable_after is
// disabled; so is one that answers 410. A disabled endpoint's queued and
// future events go to the DLQ, with EndpointMetadata naming the endpoint,
// to be replayed once it is fixed. The disabled state survives restarts;
// changing the endpoint's URL (or name) re-enables it.
//
// # Durability
//
// Handle does not wait for delivery. It puts the event in the queue of
// every matching endpoint, then waits until that change is saved in the
// plug-in's StateStore, and only then returns nil and lets the runtime
// commit the Kafka offset. Saves are batched: every concurrent Handle waits
// for the same save (the runtime runs up to Tuning().MaxInFlight at once),
// so throughput does not cost one fsync per event. The queue is saved as a
// snapshot plus a log of changes (journal.go); the snapshot is rewritten
// when the log outgrows it, so saved state stays bounded by the queues'
// sizes. Retry counts and due times are saved too, so after a restart the
// schedule continues where it was. A graceful stop ends with a snapshot; a
// crash replays the log written since the last one.
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
// printed configuration.
package webhooks
