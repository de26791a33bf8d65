package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// NotifierConfig configures the notifiers. Each is off unless configured.
type NotifierConfig struct {
	QueueSize       int                `yaml:"queue_size" doc:"Notices each notifier holds while its endpoint is slow or down; the oldest is dropped beyond it."`
	Timeout         time.Duration      `yaml:"timeout" doc:"Timeout of one HTTP request to a notifier endpoint."`
	RetryInitial    time.Duration      `yaml:"retry_initial" doc:"First delay before a failed notification is retried."`
	RetryMax        time.Duration      `yaml:"retry_max" doc:"Longest delay between retries of one notification."`
	RetryMaxElapsed time.Duration      `yaml:"retry_max_elapsed" doc:"How long one notification is retried before it is given up and logged."`
	Log             LogConfig          `yaml:"log" doc:"Log every notification."`
	Webhook         WebhookConfig      `yaml:"webhook" doc:"Generic JSON webhook, signed Standard Webhooks style."`
	Slack           SlackConfig        `yaml:"slack" doc:"Slack-compatible incoming webhook."`
	Alertmanager    AlertmanagerConfig `yaml:"alertmanager" doc:"Prometheus Alertmanager."`
}

// LogConfig configures the log notifier.
type LogConfig struct {
	Enabled bool `yaml:"enabled" doc:"Log every notification at level INFO."`
}

// WebhookConfig configures the generic JSON webhook notifier.
type WebhookConfig struct {
	URL    string `yaml:"url" env:"CALLSTREAM_ALERTING_WEBHOOK_URL" secret:"url" doc:"URL the alert events are POSTed to; empty disables the notifier. Printed with credentials and token-like query values masked."`
	Secret string `yaml:"secret" env:"CALLSTREAM_ALERTING_WEBHOOK_SECRET" secret:"true" doc:"Signing secret, whsec_ followed by base64."`
}

// SlackConfig configures the Slack-compatible notifier.
type SlackConfig struct {
	URL string `yaml:"url" env:"CALLSTREAM_ALERTING_SLACK_URL" secret:"true" doc:"Incoming-webhook URL (it embeds a credential); empty disables the notifier."`
}

// AlertmanagerConfig configures the Alertmanager notifier.
type AlertmanagerConfig struct {
	URL            string        `yaml:"url" env:"CALLSTREAM_ALERTING_ALERTMANAGER_URL" secret:"url" doc:"Alertmanager base URL (alerts go to <url>/api/v2/alerts); empty disables the notifier. Printed with credentials and token-like query values masked."`
	ResendInterval time.Duration `yaml:"resend_interval" doc:"How often firing alerts are sent again so Alertmanager does not time them out."`
}

// DefaultNotifierConfig logs notifications and sends them nowhere else.
func DefaultNotifierConfig() NotifierConfig {
	return NotifierConfig{
		QueueSize:       1000,
		Timeout:         10 * time.Second,
		RetryInitial:    500 * time.Millisecond,
		RetryMax:        30 * time.Second,
		RetryMaxElapsed: 15 * time.Minute,
		Log:             LogConfig{Enabled: true},
		Alertmanager:    AlertmanagerConfig{ResendInterval: time.Minute},
	}
}

func (c *NotifierConfig) validate() error {
	if c.QueueSize <= 0 || c.Timeout <= 0 || c.RetryInitial <= 0 || c.RetryMax <= 0 || c.RetryMaxElapsed <= 0 {
		return errors.New("alerting: notifiers: queue_size, timeout and the retry durations must be positive")
	}
	for _, u := range []struct{ name, url string }{
		{"webhook.url", c.Webhook.URL}, {"slack.url", c.Slack.URL}, {"alertmanager.url", c.Alertmanager.URL},
	} {
		if u.url == "" {
			continue
		}
		// The URL itself stays out of the error: a Slack URL is a credential.
		if p, err := url.Parse(u.url); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("alerting: notifiers.%s is not an http(s) URL with a host", u.name)
		}
	}
	if c.Webhook.URL != "" {
		if _, err := decodeSecret(c.Webhook.Secret); err != nil {
			return fmt.Errorf("alerting: notifiers.webhook.secret: %w", err)
		}
	}
	if c.Alertmanager.URL != "" && c.Alertmanager.ResendInterval <= 0 {
		return errors.New("alerting: notifiers.alertmanager.resend_interval must be positive")
	}
	return nil
}

