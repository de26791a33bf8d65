package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v4"

	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/pkg/retryafter"
	"github.com/callstream/callstream/schemas"
)

// dlqRetryDelay spaces attempts to hand an entry to the DLQ when publishing
// there fails: the entry stays queued meanwhile.
const dlqRetryDelay = 5 * time.Second

// result is the outcome of one attempt.
type result struct {
	status     int
	err        error // nil on 2xx
	retryAfter time.Duration
	abort      bool // the receiver asked to stop retrying this message
	gone       bool // 410: the endpoint no longer exists
}

// deliver makes one attempt (or, for a disabled endpoint, hands the entry to
// the DLQ) and settles the entry.
func (p *Plugin) deliver(ctx context.Context, ep *endpoint, e *entry) {
	ep.mu.Lock()
	disabled, why := ep.disabled, ep.reason
	ep.mu.Unlock()
	if disabled {
		p.finishToDLQ(ctx, ep, e, fmt.Sprintf("webhooks: endpoint %q disabled (%s); event kept for replay", ep.name, why))
		return
	}
	if ep.limiter != nil {
		if err := ep.limiter.Wait(ctx); err != nil {
			p.putBack(ep, e) // shutting down
			return
		}
	}
	start := time.Now()
	res := p.attempt(ctx, ep, e)
	p.metrics.latency.WithLabelValues(ep.name).Observe(time.Since(start).Seconds())
	if res.err != nil && ctx.Err() != nil {
		// Shutting down: the attempt was cut short by us, not the endpoint.
		p.putBack(ep, e)
		return
	}
	p.metrics.attempts.WithLabelValues(ep.name, class(res)).Inc()
	now := p.now()
	e.lastStatus = res.status
	if res.err != nil {
		e.lastErr = res.err.Error()
	}

	ep.mu.Lock()
	ep.br.record(res.err == nil, now)
	p.metrics.open.WithLabelValues(ep.name).Set(boolGauge(ep.br.open()))
	if res.err == nil {
		ep.failingSince = time.Time{}
	} else if ep.failingSince.IsZero() {
		ep.failingSince = now
	}
	failingFor := now.Sub(ep.failingSince)
	ep.mu.Unlock()

	switch {
	case res.err == nil:
		p.finish(ep, e, "delivered")
	case res.gone:
		p.disable(ep, fmt.Sprintf("410 Gone at %s", now.UTC().Format(time.RFC3339)))
		p.finishToDLQ(ctx, ep, e, fmt.Sprintf("webhooks: endpoint %q answered 410 Gone and was disabled; event kept for replay", ep.name))
	case res.abort:
		p.finishToDLQ(ctx, ep, e, fmt.Sprintf("webhooks: endpoint %q aborted the message (%s: %s) with status %d", ep.name, HeaderDelivery, AbortMessage, res.status))
	case p.cfg.DisableAfter > 0 && failingFor >= p.cfg.DisableAfter:
		p.disable(ep, fmt.Sprintf("failing since %s, longer than disable_after %s", now.Add(-failingFor).UTC().Format(time.RFC3339), p.cfg.DisableAfter))
		p.finishToDLQ(ctx, ep, e, fmt.Sprintf("webhooks: endpoint %q disabled after failing for %s; last status %d; last error: %s", ep.name, failingFor.Round(time.Millisecond), e.lastStatus, e.lastErr))
	default:
		ep.mu.Lock()
		e.attempts++
		n := e.attempts
		ep.mu.Unlock()
		if n > len(p.cfg.RetrySchedule) {
			p.finishToDLQ(ctx, ep, e, fmt.Sprintf("webhooks: endpoint %q: delivery exhausted after %d attempts; last status %d; last error: %s", ep.name, n, e.lastStatus, e.lastErr))
			return
		}
		at := now.Add(p.retryDelay(n, res.retryAfter))
		p.state.RLock()
		ep.mu.Lock()
		ep.requeueLocked(e, at)
		ep.mu.Unlock()
		p.journal.append(op{K: opTry, Ep: ep.name, ID: e.ev.id, Attempts: n, NextAt: at.UnixNano()})
		p.state.RUnlock()
		p.log.Debug("webhooks: attempt failed, retry scheduled", "endpoint", ep.name, "event_id", e.ev.id,
			"attempt", n, "status", res.status, "err", e.lastErr, "retry_at", at)
	}
}

