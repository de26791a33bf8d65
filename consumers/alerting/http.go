package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Standard Webhooks headers, as the webhooks consumer signs its deliveries.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	// HeaderNotificationKind tells a webhook receiver firing, reminder or resolved.
	HeaderNotificationKind = "callstream-notification-kind"
	secretPrefix           = "whsec_"
)

// decodeSecret turns a whsec_ secret into the HMAC key.
func decodeSecret(s string) ([]byte, error) {
	if !strings.HasPrefix(s, secretPrefix) {
		return nil, errors.New("secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil || len(key) == 0 {
		return nil, errors.New("secret after whsec_ is not non-empty base64")
	}
	return key, nil
}

// Sign returns the webhook-signature header value for a delivery:
// "v1," and the base64 HMAC-SHA256 of "id.timestamp.body".
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// post sends one JSON body and classifies the answer: 2xx is success,
// 408, 429, 5xx and network errors are retried, other statuses are not.
// Errors never contain the URL, which may embed a credential.
func post(ctx context.Context, client *http.Client, what, target string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(fmt.Errorf("%s: build request: invalid URL", what))
	}
	maps.Copy(req.Header, header)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: request failed: %w", what, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("%s: endpoint answered %d", what, resp.StatusCode)
	if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return err
	}
	return backoff.Permanent(err)
}

// webhookSender POSTs the alert event JSON, signed.
type webhookSender struct {
	client *http.Client
	url    string
	key    []byte
	now    func() time.Time
}

func (w *webhookSender) send(ctx context.Context, n Notice) error {
	body, err := json.Marshal(n.Alert)
	if err != nil {
		return backoff.Permanent(fmt.Errorf("webhook: encode alert %s: %w", n.Alert.AlertID, err))
	}
	ts := w.now().Unix()
	h := http.Header{}
	h.Set(HeaderWebhookID, n.ID)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderWebhookSignature, Sign(w.key, n.ID, ts, body))
	h.Set(HeaderNotificationKind, n.Kind)
	return post(ctx, w.client, "webhook", w.url, body, h)
}

// slackSender POSTs {"text": ...} to a Slack-compatible incoming webhook.
type slackSender struct {
	client *http.Client
	url    string
}

func (s *slackSender) send(ctx context.Context, n Notice) error {
	body, err := json.Marshal(map[string]string{"text": SlackText(n)})
	if err != nil {
		return backoff.Permanent(fmt.Errorf("slack: encode: %w", err))
	}
	return post(ctx, s.client, "slack", s.url, body, nil)
}

// slackEscaper escapes the three characters Slack's message formatting
// gives a meaning: a rule, label or annotation holding "<!channel>" or
// "<https://evil|click>" must show as text, not ping or link.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SlackText is the readable one-message summary of a notice, escaped for
// Slack: the text holds no control sequence of its own, so all of it is.
func SlackText(n Notice) string {
	a := &n.Alert
	head := map[string]string{KindFiring: "FIRING", KindReminder: "STILL FIRING", KindResolved: "RESOLVED"}[n.Kind]
	keys := slices.Sorted(maps.Keys(a.Group))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+a.Group[k])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s (%s)", head, a.Rule, strings.Join(parts, ", "))
	if s := a.Annotations["summary"]; s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	fmt.Fprintf(&b, "\n%d matching of %d calls in the last %s", n.Count, n.Total, a.Window)
	if n.Total > 0 {
		fmt.Fprintf(&b, " (%.0f%%)", 100*float64(n.Count)/float64(n.Total))
	}
	fmt.Fprintf(&b, "; value %g, threshold %g", a.Value, a.Threshold)
	if n.Baseline >= 0 {
		fmt.Fprintf(&b, "; baseline %.2f/min", n.Baseline)
	}
	fmt.Fprintf(&b, "\nsince %s", a.StartsAt.Format(time.RFC3339))
	if a.EndsAt != nil {
		fmt.Fprintf(&b, ", resolved at %s", a.EndsAt.Format(time.RFC3339))
	}
	return slackEscaper.Replace(b.String())
}

// amAlert is one alert in Alertmanager's POST /api/v2/alerts body.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerSender posts to Alertmanager and, like Prometheus, sends the
// firing alerts again every resend interval with an endsAt a few intervals
// ahead: Alertmanager resolves an alert it stops hearing about.
type alertmanagerSender struct {
	client *http.Client
	url    string
	resend time.Duration
	now    func() time.Time
	page   string // the status page's base URL, for generatorURL; "" for none

	mu     sync.Mutex
	active map[string]Notice // firing alerts by alert_id
}

func amLabels(n Notice) map[string]string {
	l := map[string]string{"alertname": n.Alert.Rule}
	maps.Copy(l, n.Alert.Labels)
	maps.Copy(l, n.Alert.Group)
	return l
}

func (a *alertmanagerSender) toAM(n Notice) amAlert {
	out := amAlert{Labels: amLabels(n), Annotations: n.Alert.Annotations, StartsAt: n.Alert.StartsAt}
	if a.page != "" {
		out.GeneratorURL = a.page + "/#alert-" + n.Alert.AlertID
	}
	if n.Alert.EndsAt != nil {
		out.EndsAt = *n.Alert.EndsAt
	} else {
		out.EndsAt = a.now().Add(4 * a.resend).UTC()
	}
	return out
}

func (a *alertmanagerSender) send(ctx context.Context, n Notice) error {
	a.track(n)
	body, err := json.Marshal([]amAlert{a.toAM(n)})
	if err != nil {
		return backoff.Permanent(fmt.Errorf("alertmanager: encode: %w", err))
	}
	return post(ctx, a.client, "alertmanager", a.url, body, nil)
}

// track remembers which alerts fire, for the periodic resend.
func (a *alertmanagerSender) track(n Notice) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n.Kind == KindResolved {
		delete(a.active, n.Alert.AlertID)
	} else {
		a.active[n.Alert.AlertID] = n
	}
}

// run resends the firing alerts every resend interval until ctx is done.
func (a *alertmanagerSender) run(ctx context.Context) {
	t := time.NewTicker(a.resend)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, a.resend)
		_ = a.resendOnce(rctx)
		cancel()
	}
}

// resendOnce posts every firing alert in one request. A failed resend is
// not retried: the next one comes soon.
func (a *alertmanagerSender) resendOnce(ctx context.Context) error {
	a.mu.Lock()
	ids := slices.Sorted(maps.Keys(a.active))
	batch := make([]amAlert, 0, len(ids))
	for _, id := range ids {
		batch = append(batch, a.toAM(a.active[id]))
	}
	a.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("alertmanager: encode: %w", err)
	}
	return post(ctx, a.client, "alertmanager", a.url, body, nil)
}
