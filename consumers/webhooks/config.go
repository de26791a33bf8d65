package webhooks

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config is the webhooks consumer's configuration section.
type Config struct {
	Endpoints []EndpointConfig `yaml:"endpoints" doc:"The subscribed endpoints, each with its URL, secrets and filter."`

	RetrySchedule []time.Duration `yaml:"retry_schedule" doc:"Delay before each retry after the first attempt; its length is the number of retries."`
	RetryJitter   float64         `yaml:"retry_jitter" doc:"Random spread applied to each retry delay, as a fraction (0.2 = plus or minus 20%)."`
	// MaxRetryAfter caps the delay a receiver may ask for with Retry-After.
	MaxRetryAfter time.Duration `yaml:"max_retry_after" doc:"Longest Retry-After delay honoured; longer requests are capped to it."`

	Timeout          time.Duration `yaml:"timeout" doc:"Default time limit of one delivery attempt, response included."`
	Concurrency      int           `yaml:"concurrency" doc:"Default number of concurrent deliveries per endpoint."`
	QueueSize        int           `yaml:"queue_size" doc:"Default number of undelivered events each endpoint holds in memory; more are spilled to the state store."`
	SpillBytes       int64         `yaml:"spill_bytes" doc:"Default bytes of event bodies each endpoint may spill to the state store beyond its queue before the consumer applies back-pressure."`
	MaxResponseBytes int64         `yaml:"max_response_bytes" doc:"How much of a response body is read before the connection is dropped."`
	UserAgent        string        `yaml:"user_agent" doc:"User-Agent header of every delivery."`

	AllowLoopback  bool `yaml:"allow_loopback" doc:"Allow destinations that resolve to loopback addresses (127.0.0.0/8, ::1)."`
	AllowPrivate   bool `yaml:"allow_private" doc:"Allow destinations that resolve to private addresses (RFC 1918, fc00::/7, 100.64.0.0/10)."`
	AllowLinkLocal bool `yaml:"allow_link_local" doc:"Allow destinations that resolve to link-local addresses (169.254.0.0/16, fe80::/10)."`
	HTTPSOnly      bool `yaml:"https_only" doc:"Refuse endpoint URLs that are not https."`

	BreakerFailures int           `yaml:"breaker_failures" doc:"Consecutive failed attempts that open an endpoint's circuit breaker."`
	BreakerCooldown time.Duration `yaml:"breaker_cooldown" doc:"How long an open breaker waits before a half-open probe."`
	DisableAfter    time.Duration `yaml:"disable_after" doc:"An endpoint failing without a success for this long is disabled and its events sent to the DLQ for replay; 0 never disables."`

	// Instance names this process's durable queue. Give each member of the
	// webhooks consumer group its own stable name (a StatefulSet pod
	// name): a queue is resumed only by an instance of the same name.
	Instance string `yaml:"instance" doc:"Stable name of this process's delivery queue when several webhooks consumers share one state store; empty for a single one."`

	FlushInterval time.Duration `yaml:"flush_interval" doc:"How long the durable queue waits to batch enqueued events into one state save."`
	CompactBytes  int           `yaml:"compact_bytes" doc:"Bytes of queue log after which the queue state is rewritten as one snapshot."`
}

// EndpointConfig is one subscription.
type EndpointConfig struct {
	// Name is stable: it keys the endpoint's durable queue, metrics and logs.
	Name string `yaml:"name" doc:"Stable name of the endpoint, used in state, metrics and logs."`
	URL  string `yaml:"url" secret:"url" doc:"Where events are POSTed; printed with credentials and token-like query values masked."`
	// Secrets are whsec_ + base64 keys. Every one signs each delivery, so
	// during a rotation the receiver accepts either the old or the new key.
	Secrets   Secrets       `yaml:"secrets" secret:"true" doc:"Signing secrets (whsec_ + base64); several during a rotation."`
	Filter    Filter        `yaml:"filter" doc:"Which events the endpoint receives; empty lists match everything."`
	RateLimit float64       `yaml:"rate_limit" doc:"Most deliveries per second to this endpoint; 0 means unlimited."`
	Timeout   time.Duration `yaml:"timeout" doc:"Time limit of one attempt to this endpoint; 0 takes the default."`
	// Headers often carry credentials (Authorization, API keys): their
	// values are masked when printed.
	Headers map[string]string `yaml:"headers" secret:"true" doc:"Extra headers sent with every delivery; values are masked when printed."`
	// Concurrency, QueueSize and SpillBytes override the defaults for
	// this endpoint.
	Concurrency int   `yaml:"concurrency" doc:"Concurrent deliveries to this endpoint; 0 takes the default."`
	QueueSize   int   `yaml:"queue_size" doc:"Undelivered events this endpoint holds in memory; 0 takes the default."`
	SpillBytes  int64 `yaml:"spill_bytes" doc:"Bytes of event bodies this endpoint may spill to the state store; 0 takes the default."`
}

// Secrets are an endpoint's signing secrets. They print and marshal masked,
// so a dumped configuration (config.Print marshals slices of structs as
// YAML, without looking at their fields' secret tags) never shows them.
type Secrets []string