// sender delivers one notice once. An error wrapped by backoff.Permanent is
// not retried.
type sender interface {
	send(ctx context.Context, n Notice) error
}

// queue feeds one notifier from a bounded buffer, so a slow or dead endpoint
// never blocks evaluation: when the buffer is full the oldest notice is
// dropped, counted and logged.
type queue struct {
	name    string
	sender  sender
	cfg     NotifierConfig
	log     *slog.Logger
	metrics *metrics
	// done is told when a notice left the queue for good (sent, given up
	// or dropped), so the outbox can forget it.
	done func(name, id string)

	mu    sync.Mutex
	items []Notice
	wake  chan struct{}
}

func newQueue(name string, s sender, cfg NotifierConfig, log *slog.Logger, m *metrics, done func(name, id string)) *queue {
	return &queue{name: name, sender: s, cfg: cfg, log: log.With("notifier", name), metrics: m, done: done, wake: make(chan struct{}, 1)}
}

func (q *queue) enqueue(n Notice) {
	q.mu.Lock()
	var dropped *Notice
	if len(q.items) >= q.cfg.QueueSize {
		d := q.items[0]
		dropped = &d
		q.items = q.items[1:]
	}
	q.items = append(q.items, n)
	depth := len(q.items)
	q.mu.Unlock()
	q.metrics.queueDepth.WithLabelValues(q.name).Set(float64(depth))
	if dropped != nil {
		q.metrics.notifications.WithLabelValues(q.name, "dropped").Inc()
		q.log.Error("notifier queue full, dropped the oldest notification",
			"alert_id", dropped.Alert.AlertID, "rule", dropped.Alert.Rule, "kind", dropped.Kind)
		q.done(q.name, dropped.ID)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) next() (Notice, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return Notice{}, false
	}
	n := q.items[0]
	q.items = q.items[1:]
	q.metrics.queueDepth.WithLabelValues(q.name).Set(float64(len(q.items)))
	return n, true
}

// run delivers notices in order until ctx is done.
func (q *queue) run(ctx context.Context) {
	for {
		n, ok := q.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				continue
			}
		}
		err := q.deliver(ctx, n)
		if ctx.Err() != nil {
			// Shutting down: the notice stays in the outbox and is sent
			// after the restart.
			return
		}
		if err != nil {
			q.metrics.notifications.WithLabelValues(q.name, "failed").Inc()
			q.log.Error("notification given up", "alert_id", n.Alert.AlertID, "rule", n.Alert.Rule, "kind", n.Kind, "err", err)
		} else {
			q.metrics.notifications.WithLabelValues(q.name, "sent").Inc()
		}
		q.done(q.name, n.ID)
	}
}

func (q *queue) deliver(ctx context.Context, n Notice) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(q.cfg.RetryInitial),
		backoff.WithMaxInterval(q.cfg.RetryMax),
		backoff.WithMaxElapsedTime(q.cfg.RetryMaxElapsed),
	)
	attempt := 0
	return backoff.RetryNotify(func() error {
		attempt++
		rctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
		defer cancel()
		return q.sender.send(rctx, n)
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		q.metrics.notifications.WithLabelValues(q.name, "retried").Inc()
		q.log.Warn("notification failed, will retry", "alert_id", n.Alert.AlertID, "attempt", attempt, "retry_in", wait.String(), "err", err)
	})
}

// logSender writes notices to the log.
type logSender struct{ log *slog.Logger }

func (l logSender) send(_ context.Context, n Notice) error {
	l.log.Info("alert "+n.Kind, "rule", n.Alert.Rule, "alert_id", n.Alert.AlertID, "group", n.Alert.Group,
		"value", n.Alert.Value, "threshold", n.Alert.Threshold, "count", n.Count, "total", n.Total,
		"starts_at", n.Alert.StartsAt, "at", n.At, "summary", n.Alert.Annotations["summary"])
	return nil
}