// attempt POSTs the event once, signed for this attempt's timestamp.
func (p *Plugin) attempt(ctx context.Context, ep *endpoint, e *entry) result {
	ctx, cancel := context.WithTimeout(ctx, ep.timeout)
	defer cancel()
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(e.ev.body))
	if err != nil {
		return result{err: fmt.Errorf("build request: %w", err)}
	}
	for k, v := range ep.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", p.cfg.UserAgent)
	req.Header[http.CanonicalHeaderKey(HeaderID)] = []string{e.ev.id}
	req.Header[http.CanonicalHeaderKey(HeaderTimestamp)] = []string{strconv.FormatInt(ts, 10)}
	req.Header[http.CanonicalHeaderKey(HeaderSignature)] = []string{ep.signer.sign(e.ev.id, ts, e.ev.body)}

	resp, err := p.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a receiver's token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no response within %s: %w", ep.timeout, err)
		}
		return result{err: err}
	}
	head := discardBody(resp.Body, p.cfg.MaxResponseBytes)
	resp.Body.Close()
	r := result{status: resp.StatusCode}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return r
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// The target may carry a token in its query: masked like a
		// configured URL.
		r.err = fmt.Errorf("%w: status %d to %q", ErrRedirect, resp.StatusCode, ep.scrub(config.MaskURL(resp.Header.Get("Location"))))
	default:
		// A receiver may echo the request back: never with our secrets.
		r.err = fmt.Errorf("status %d: %s", resp.StatusCode, ep.scrub(printable(head)))
	}
	r.gone = resp.StatusCode == http.StatusGone
	r.abort = strings.EqualFold(strings.TrimSpace(resp.Header.Get(HeaderDelivery)), AbortMessage)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		r.retryAfter, _ = retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
	}
	return r
}

// retryDelay is the jittered delay before retry number n (1-based), or the
// receiver's Retry-After when that is longer (capped by max_retry_after).
func (p *Plugin) retryDelay(n int, retryAfter time.Duration) time.Duration {
	base := p.cfg.RetrySchedule[n-1]
	d := base
	if base > 0 && p.cfg.RetryJitter > 0 {
		// Each step of the schedule is one interval of a backoff whose
		// growth the schedule itself gives; the library adds the jitter.
		b := &backoff.ExponentialBackOff{
			InitialInterval: base, RandomizationFactor: p.cfg.RetryJitter, Multiplier: 1,
			MaxInterval: base, Stop: backoff.Stop, Clock: backoff.SystemClock,
		}
		b.Reset()
		d = b.NextBackOff()
	}
	if retryAfter > d {
		d = min(retryAfter, p.cfg.MaxRetryAfter)
	}
	return d
}

// finish removes a settled entry from its queue and the durable state.
func (p *Plugin) finish(ep *endpoint, e *entry, outcome string) {
	p.state.RLock()
	ep.mu.Lock()
	ep.removeLocked(e, p.now())
	ep.mu.Unlock()
	p.journal.append(op{K: opDone, Ep: ep.name, ID: e.ev.id})
	p.state.RUnlock()
	p.metrics.queued.WithLabelValues(ep.name).Dec()
	p.metrics.outcomes.WithLabelValues(ep.name, outcome).Inc()
}