// MarshalYAML masks every secret.
func (s Secrets) MarshalYAML() (any, error) { return s.masked(), nil }

// String masks every secret.
func (s Secrets) String() string { return fmt.Sprint(s.masked()) }

// GoString masks every secret.
func (s Secrets) GoString() string { return s.String() }

func (s Secrets) masked() []string {
	out := make([]string, len(s))
	for i := range out {
		out[i] = "***"
	}
	return out
}

// Filter selects events. Each non-empty list must contain the event's value.
type Filter struct {
	EventTypes   []string `yaml:"event_types" doc:"ce_type values, e.g. callstream.call.created.v1."`
	CallStatuses []string `yaml:"call_statuses" doc:"call_status values: completed, missed, failed."`
	CallTypes    []string `yaml:"call_types" doc:"call_type values: inbound, outbound."`
	Orgs         []string `yaml:"orgs" doc:"Organization handles."`
}

// DefaultConfig returns a configuration with no endpoints and a retry
// schedule close to Svix's: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h,
// 10 h and 10 h.
func DefaultConfig() Config {
	return Config{
		RetrySchedule: []time.Duration{
			5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
			5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
		},
		RetryJitter:      0.2,
		MaxRetryAfter:    time.Hour,
		Timeout:          15 * time.Second,
		Concurrency:      8,
		QueueSize:        2000,
		SpillBytes:       256 << 20,
		MaxResponseBytes: 64 << 10,
		UserAgent:        "callstream-webhooks/1",
		BreakerFailures:  10,
		BreakerCooldown:  30 * time.Second,
		DisableAfter:     5 * 24 * time.Hour,
		FlushInterval:    5 * time.Millisecond,
		CompactBytes:     8 << 20,
	}
}

// reservedHeaders are set by the sender; custom headers may not replace them.
var reservedHeaders = map[string]bool{
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"Content-Type": true, "Content-Length": true, "Host": true, "Transfer-Encoding": true,
	"Connection": true,
}

// validate checks the whole configuration and names the endpoint at fault.
// Secrets never appear in its errors.
// Validate reports the first setting New would refuse.
func (c Config) Validate() error { return c.validate() }

func (c *Config) validate() error {
	if c.Timeout <= 0 || c.Concurrency <= 0 || c.QueueSize <= 0 || c.SpillBytes <= 0 || c.MaxResponseBytes <= 0 {
		return errors.New("webhooks: timeout, concurrency, queue_size, spill_bytes and max_response_bytes must be positive")
	}
	if c.RetryJitter < 0 || c.RetryJitter >= 1 {
		return fmt.Errorf("webhooks: retry_jitter %v is outside [0, 1)", c.RetryJitter)
	}
	for i, d := range c.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("webhooks: retry_schedule[%d] is negative", i)
		}
	}
	if c.BreakerFailures <= 0 || c.BreakerCooldown <= 0 {
		return errors.New("webhooks: breaker_failures and breaker_cooldown must be positive")
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		if e.Name == "" {
			return fmt.Errorf("webhooks: endpoint %d has no name", i)
		}
		if seen[e.Name] {
			return fmt.Errorf("webhooks: endpoint name %q is used twice", e.Name)
		}
		seen[e.Name] = true
		u, err := url.Parse(e.URL)
		if err != nil {
			return fmt.Errorf("webhooks: endpoint %q: url does not parse", e.Name)
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("webhooks: endpoint %q: url scheme %q is not http or https", e.Name, u.Scheme)
		case c.HTTPSOnly && u.Scheme != "https":
			return fmt.Errorf("webhooks: endpoint %q: url is not https and https_only is set", e.Name)
		case u.Host == "":
			return fmt.Errorf("webhooks: endpoint %q: url has no host", e.Name)
		case u.User != nil:
			return fmt.Errorf("webhooks: endpoint %q: url must not carry credentials", e.Name)
		}
		if len(e.Secrets) == 0 {
			return fmt.Errorf("webhooks: endpoint %q has no secret", e.Name)
		}
		for j, s := range e.Secrets {
			if _, err := decodeSecret(s); err != nil {
				return fmt.Errorf("webhooks: endpoint %q: secret %d: %w", e.Name, j, err)
			}
		}
		for k := range e.Headers {
			if reservedHeaders[http.CanonicalHeaderKey(k)] {
				return fmt.Errorf("webhooks: endpoint %q: header %q is set by the sender", e.Name, k)
			}
		}
		if e.RateLimit < 0 || e.Timeout < 0 || e.Concurrency < 0 || e.QueueSize < 0 || e.SpillBytes < 0 {
			return fmt.Errorf("webhooks: endpoint %q: rate_limit, timeout, concurrency, queue_size and spill_bytes must not be negative", e.Name)
		}
	}
	return nil
}

// matches reports whether the filter selects an event with these values.
func (f *Filter) matches(eventType, status, callType, org string) bool {
	return in(f.EventTypes, eventType) && in(f.CallStatuses, status) &&
		in(f.CallTypes, callType) && in(f.Orgs, org)
}

func in(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range list {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}
