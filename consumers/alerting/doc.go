// Package alerting is the callstream consumer that tells operations teams,
// within seconds, that calls are failing or going unanswered, and nothing
// else. It is a plug-in of the consumer runtime (package consumers): its
// Factory is registered under the name "alerting".
//
// Its rules follow the semantics of Prometheus alerting rules, and its
// notifications those of Alertmanager, which operations teams already know.
//
// # Rules
//
// A rule is applied separately to every group of calls. Its kind says what
// it looks for: rise (the default) too many matching calls, absence none
// while some were expected, drop a rate fallen below a share of its
// baseline, org_paused an org the producer cannot read. Its fields:
//
//   - name: unique and stable; the alertname label in Alertmanager.
//   - kind: rise, absence, drop or org_paused.
//   - match: call_status and end_reason select the calls that count (the
//     "matching" calls); call_type and numbers (source or destination)
//     narrow the calls the rule looks at at all. So a rule on missed inbound
//     calls takes its ratio over inbound calls only. Empty lists match all.
//   - group_by: org always, plus destination_number and/or source_number.
//   - window: the event-time window calls are counted over, a multiple of
//     evaluation_interval.
//   - Conditions of a rise, each off when zero; those set must all hold:
//     min_count (matching calls in the window); min_ratio with min_volume
//     (matching calls over the looked-at calls of the group, only when at
//     least min_volume calls were looked at: a single missed call in a
//     quiet org is 100% but not an incident); baseline_factor with
//     baseline_window (the matching rate in the window is at least factor
//     times the rate over the baseline window just before it).
//   - An absence holds when the window has no matching call while the
//     baseline (the rate over baseline_window before the window) expects
//     at least min_expected of them in it. A drop holds when the window's
//     matching rate is below baseline_factor (in (0, 1)) times the baseline
//     rate, again only when the baseline expects at least min_expected
//     calls: min_expected is what keeps quiet orgs, where a silent window
//     is ordinary, from firing.
//   - for: how long the conditions must hold (pending) before the alert
//     fires; 0 fires at the first evaluation that holds.
//   - keep_firing_for: how long a firing alert stays firing after the
//     conditions stopped holding, against flapping.
//   - repeat_interval: a reminder is sent this often while it fires.
//   - labels and annotations: carried into every notification
//     (annotations.summary is the headline of Slack messages).
//
// The baseline factor of a rise decides whether a rise is unusual, so it
// takes part in going pending and firing. A firing alert stays firing while
// the other conditions hold: a sustained outage would otherwise become its
// own baseline within the hour and resolve while calls still fail. For the
// same reason a drop or an absence is held, once firing, against the
// baseline it went pending with. Until the evaluator has seen a whole window
// plus baseline window of calls (at start-up, after a restart) the baseline
// is unknown: a rise's baseline condition does not block (a zero baseline
// makes any matching call a rise; in both cases min_count and min_ratio are
// the guard, so set them on a baseline rule), a rise whose only condition is
// the baseline does not go pending, and neither do absence and drop rules,
// which need the baseline.
//
// The reported value and threshold are, for a rise, the ratio and min_ratio
// when the rule has a ratio condition, else the count and min_count, else
// the matching calls per minute and factor times the baseline rate; for an
// absence the window's count and the count the baseline expects; for a
// drop the matching calls per minute and factor times the baseline rate;
// for org_paused 1 while paused and 1.
//
// An org_paused rule reads callstream_producer_org_paused{org}, the gauge
// the producer sets to 1 while an org's polls fail (a refused token, an
// unknown Org-Handle, an API that keeps failing), every few seconds on the
// wall clock: a paused org sends no calls, so no event-time rule can see
// it, and its absence alert cannot tell an outage from a pause. It takes
// only for, keep_firing_for, repeat_interval, labels and annotations, and
// groups by org. It reads the gauge from the registry the runtime passes
// as Deps.Registerer, which in embedded mode (callstream run) is the
// producer's too. In Kafka mode the producer runs in another process and
// the rule stays silent: alert on the producer's /metrics there, e.g. the
// Prometheus rule `max_over_time(callstream_producer_org_paused[2m]) == 1`
// with min instead of max for "the whole 2 minutes".
//
// # Default rules
//
// missed-call-spike: inbound missed calls, per org; window 3m; at least 8
// missed, at least 50% of at least 15 inbound calls, and at least 3 times
// the missed rate of the hour before; for 30s, keep_firing_for 1m,
// repeat_interval 1h; severity=warning. With 12% of calls missed as usual
// traffic, a 3-minute window of 15 inbound calls reaches the threshold by
// chance with probability about 1e-4, of 30 calls 4e-7. The simulator's
// scripted spike (70% of calls missed for 3 minutes) fires it about 3
// minutes of event time after the spike starts and resolves it about 1.5
// minutes after the spike ends (TestSimulatorIncidents); in wall-clock time
// add the producer's settle lag and poll interval and the grace period.
//
// failed-call-burst: failed calls of any type, per org; window 2m; at least
// 6 failed and at least 30% of at least 10 calls; for 20s, keep_firing_for
// 1m, repeat_interval 30m; severity=critical. With 4% of calls failing as
// usual, a chance crossing has a probability of 1e-4 at the worst volume
// (20 calls) and falls off fast above it.
//
// call-absence: no call at all from an org for 5 minutes (window 5m),
// where the hour before (baseline_window 1h) expects at least 30 in 5
// minutes (min_expected 30, so at least 6 calls a minute); for 0,
// keep_firing_for 1m, repeat_interval 1h; severity=critical. For calls
// arriving as a Poisson stream at rate r a minute, 5-minute gaps occur at
// a rate of r*e^(-5r) a minute: at the 6/min minimum, about 1e-9 per org
// and day; with the rate 25% below its hourly baseline (a fast evening
// decline) still about 1e-6. A scheduled stop (an office closing at 18:00
// sharp) is a real absence to this rule: give such orgs rules of their own.
//
// call-volume-drop: an org's calls over 10 minutes at less than a quarter
// of the rate of the hour before (baseline_factor 0.25), where that hour
// expects at least 60 in 10 minutes (min_expected 60, 6 a minute); for 1m,
// keep_firing_for 1m, repeat_interval 1h; severity=warning. At the minimum
// a 10-minute window falls below 15 calls by chance with probability 1e-12;
// with the rate 25% below its baseline 7e-8 per window, at most 6e-4 per
// org and day if all 8,640 evaluations of a day were independent (they
// overlap, so it is less). It also fires on a total outage, a few minutes
// after call-absence. The same caveat about scheduled declines holds.
//
// org-paused: the producer has paused the org for 2 minutes (for 2m; its
// client already retried each request for unpod.max_retry_time, and the
// producer re-polls a failing org after org_backoff, doubling: 2 minutes
// are at least three failed polls in a row); keep_firing_for 1m,
// repeat_interval 1h; severity=critical. With independent poll failures at
// 1%, three in a row come about once in 1e6 polls.
//
// missed-call-spike and failed-call-burst need enough traffic: an org with
// fewer than about 5 inbound calls a minute cannot trip missed-call-spike.
// Lower min_volume and min_count for quiet orgs at the price of more noise;
// the same goes for min_expected and the absence and drop rules.
//
// With the simulator's scripted incidents (TestSimulatorIncidents) the
// outage of initech from minute 20 to 30 fires call-absence at 25:00 of
// event time (5 minutes after the last call) and call-volume-drop at about
// 28:00, and resolves them at 31:00 and about 34:00; a silent API (one org,
// no records at all, TestSilentAPIFiresAbsence) fires call-absence at most
// the producer's settle lag and poll interval, the grace period and
// idle_timeout after window and for have passed on the wall clock.
//
// Rules are configured in YAML; a list replaces the defaults:
//
//	alerting:
//	  rules:
//	    - name: vip-line-missed
//	      match: {call_status: [missed], numbers: ["+14155550100"]}
//	      group_by: [org, destination_number]
//	      window: 5m
//	      min_count: 3
//	      for: 1m
//	      keep_firing_for: 2m
//	      repeat_interval: 4h
//	      labels: {team: vip}
//	      annotations: {summary: The VIP line is missing calls}
//	  notifiers:
//	    slack: {url: https://hooks.slack.com/services/...}
//	    alertmanager: {url: http://alertmanager:9093}
//
// # Event time
//
// Windows are on creation_time, not on arrival, and the evaluation clock is
// the event-time watermark: the newest creation_time seen from each source,
// the oldest of those, less the grace period. A source is one org on one
// input partition (the kafka_partition metadata; one partition on the
// in-process bus): the producer polls each org at its own pace, so an org
// catching up after a restart holds the clock back for a moment instead of
// having its calls counted late. Rules are evaluated at
// every multiple of evaluation_interval the watermark passes, each window
// ending there. A call that arrives less than grace behind the newest one is
// counted; a call whose step was already evaluated is late: it is not
// counted, but callstream_alerting_events_total{outcome="late"} counts it and
// it is logged (see below). A call seen again (a redelivery, or a
// revision not newer than one counted) is not counted twice; a newer revision
// of a call whose step is still open replaces the earlier one's contribution.
//
// The producer publishes each window it reads oldest first, so a catch-up
// after downtime arrives in event-time order. The grace period (default 1m)
// covers the reordering that remains (the in-process bus delivers
// concurrently) and must exceed the producer's poll interval (30s by
// default). Calls
// found only by the producer's rescans (records that appear minutes after
// the call) are late by nature and are counted as such; the ratio
// conditions are not skewed by them, the counts are lower by their share.
//
// A source that delivered nothing for idle_timeout of wall time no longer
// holds the watermark back. When every source is idle the watermark moves
// on with the wall clock (from idle_timeout after the last arrival), so
// alerts resolve when calls stop altogether, and absence and drop alerts
// fire when the API returns no records at all. idle_timeout (default 1m)
// must exceed the producer's poll interval, or the calls of the next poll
// may arrive late.
//
// On a first start the producer reads each org's last hour on its own: if
// one org's whole catch-up arrived before another's first call, the
// newcomer's history would be late. So the clock stands still for
// startup_hold (default 1m) of wall time after the first call a process
// sees: every call of that minute is counted and held, the start moves back
// to the oldest one, and then the steps are evaluated in order. After a
// restart the restored watermark stays where it was (a redelivered backlog
// is late, as it should be). startup_hold 0 turns the hold off, for replays
// fed with a constant clock. Besides idle sources and the hold, the wall
// clock is used only by org_paused rules and the check for calls created in
// the future: for the same stream of events, evaluation gives the same
// alerts, so replaying a day of history gives what living through it gave.
//
// Late calls are logged at most every 10 s. A call the producer itself
// read more than grace after its creation (a record the API showed late,
// an update, a rescan's find) can be late by nature, since the watermark
// may already be past it when it is read, and is logged at debug level;
// one read within grace that still arrived late means the pipeline is
// slower than the grace period and is a warning.
//
// # Batches
//
// The plug-in is a consumers.BatchHandler: a batch is counted under one
// lock, the metrics updated once, and the state saved, the alerts topic
// published to and the notifiers fed once, at its end. A batch is counted
// in partition and offset order when its deliveries have positions (Kafka),
// else (the in-process bus gathers a batch from concurrent deliveries) in
// creation_time order, the order the producer publishes each org in. Steps
// are evaluated as the watermark passes them, inside the batch, so the
// alerts are those of handling the same calls one by one (Handle, kept for
// tests and other runtimes): batching changes only how often the state is
// saved. A failed save is a consumers.Transient error: the store is at
// fault, not the calls.
//
// # States and notifications
//
// Every alert (rule plus group labels) is inactive, pending or firing, as in
// Prometheus. Going firing sends one notification (kind firing), each
// repeat_interval of event time while it fires a reminder, and resolving one
// notification (kind resolved), after which it is inactive again. The
// alert_id is a UUIDv5 of rule, group and the time it went pending: the
// firing, its reminders and its resolution share it; a later firing of the
// same group gets a new one. Each notification has a deterministic id from
// alert_id, kind and evaluation time, used as ce_id and webhook-id.
//
// Firing and resolved transitions are published to callstream.alerts.v1
// (schemas/alert_event.v1.json), in the CloudEvents binary binding (ce_type
// callstream.alert.firing.v1 or callstream.alert.resolved.v1, ce_source
// from config, ce_time the evaluation's event time), keyed by alert_id.
// Reminders go to the notifiers only. Publishing is at least once: a crash
// between the publish and the save that records it republishes the event
// with the same ce_id after the restart.
//
// # Notifiers
//
// Each is optional; the log notifier is on by default.
//
//   - log: one INFO line per notification.
//   - webhook: POSTs the alert event JSON, signed like the webhooks
//     consumer: webhook-id, webhook-timestamp, webhook-signature
//     "v1,<base64 HMAC-SHA256 of id.timestamp.body>" with a whsec_ secret;
//     callstream-notification-kind says firing, reminder or resolved.
//   - slack: POSTs {"text": ...} with a readable summary to a
//     Slack-compatible incoming webhook, with &, < and > escaped as Slack
//     asks, so a summary holding "<!channel>" pings nobody.
//   - alertmanager: POSTs to <url>/api/v2/alerts with labels (alertname,
//     the group, the rule's labels), annotations, startsAt and endsAt. Like
//     Prometheus it sends firing alerts again every resend_interval with an
//     endsAt four intervals ahead, so Alertmanager resolves them if
//     callstream goes away, and routes, groups and repeats them itself.
//
// Each notifier has its own goroutine and a bounded queue: a slow or dead
// endpoint never blocks evaluation, and when its queue is full the oldest
// notification is dropped, counted and logged. Failed requests (network
// errors, 408, 429, 5xx) are retried with exponential backoff up to
// retry_max_elapsed, then given up and logged; other statuses are not
// retried. Errors never include notifier URLs, which may hold credentials.
//
// # Metrics
//
// Besides the counters of events, notices, notifications and saves:
// callstream_alerting_alerts{rule,state} counts pending and firing alerts,
// reading 0 for every configured rule when none are; and each alert that
// fired is exported for the status page, updated every half second:
// callstream_alerting_alert_value{alert_id,rule,org,group,state} (group
// rendered "k=v,k=v" sorted; state firing, or resolved for an hour after
// the resolution, then the series goes), its current value while firing
// and its last one once resolved; callstream_alerting_alert_threshold,
// callstream_alerting_alert_starts_at_seconds and, once resolved,
// callstream_alerting_alert_ends_at_seconds, each {alert_id}, in Unix
// seconds.
//
// # Across restarts
//
// The alert state (watermark, pending and firing alerts) and an outbox of
// notifications not yet confirmed by every destination are saved through
// the runtime's state store (a file in embedded mode, a compacted topic in
// Kafka mode) before anything is published or sent, and saved again as
// destinations confirm. On start the plug-in restores the alerts and resends
// what the outbox still holds. So a restart while an alert fires sends no
// second firing, and one after its resolution sends nothing stale: calls
// older than the restored watermark are late, so a redelivered backlog
// cannot fire again.
//
// A restarted evaluator has not seen the calls of the current window from
// before the restart (only alert state is saved, not counts): it keeps
// firing alerts firing until it has seen a whole window again, and its
// baseline is unknown for a window plus baseline window.
//
// The corner that stays open: a destination that accepted a notification
// just before a crash, before the confirmation was saved, gets it again
// after the restart (at least once). The id is the same, so webhook
// receivers can drop it and Alertmanager merges it; a Slack channel shows it
// twice. A notification given up after retry_max_elapsed, or dropped from a
// full queue, is not sent again.
//
// Counting is per process: in Kafka mode run alerting as one member of its
// consumer group (calls of one org are spread over partitions by call_key,
// and two members would each see part of every group).
package alerting