// finishToDLQ publishes the event to the DLQ and removes it; if publishing
// fails the entry stays queued and is handed over again later.
func (p *Plugin) finishToDLQ(ctx context.Context, ep *endpoint, e *entry, reason string) {
	msg := message.NewMessage(e.ev.id+"/"+ep.name, e.ev.body)
	// The CloudEvents headers and key of the original record, so a replay
	// of the DLQ puts back a record like the one consumed.
	var head struct {
		Org string `json:"org"`
	}
	_ = json.Unmarshal(e.ev.body, &head)
	typ := schemas.TypeCallCreated
	if e.ev.rev > 1 {
		typ = schemas.TypeCallUpdated
	}
	msg.Metadata.Set(schemas.HeaderSpecVersion, schemas.SpecVersion)
	msg.Metadata.Set(schemas.HeaderID, e.ev.id)
	msg.Metadata.Set(schemas.HeaderSource, schemas.Source(head.Org))
	msg.Metadata.Set(schemas.HeaderType, typ)
	msg.Metadata.Set(schemas.HeaderSubject, e.ev.callKey)
	msg.Metadata.Set(schemas.HeaderContentType, schemas.JSONContentType)
	msg.Metadata.Set(schemas.KeyMetadata, e.ev.callKey)
	msg.Metadata.Set(schemas.DLQReasonMetadata, reason)
	msg.Metadata.Set(schemas.DLQHandlerMetadata, Name)
	// Replay puts it on this plug-in's retry topic naming this endpoint
	// (schemas.ReplayEndpointMetadata), so only this endpoint gets it again.
	msg.Metadata.Set(schemas.DLQEndpointMetadata, ep.name)
	if pos := e.ev.pos; pos.hasPos {
		msg.Metadata.Set(schemas.DLQTopicMetadata, pos.topic)
		msg.Metadata.Set(schemas.DLQPartitionMetadata, strconv.FormatInt(int64(pos.part), 10))
		msg.Metadata.Set(schemas.DLQOffsetMetadata, strconv.FormatInt(pos.off, 10))
	} else {
		msg.Metadata.Set(schemas.DLQTopicMetadata, p.deps.Topics.Calls)
	}
	if head.Org != "" {
		msg.Metadata.Set(schemas.DLQOrgMetadata, head.Org)
	}
	msg.Metadata.Set(schemas.DLQTimeMetadata, p.now().UTC().Format(time.RFC3339Nano))
	msg.SetContext(ctx)
	if err := p.deps.Publisher.Publish(p.deps.Topics.DLQ, msg); err != nil {
		p.log.Error("webhooks: publish to the DLQ failed; delivery stays queued", "endpoint", ep.name,
			"event_id", e.ev.id, "err", err)
		p.state.RLock()
		ep.mu.Lock()
		ep.requeueLocked(e, p.now().Add(p.dlqRetry))
		ep.mu.Unlock()
		p.state.RUnlock()
		return
	}
	p.log.Warn("webhooks: delivery sent to the DLQ", "endpoint", ep.name, "event_id", e.ev.id, "reason", reason)
	p.finish(ep, e, "dlq")
}

// disable stops deliveries to ep for good (until its URL changes); its queued
// events go to the DLQ for replay.
func (p *Plugin) disable(ep *endpoint, reason string) {
	p.state.RLock()
	ep.mu.Lock()
	already := ep.disabled
	ep.disabled, ep.reason = true, reason
	ep.dueNowLocked(p.now())
	ep.mu.Unlock()
	if !already {
		p.journal.append(op{K: opDisable, Ep: ep.name, URL: ep.url, Reason: reason})
	}
	p.state.RUnlock()
	if !already {
		p.metrics.disabled.WithLabelValues(ep.name).Set(1)
		p.log.Warn("webhooks: endpoint disabled; its events go to the DLQ for replay", "endpoint", ep.name, "reason", reason)
		for range ep.concurrency {
			ep.signal()
		}
	}
}

// putBack returns an entry untouched, for attempts we cut short.
func (p *Plugin) putBack(ep *endpoint, e *entry) {
	ep.mu.Lock()
	ep.br.probing = false
	ep.requeueLocked(e, e.nextAt)
	ep.mu.Unlock()
}

func class(r result) string {
	if r.status == 0 {
		return "error"
	}
	return strconv.Itoa(r.status/100) + "xx"
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// printable keeps an error message to one readable line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
}
