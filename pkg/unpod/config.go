package unpod

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBaseURL is the production API.
const DefaultBaseURL = "https://unpod.dev"

// DefaultPageSize is the API's page size when page_size is not sent.
const DefaultPageSize = 20

// DefaultMaxBodyBytes bounds a response body: a 1,000-record page is well
// under 1 MB, so a larger body means records far larger than usual.
const DefaultMaxBodyBytes = 64 << 20

// Config configures a Client.
type Config struct {
	BaseURL        string        `yaml:"base_url" env:"UNPOD_API_URL" flag:"unpod-api-url" doc:"Base URL of the Unpod API, with or without a trailing slash."`
	Token          string        `yaml:"token" env:"UNPOD_API_TOKEN" secret:"true" doc:"Unpod API token, sent as 'Authorization: Token <token>'."`
	Timeout        time.Duration `yaml:"timeout" flag:"unpod-timeout" doc:"Timeout of one HTTP request, body included."`
	RateLimit      float64       `yaml:"rate_limit" flag:"unpod-rate-limit" doc:"Most requests per second this client sends (negative means unlimited)."`
	Burst          int           `yaml:"burst" doc:"Requests that may be sent back to back before the rate limit applies."`
	MaxRetryTime   time.Duration `yaml:"max_retry_time" flag:"unpod-max-retry-time" doc:"Longest time spent retrying one request before giving up."`
	InitialBackoff time.Duration `yaml:"initial_backoff" doc:"First wait between retries; it grows exponentially with jitter."`
	MaxBackoff     time.Duration `yaml:"max_backoff" doc:"Longest wait between two retries."`
	UserAgent      string        `yaml:"user_agent" doc:"User-Agent header sent with every request."`
	ClientID       string        `yaml:"client_id" env:"UNPOD_CLIENT_ID" doc:"Sent as X-Callstream-Producer with every request, so the API's logs tell producers apart; callstream produce uses its host name and process id when empty."`
	MaxBodyBytes   int64         `yaml:"max_body_bytes" doc:"Largest response body read, in bytes; the producer asks for smaller pages (halving page_size) when a page is larger."`
	StatusMap      StatusMap     `yaml:"status_map" env:"UNPOD_STATUS_MAP" doc:"call_status spellings to add to the default mapping or to change (README, The event), e.g. {busy: failed}; in the variable a list such as busy=failed,ringing_out=missed."`

	// Logger receives request logs (never the token); nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Registerer receives the client's metrics; nil registers nothing.
	Registerer prometheus.Registerer `yaml:"-"`
	// HTTPClient sends the requests; nil means a client with sane pooling.
	// Its own Timeout should be 0: Config.Timeout bounds each attempt.
	HTTPClient *http.Client `yaml:"-"`
}

// DefaultConfig returns the configuration used for every field left zero.
func DefaultConfig() Config {
	return Config{
		BaseURL:        DefaultBaseURL,
		Timeout:        30 * time.Second,
		RateLimit:      5,
		Burst:          1,
		MaxRetryTime:   2 * time.Minute,
		InitialBackoff: 250 * time.Millisecond,
		MaxBackoff:     15 * time.Second,
		UserAgent:      "callstream-unpod/1",
		MaxBodyBytes:   DefaultMaxBodyBytes,
	}
}

// withDefaults fills zero fields from DefaultConfig; a negative RateLimit
// stays, meaning unlimited.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BaseURL == "" {
		c.BaseURL = d.BaseURL
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.RateLimit == 0 {
		c.RateLimit = d.RateLimit
	}
	if c.Burst <= 0 {
		c.Burst = d.Burst
	}
	if c.MaxRetryTime <= 0 {
		c.MaxRetryTime = d.MaxRetryTime
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = d.InitialBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.UserAgent == "" {
		c.UserAgent = d.UserAgent
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	return c
}
